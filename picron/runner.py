"""Running tasks: the cron tick, manual runs, claims, child processes and timeouts.

A run is claimed in the database before it starts (one ``running`` row per task and
node, admitted only while the task is due, with its owner and a lease), executed in a
forked child process so that its timeout can really stop it, and recorded when it ends.
While the child works its parent renews the lease. A run whose owner died (a pid check,
trusted only on the owner's own host, boot and PID namespace) or, elsewhere, whose lease
expired on the database's clock is recorded ``interrupted`` - after whatever it started
here is stopped - and retried by the same tick (SPEC §2 rule 6).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from picron.errors import PicronError, StorageError
from picron.liveness import Owner, is_local, owner_alive, stop_group, this_process
from picron.records import Claim, RunningRun, Task
from picron.schedule import to_db, utcnow
from picron.storage import Store

logger = logging.getLogger(__name__)

# A last run less than this ahead of a tick's clock is another process's or node's clock a
# little ahead, not this clock gone backwards: no warning (the task waits all the same).
CLOCK_TOLERANCE = timedelta(seconds=60)
# A run still "running" this long after its deadline (on the database's clock) has lost its
# owner even though the owner process lives: it hangs (stopped, or stuck in the database).
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

    ``clock`` is the node's clock (scheduling); ``db_clock`` the database's (leases and
    deadlines; default ``store.now``); ``lease_seconds`` how long a run's lease lasts
    without renewal (config ``lease_seconds``); ``host`` the host name runs are owned by.
    """

    def __init__(self, store: Store, registry, *, node: str,
                 default_timeout: int = 3600, history_days: int | None = None,
                 clock: Callable[[], datetime] = utcnow, isolate: bool | None = None,
                 host: str | None = None, lease_seconds: float = 60,
                 db_clock: Callable[[], datetime] | None = None, notify=None) -> None:
        self.store = store
        self._registry = registry
        self.node = node
        self.default_timeout = default_timeout
        self.history_days = history_days
        self.clock = clock
        self.isolate = store.can_share_with_child() if isolate is None else isolate
        self.host = host or os.uname().nodename  # what socket.gethostname() returns
        self.notify = notify  # picron.notify.Settings: where down/up events go (SPEC §7)
        self.lease = timedelta(seconds=lease_seconds)
        self.db_clock = db_clock or store.now

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
        report.interrupted = self.recover_interrupted(now, report.warnings)
        mark = self.store.tick_mark()  # after recovering: this tick retries what it recovered
        # a last run only a little ahead is another process's clock (or this one's, read a
        # moment later), not the clock going backwards: warn past CLOCK_TOLERANCE only
        for name, reference in self.store.future_references(self.node, now + CLOCK_TOLERANCE):
            report.warnings.append(
                f"task {name!r}: its last run ({reference:%Y-%m-%d %H:%M:%S} UTC) is in the "
                "future - the clock went backwards; it waits for its next slot")
        due = self.store.due_task_ids(self.node, now)
        from picron.isolation import fork_server  # only a tick with due tasks uses it

        with fork_server(bool(due) and self.isolate):  # children fork from a small helper
            for task_id in due:
                claim = self._claim(task_id, self.node, "scheduled", mark)
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
        me, db_now = this_process(self.host), self.db_clock()
        busy = {run.task_id for run in self.store.running_runs()
                if run.node == self.node and self._lost(run, me, db_now) is None}
        return [self.store.get_task(task_id)
                for task_id in self.store.due_task_ids(self.node, at) if task_id not in busy]

    def claim_manual(self, task_id: int, node: str | None = None) -> Claim:
        """Claim a manual run (SPEC §2 rule 7); raises ``AlreadyRunning`` or ``NotFound``."""
        self.recover_interrupted(self.clock())
        return self._claim(task_id, node or self.node, "manual")

    def _claim(self, task_id: int, node: str, trigger: str, mark=None) -> Claim | None:
        owner = this_process(self.host)
        db_now = self.db_clock()
        return self.store.claim_run(
            task_id, node, trigger, self.clock(), mark=mark, pid=owner.pid, host=owner.host,
            timeout=self.default_timeout, boot_id=owner.boot_id, pidns=owner.pidns,
            proc_start=None if owner.proc_start is None else str(owner.proc_start),
            lease_until=db_now + self.lease, db_now=db_now)

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

                lease = _Lease(self.store, claim.run_id, self.lease, self.db_clock)
                status, message = run_in_child(module, options, context, timeout, lease)
            else:
                from picron.isolation import run_module

                status, message = run_module(module, options, context)
        duration = time.monotonic() - started
        finished = self.store.finish_run(claim.run_id, status, self.clock(), duration, message)
        if not finished:
            # another process recorded it meanwhile (its lease had expired): that stays
            recorded = self.store.get_run(claim.run_id)
            status, message = recorded.status, recorded.message
        note = self._notify(finished)
        return RunResult(run_id=claim.run_id, task_id=task.id, task=task.name,
                         node=claim.node, trigger=claim.trigger, status=status,
                         message=f"{message}\n{note}" if note else message, duration=duration)

    def recover_interrupted(self, now: datetime, warnings: list[str] | None = None) -> list[int]:
        """Record runs whose owner is gone as ``interrupted``; returns their ids.

        On the owner's host (same boot and PID namespace) its pid decides, and what its task
        started is stopped first; a run whose leftovers cannot be stopped stays ``running``
        (a warning says why), so the task is not started beside them. Elsewhere the lease
        decides, on the database's clock.
        """
        runs = self.store.running_runs()
        if not runs:
            return []
        me, db_now = this_process(self.host), self.db_clock()
        recovered = []
        for run in runs:
            owner = _owner(run)
            why = self._lost(run, me, db_now)
            if why is None:
                continue
            if is_local(owner, me) and not stop_group(owner):
                message = (f"run {run.id}: the processes it started (group {owner.pgid}) "
                           "cannot be stopped; the task waits until they end")
                logger.warning("%s", message)
                if warnings is not None:
                    warnings.append(message)
                continue
            duration = max((now - run.start).total_seconds(), 0.0)
            finished = self.store.finish_run(run.id, "interrupted", now, duration,
                                             f"interrupted: {why}")
            if finished:
                recovered.append(run.id)
                self._notify(finished)
        return recovered

    def _notify(self, finished) -> str:
        """Record and send the down/up event of a finished run (SPEC §7), within the
        notification timeout; returns what could not be delivered ("" if nothing)."""
        if not finished:
            return ""
        from picron.notify import Settings, notify_run

        return notify_run(self.store, finished, self.notify or Settings(), self.clock())

    def _lost(self, run: RunningRun, me: Owner, db_now: datetime) -> str | None:
        """Why ``run`` has lost its owner, or None while it may still be running (the
        recovery and the dry run ask the same). ``me``: this process; ``db_now``: the
        database's clock."""
        owner = _owner(run)
        alive = owner_alive(owner, me)
        if alive is False:
            return f"the process running it (pid {owner.pid} on {owner.host}) died"
        if alive is None and run.lease_until is not None:
            if run.lease_until < db_now:
                return (f"its lease expired at {to_db(run.lease_until)} (owner pid {owner.pid}"
                        f" on {owner.host or 'an unknown host'} stopped renewing it)")
            return None
        if run.deadline is not None and run.deadline + STALE_GRACE < db_now:
            return "it outlived its timeout; its process is gone or unresponsive"
        return None  # a live owner here, or one elsewhere from before leases, not overdue


