"""The storage contract: the abstract ``Store``, ``open_store`` and the idle look.

Everything picron keeps (tasks, runs, ticks, counters, stats, settings, audit log,
notification events) goes through a ``Store``; nothing above this package sees SQL, a
connection or a driver error. ``picron.storage.sql.SqlStore`` writes the domain queries
once; ``picron.storage.sqlite.SqliteStore`` and ``picron.storage.postgres.PostgresStore``
give it a connection. ``open_store`` picks the backend from the location.

This module imports no driver and nothing heavy: a cron tick that finds nothing to do
imports it, calls ``tick_is_idle`` and ends (docs/performance.md).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from picron.errors import StorageError

TYPE_CHECKING = False  # not typing's: importing typing would cost an idle tick
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractContextManager
    from datetime import datetime, tzinfo

    from picron.records import (AuditEntry, Claim, Event, Finished, Run, RunningRun, Task,
                                TaskSpec, TickMark)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class UniqueViolation(StorageError):
    """A backend's unique-constraint error; ``SqlStore`` turns it into the domain's answer
    (``Conflict``, ``AlreadyRunning``, a refused claim)."""


class DatabaseBusy(StorageError):
    """The database stayed locked by another process for longer than the busy timeout."""


class SchemaBehind(StorageError):
    """A read-only open of a database that is empty or has an older schema: creating or
    upgrading picron's tables would be a write (a writable open does it)."""


TASK_STATES = ("failing", "retrying", "running", "inactive", "active")
TASK_SORTS = ("order", "name", "module", "next", "updated")


