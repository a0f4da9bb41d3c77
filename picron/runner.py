"""Running tasks: the cron tick, manual runs, claims, child processes and timeouts.

A run is claimed in the database before it starts (one ``running`` row per task and
node, admitted only while the task is due), executed in a forked child process so that
its timeout can really stop it, and recorded when it ends. A run whose owner died is
recorded as ``interrupted`` by the next tick and does not block the task.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from picron.errors import PicronError
from picron.records import Claim, RunningRun, Task
from picron.schedule import utcnow
from picron.storage import Store

# A run still "running" this long after its deadline has lost its owner, even if a
# process with the owner's pid exists (pids are reused) or it ran on another host.
STALE_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class RunResult:
    """How one run ended."""

    run_id: int
    task_id: int
    task: str
    node: str
    trigger: str
    status: str
    message: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class TickReport:
    """What one ``run_scheduled`` invocation did."""

    node: str
    now: datetime
    results: list[RunResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(not result.ok for result in self.results)


class Runner:
    """Runs the tasks of one node.

    ``registry`` maps module identifiers to classes (discovered lazily), or is a function
    returning it, called when a task first runs (so an idle tick imports no module);
    modules open the store's location for themselves. ``isolate`` runs each task in a
    forked child (the default when the store can be shared with a child; an in-memory
    database cannot, so its tasks run in-process, without a hard timeout).
    """

    def __init__(self, store: Store, registry, *, node: str,
                 default_timeout: int = 3600, history_days: int | None = None,
                 clock: Callable[[], datetime] = utcnow, isolate: bool | None = None,
                 host: str | None = None) -> None:
        self.store = store
        self._registry = registry
        self.node = node
        self.default_timeout = default_timeout
        self.history_days = history_days
        self.clock = clock
        self.isolate = store.can_share_with_child() if isolate is None else isolate
        self.host = host or os.uname().nodename  # what socket.gethostname() returns

    @property
    def registry(self):
        if callable(self._registry):
            self._registry = self._registry()
        return self._registry

    def run_scheduled(self, on_start: Callable[[Task], None] | None = None,
                      on_result: Callable[[RunResult], None] | None = None) -> TickReport:
        """Run every active task due on this node now, once each, in run order (SPEC §2).

        However many slots were missed, a due task runs once (missed runs coalesce). A
        task that another process is running, or has just run, is skipped. A failure
        never stops the other tasks; ``TickReport.failed`` says whether any failed.
        """
        now = self.clock()
        report = TickReport(node=self.node, now=now)
        self.store.record_tick(self.node, now)
        report.interrupted = self.recover_interrupted(now)
        mark = self.store.tick_mark()  # after recovering: this tick retries what it recovered
        for name, reference in self.store.future_references(self.node, now):
            report.warnings.append(
                f"task {name!r}: its last run ({reference:%Y-%m-%d %H:%M:%S} UTC) is in the "
                "future - the clock went backwards; it waits for its next slot")
        for task_id in self.store.due_task_ids(self.node, now):
            claim = self.store.claim_run(task_id, self.node, "scheduled", self.clock(),
                                         pid=os.getpid(), host=self.host,
                                         timeout=self.default_timeout, mark=mark)
            if claim is None:
                continue  # another invocation is running it or ran it since this one began
            if on_start:
                on_start(claim.task)
            result = self.execute(claim)
            report.results.append(result)
            if on_result:
                on_result(result)
        if report.results and self.history_days:
            self.store.delete_runs_before(now - timedelta(days=self.history_days))
        return report

    def due_tasks(self, at: datetime) -> list[Task]:
        """The tasks a tick at ``at`` would run on this node (for ``--dryrun``), in order.

        The tick's own answer without its writes: the store's due tasks, less those
        running here under an owner that the tick would not find lost.
        """
        busy = {run.task_id for run in self.store.running_runs()
                if run.node == self.node and self._lost(run, at) is None}
        return [self.store.get_task(task_id)
                for task_id in self.store.due_task_ids(self.node, at) if task_id not in busy]

    def claim_manual(self, task_id: int, node: str | None = None) -> Claim:
        """Claim a manual run (SPEC §2 rule 7); raises ``AlreadyRunning`` or ``NotFound``."""
        self.recover_interrupted(self.clock())
        return self.store.claim_run(task_id, node or self.node, "manual", self.clock(),
                                    pid=os.getpid(), host=self.host,
                                    timeout=self.default_timeout)

    def run_manually(self, task_id: int, node: str | None = None) -> RunResult:
        """Run a task now on ``node`` (default: local), active or not, and record it."""
        return self.execute(self.claim_manual(task_id, node))

    def execute(self, claim: Claim) -> RunResult:
        """Run a claimed task to its end and record the result."""
        task = claim.task
        timeout = claim.timeout
        started = time.monotonic()
        try:
            module = self.registry.get(task.taskmodule)
            options = module.typed_options(task.options)
        except PicronError as error:
            hint = " (is the module installed?)" if error.field == "taskmodule" else ""
            status, message = "failed", f"{error.message}{hint}"
        else:
            from picron.modules import TaskContext

            context = TaskContext(node=claim.node, location=self.store.location,
                                  now=self.clock, timeout=timeout, task_name=task.name)
            if self.isolate:
                from picron.isolation import run_in_child

                status, message = run_in_child(module, options, context, timeout)
            else:
                from picron.isolation import run_module

                status, message = run_module(module, options, context)
        duration = time.monotonic() - started
        self.store.finish_run(claim.run_id, status, self.clock(), duration, message)
        return RunResult(run_id=claim.run_id, task_id=task.id, task=task.name,
                         node=claim.node, trigger=claim.trigger, status=status,
                         message=message, duration=duration)

    def recover_interrupted(self, now: datetime) -> list[int]:
        """Record runs whose owning process died as ``interrupted``; returns their ids."""
        recovered = []
        for run in self.store.running_runs():
            why = self._lost(run, now)
            if why is None:
                continue
            duration = max((now - run.start).total_seconds(), 0.0)
            if self.store.finish_run(run.id, "interrupted", now, duration, f"interrupted: {why}"):
                recovered.append(run.id)
        return recovered


    def _lost(self, run: RunningRun, now: datetime) -> str | None:
        """Why ``run`` has lost its owner (its process died, or it is long overdue), or
        None while it may still be running: shared by the recovery and the dry run."""
        if run.host == self.host and run.pid is not None and not _alive(run.pid):
            return f"the process running it (pid {run.pid} on {run.host}) died"
        if run.deadline is not None and run.deadline + STALE_GRACE < now:
            return "it outlived its timeout; its process is gone or unresponsive"
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
