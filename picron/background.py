"""Manual runs in the background: claimed during the request, executed on a thread.

The claim happens in the request, so a refusal (``AlreadyRunning``, ``NotFound``) is
answered at once; the run itself gets a thread and its own database connection,
because a connection cannot be shared between threads.
"""
from __future__ import annotations

import logging
import threading

from picron.records import Claim, Run

logger = logging.getLogger(__name__)


class BackgroundRuns:
    """Executes claimed runs on daemon threads; ``join`` waits for them (shutdown, tests)."""

    def __init__(self, app) -> None:
        self.app = app
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, claim: Claim) -> None:
        thread = threading.Thread(target=self._execute, args=(claim,), daemon=True,
                                  name=f"picron-run-{claim.run_id}")
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runs started so far; returns whether all have finished."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    def _execute(self, claim: Claim) -> None:
        try:
            store = self.app.open_store()
            try:
                self.app.runner(store=store).execute(claim)
            finally:
                store.close()
        except Exception:  # the run is recovered as interrupted by the next tick
            logger.exception("manual run %d of task %r failed to execute", claim.run_id,
                             claim.task.name)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())


def start_manual_run(app, task_id: int, node: str | None = None) -> Run:
    """Claim a manual run of a task and execute it in the background; returns its record.

    ``app`` is a request's view (``picron.site.RequestApp``); its ``background`` runs the
    claim.
    Raises ``NotFound`` or ``AlreadyRunning`` (SPEC §2 rule 6) before anything starts.
    """
    app.store.get_task(task_id)  # NotFound before anything is written
    claim = app.runner().claim_manual(task_id, node)
    app.background.start(claim)
    return app.store.get_run(claim.run_id)