def is_postgres(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database (else it is a SQLite file)."""
    return location.startswith(POSTGRES_SCHEMES)


def open_store(location: str | os.PathLike, *, default_zone: tzinfo | None = None,
               create: bool = True, read_only: bool = False) -> Store:
    """Open the picron database at ``location``: a ``postgresql://``/``postgres://`` URL or
    a SQLite path (``":memory:"``: a private in-memory database).

    The schema is created or migrated as needed (a missing SQLite file is created unless
    ``create`` is false). ``read_only`` only reads: nothing is created, migrated or
    written (writes raise ``StorageError`` "read-only"); a SQLite file this user may not
    write is opened so anyway. ``default_zone`` is the server time zone for tasks without
    one. Raises ``StorageError`` with one clear line when the database is unusable.
    """
    location = os.fspath(location)
    if is_postgres(location):
        from picron.storage.postgres import PostgresStore  # the driver only when used

        if read_only:
            return PostgresStore(location, default_zone=default_zone, create=False,
                                 read_only=True)
        return PostgresStore(location, default_zone=default_zone, create=create)
    from picron.storage.sqlite import SqliteStore

    return SqliteStore(location, default_zone=default_zone, create=create,
                       read_only=read_only)


def tick_is_idle(location: str, node: str) -> bool:
    """The first look of a cron tick: record the tick on ``node`` and return True when
    nothing is due, running or in the future there; False when the full tick must look.

    Costs one connection and one indexed query; never creates or migrates a database.
    Raises ``StorageError`` only for a database locked by another process.
    """
    if is_postgres(location):
        from picron.storage.pgdb import tick_is_idle as look
    else:
        from picron.storage.sqlitedb import tick_is_idle as look
    return look(location, node)


class Store(ABC):
    """The picron database seen through its operations (the storage contract).

    Every method that writes is one transaction (all-or-nothing); several calls can be
    made one with ``transaction()``. Methods take the current time as a parameter and
    never read a clock, except ``now()``, the database's own clock. Times are aware UTC
    ``datetime``s at whole seconds; results are the frozen records of ``picron.records``.
    ``default_zone`` is the server time zone for tasks whose ``timezone`` is null.
    """

    location: str
    default_zone: tzinfo | None
    # Opened for reading only (asked for, or a SQLite file this user may not write):
    # writes raise StorageError "read-only".
    read_only: bool = False

    # -- the connection ------------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction, committed at the end of the ``with`` block, rolled back on
        any exception. Inside another one it joins the outer one. It holds the write lock:
        keep the body short."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""

    @abstractmethod
    def backup(self, target_path: str) -> None:
        """Write a consistent SQLite snapshot of the whole database to ``target_path``
        (replaced atomically, mode 0600). Raises ``StorageError``."""

    @abstractmethod
    def now(self) -> datetime:
        """The database's clock (leases and deadlines; SQLite: this host's clock)."""

    @abstractmethod
    def can_share_with_child(self) -> bool:
        """Whether a forked child can open this database itself (an in-memory one cannot:
        its tasks then run in-process)."""

    # -- tasks ---------------------------------------------------------------------------

    @abstractmethod
    def list_tasks(self, node: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Task]:
        """All tasks in run order (ordering, id), optionally only those assigned to
        ``node``; ``limit``/``offset`` give one page of them (without ``node``)."""

    @abstractmethod
    def list_tasks_json(self, node: str | None = None) -> list[str]:
        """``list_tasks`` as the JSON texts of ``Task.to_json``, built by the database."""

    @abstractmethod
    def find_tasks(self, now: datetime, *, text: str = "", module: str = "", node: str = "",
                   state: str = "", sort: str = "order", limit: int | None = None,
                   offset: int = 0) -> tuple[list[Task], int]:
        """One page of the tasks that match, and how many match in all (the web's list).

        ``text``: part of the name (case-insensitive); ``module``, ``node``: exact;
        ``state``: one of ``TASK_STATES`` (``retrying``: active, failed and due again
        at ``now``); ``sort``: a key of ``TASK_SORTS``, ``-`` before it for descending.
        """

    @abstractmethod
    def find_tasks_json(self, now: datetime, *, text: str = "", module: str = "",
                        node: str = "", state: str = "", sort: str = "order") -> list[str]:
        """``find_tasks`` (all that match) as the JSON texts of ``Task.to_json``."""

    @abstractmethod
    def data_version(self) -> tuple:
        """A cheap value that changes whenever a task or its run state changes (every task
        change is audited; every run starts with a new id and ends leaving ``running``):
        what the web's caches are keyed by."""

    @abstractmethod
    def count_tasks(self, active: bool | None = None) -> int:
        """How many tasks exist; only the active (or inactive) ones if ``active`` is given."""

    @abstractmethod
    def get_task(self, task_id: int) -> Task:
        """The task with this id; raises ``NotFound``."""

    @abstractmethod
    def find_task(self, name: str) -> Task:
        """The task with this exact name; raises ``NotFound`` naming it."""

    @abstractmethod
    def add_task(self, spec: TaskSpec, now: datetime, actor: str = "system") -> Task:
        """Insert a new task; raises ``Conflict`` if the name is taken."""

    @abstractmethod
    def update_task(self, task_id: int, spec: TaskSpec, now: datetime,
                    actor: str = "system", action: str = "edit") -> Task:
        """Replace a task's definition (SPEC §2 rule 5: keeps last runs of kept nodes);
        an unchanged definition is not written. Raises ``NotFound``, ``Conflict``."""

    @abstractmethod
    def edit_task(self, task_id: int, change: Callable[[TaskSpec], TaskSpec], now: datetime,
                  actor: str = "system", action: str = "edit") -> Task:
        """Read-modify-write in one write transaction: ``change`` gets the stored
        definition and returns the new one (validating it; its errors propagate and
        nothing is written). An unchanged result writes nothing (no ``last_update``,
        no audit entry). Concurrent edits of different fields never revert each other."""

    @abstractmethod
    def set_active(self, task_id: int, active: bool, now: datetime,
                   actor: str = "system") -> Task:
        """Enable or disable a task; sets ``last_update`` (SPEC §2 rule 5) when it changes."""

    @abstractmethod
    def delete_task(self, task_id: int, now: datetime, actor: str = "system") -> None:
        """Delete a task; its run history stays (with the task's name). Raises ``NotFound``."""

    # -- scheduling ----------------------------------------------------------------------

    @abstractmethod
    def set_last_run(self, task_id: int, node: str, at: datetime) -> None:
        """Record ``at`` as the last run on ``node`` and reschedule (for tests, imports and
        repairs). Raises ``NotFound`` unless the task is assigned to ``node``."""

    @abstractmethod
    def due_task_ids(self, node: str, now: datetime) -> list[int]:
        """Ids of the tasks due on ``node`` at ``now``, in run order: the one definition
        of "due" (``picron.storage.rules.DUE``; the claim and the idle look use the same)."""

    @abstractmethod
    def tick_mark(self) -> TickMark:
        """Where the run history stands now, read in one snapshot (see ``TickMark``)."""

    @abstractmethod
    def future_references(self, node: str, now: datetime) -> list[tuple[str, datetime]]:
        """(name, last run) of tasks on ``node`` whose last run lies after ``now``."""

    @abstractmethod
    def claim_run(self, task_id: int, node: str, trigger: str, now: datetime, *,
                  pid: int, host: str, timeout: int, mark: TickMark | None = None,
                  boot_id: str | None = None, pidns: str | None = None,
                  proc_start: str | None = None, pgid: int | None = None,
                  lease_until: datetime | None = None,
                  db_now: datetime | None = None) -> Claim | None:
        """Atomically start a run (insert its ``running`` row) or refuse.

        A scheduled claim succeeds only while the task is due on ``node`` (and, given the
        tick's ``mark``, has no run unfinished at the mark that failed since) and returns None
        otherwise or when the task is already running there; a manual claim raises
        ``NotFound`` or ``AlreadyRunning``. ``timeout`` is the default for a task without
        its own; the claim carries the effective one and the run's deadline follows it.
        The optional owner identity and lease are stored for liveness checks; the deadline
        is ``db_now`` (the database's clock, default ``now``) plus the timeout.
        """

    @abstractmethod
    def renew_run(self, run_id: int, lease_until: datetime, pgid: int | None = None) -> bool:
        """Extend a ``running`` run's lease (and record its task's process group); False when
        the run is no longer running (another process recorded it): its owner must stop."""

    @abstractmethod
    def finish_run(self, run_id: int, status: str, end: datetime, duration: float,
                   message: str = "") -> Finished | None:
        """Record the end of a run still ``running`` (compare-and-set) and apply SPEC §2
        rule 4 to the task's schedule; returns ``Finished`` (with the node's state before
        the run) if this call finished it, else None."""

    @abstractmethod
    def append_run_message(self, run_id: int, line: str) -> None:
        """Add a line to a finished run's message (kept whole if the message is cut)."""

    @abstractmethod
    def running_runs(self) -> list[RunningRun]:
        """Runs marked ``running``, with their owners."""

    @abstractmethod
    def record_tick(self, node: str, now: datetime) -> None:
        """Note that ``run_scheduled`` was invoked on ``node`` (backs ``picron check``)."""

    @abstractmethod
    def last_tick(self, node: str) -> datetime | None:
        """When ``node`` last ticked (None: never)."""

    @abstractmethod
    def last_ticks(self) -> dict[str, datetime]:
        """The last tick of every node."""

    # -- run history ---------------------------------------------------------------------

    @abstractmethod
    def list_runs(self, task_id: int | None = None, limit: int = 50,
                  status: str | None = None, task_name: str | None = None) -> list[Run]:
        """The run history, newest first; ``task_name``: the kept runs of a deleted task."""

    @abstractmethod
    def find_runs(self, *, task_id: int | None = None, text: str = "", status: str = "",
                  node: str = "", trigger: str = "", before: int | None = None,
                  limit: int = 50) -> list[Run]:
        """The run history, newest first, filtered: ``text`` is part of the task's name
        (case-insensitive), ``before`` a run id (the runs older than it: the next page)."""

    @abstractmethod
    def get_run(self, run_id: int) -> Run:
        """One run; raises ``NotFound``."""

    @abstractmethod
    def count_runs(self, since: datetime, statuses: Iterable[str]) -> int:
        """Runs started at or after ``since`` with one of ``statuses``."""

    @abstractmethod
    def run_counts(self) -> dict[str, int]:
        """How many runs have each status."""

    @abstractmethod
    def delete_runs_before(self, before: datetime) -> int:
        """Delete finished runs that started before ``before``; returns how many."""

    # -- counters, stats, settings, audit, events ----------------------------------------

    @abstractmethod
    def change_counter(self, name: str, by: int) -> int:
        """Add ``by`` (may be negative) to a counter, creating it at 0; returns the value."""

    @abstractmethod
    def set_counter(self, name: str, value: int) -> None:
        """Set a counter, creating it."""

    @abstractmethod
    def get_counter(self, name: str) -> int | None:
        """A counter's value (None: never set)."""

    @abstractmethod
    def list_counters(self) -> dict[str, int]:
        """Every counter by name."""

    @abstractmethod
    def add_stat(self, key: str, at: datetime, value: int) -> None:
        """Append a monitoring value."""

    @abstractmethod
    def stat_keys(self) -> list[str]:
        """The stats keys, sorted."""

    @abstractmethod
    def get_stats(self, key: str, start: datetime | None = None,
                  end: datetime | None = None) -> list[tuple[datetime, int]]:
        """The time series of ``key`` between ``start`` and ``end`` (inclusive), oldest first."""

    @abstractmethod
    def latest_stats(self) -> dict[str, int]:
        """The newest value of every key."""

    @abstractmethod
    def delete_stats(self, key: str | None = None, before: datetime | None = None) -> int:
        """Delete the stats of ``key`` (all keys if None), or only those before ``before``."""

    @abstractmethod
    def get_setting(self, key: str) -> str | None:
        """A stored setting (None: not set)."""

    @abstractmethod
    def set_setting(self, key: str, value: str) -> None:
        """Store a setting."""

    @abstractmethod
    def delete_setting(self, key: str) -> bool:
        """Remove a setting; False if it was not set."""

    @abstractmethod
    def list_audit(self, limit: int = 100, task_id: int | None = None) -> list[AuditEntry]:
        """The audit log, newest first; only one task's entries given ``task_id``."""

    @abstractmethod
    def add_event(self, at: datetime, event: str, task_id: int | None, task_name: str,
                  node: str, run_id: int | None, failure_streak: int) -> int:
        """Record a down/up notification event (SPEC §7); returns its id."""

    @abstractmethod
    def list_events(self, limit: int = 100) -> list[Event]:
        """Notification events, newest first."""

    @abstractmethod
    def mark_event_delivered(self, event_id: int, delivered: bool, detail: str = "") -> None:
        """Record whether an event's notification was delivered (and how it went)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Store", "StorageError", "UniqueViolation", "DatabaseBusy", "SchemaBehind",
           "open_store", "tick_is_idle", "is_postgres"]