def _owner(run: RunningRun) -> Owner:
    return Owner(host=run.host or "", boot_id=run.boot_id or "", pidns=run.pidns or "",
                 pid=run.pid or 0,
                 proc_start=int(run.proc_start) if run.proc_start else None, pgid=run.pgid)


class _Lease:
    """The running parent's side of a run's lease (``picron.isolation.run_in_child``'s watch).

    Renewed every quarter of its length. When the database cannot be reached for most of
    a lease (three quarters), or the run was recorded by another process meanwhile, the
    child is stopped: someone else may already consider the run interrupted and retry it.
    """

    def __init__(self, store: Store, run_id: int, length: timedelta,
                 db_clock: Callable[[], datetime]) -> None:
        self.store, self.run_id, self.length, self.db_clock = store, run_id, length, db_clock
        self.every = length.total_seconds() / 4
        self.renewed = time.monotonic()

    def started(self, pgid: int) -> bool:
        """Record the child's process group (and renew); False: do not start the task."""
        return self._renew(pgid)

    def renew(self) -> bool:
        try:
            return self._renew()
        except StorageError as error:
            keep = time.monotonic() - self.renewed < 3 * self.every
            logger.warning("run %d: cannot renew its lease (%s)%s", self.run_id, error,
                           "" if keep else "; stopping it")
            return keep

    def _renew(self, pgid: int | None = None) -> bool:
        if not self.store.renew_run(self.run_id, self.db_clock() + self.length, pgid):
            return False
        self.renewed = time.monotonic()
        return True
