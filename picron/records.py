"""What the store returns: task definitions, tasks with their state, runs and audit entries.

Frozen dataclasses, so that rows become plain values at the storage boundary and callers
never see SQL or cursors (``picron.storage`` builds them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from picron.schedule import to_db

MAX_MESSAGE_BYTES = 4096
FAILURE_STATUSES = ("failed", "timeout", "interrupted")


@dataclass(frozen=True)
class TaskSpec:
    """A validated task definition: what an administrator writes (see ``picron.tasks``)."""

    name: str
    interval: str
    taskmodule: str
    nodes: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)
    active: bool = True
    ordering: int = 0
    timezone: str | None = None
    retry_if_failed: bool = True
    max_retries: int | None = None
    timeout: int | None = None
    notify_url: str | None = None
    notify_email: str | None = None


@dataclass(frozen=True)
class Task:
    """A stored task with its per-node scheduling state (SPEC §1)."""

    id: int
    name: str
    active: bool
    ordering: int
    interval: str
    timezone: str | None
    nodes: tuple[str, ...]
    taskmodule: str
    options: dict[str, str]
    retry_if_failed: bool
    max_retries: int | None
    timeout: int | None
    last_update: datetime
    last_runs: dict[str, datetime]
    next_runs: dict[str, datetime]
    last_status: dict[str, str]
    failure_streak: dict[str, int]
    notify_url: str | None = None
    notify_email: str | None = None
    last_attempts: dict[str, datetime] = field(default_factory=dict)

    @property
    def spec(self) -> TaskSpec:
        """The definition alone, e.g. as the base of a partial edit."""
        return TaskSpec(name=self.name, interval=self.interval, taskmodule=self.taskmodule,
                        nodes=self.nodes, options=dict(self.options), active=self.active,
                        ordering=self.ordering, timezone=self.timezone,
                        retry_if_failed=self.retry_if_failed, max_retries=self.max_retries,
                        timeout=self.timeout, notify_url=self.notify_url,
                        notify_email=self.notify_email)

    def to_json(self) -> dict:
        """The SPEC §1 task object."""
        return {
            "id": self.id, "name": self.name, "active": self.active,
            "ordering": self.ordering, "interval": self.interval, "timezone": self.timezone,
            "nodes": list(self.nodes), "taskmodule": self.taskmodule,
            "options": dict(self.options), "retry_if_failed": self.retry_if_failed,
            "max_retries": self.max_retries, "timeout": self.timeout,
            "notify_url": self.notify_url, "notify_email": self.notify_email,
            "last_update": to_db(self.last_update),
            "last_runs": {node: to_db(at) for node, at in self.last_runs.items()},
            "next_runs": {node: to_db(at) for node, at in self.next_runs.items()},
            "last_status": dict(self.last_status),
            "last_attempts": {node: to_db(at) for node, at in self.last_attempts.items()},
            "failure_streak": dict(self.failure_streak),
        }


@dataclass(frozen=True)
class Run:
    """One entry of the run history (SPEC §2)."""

    id: int
    task_id: int | None
    task: str
    node: str
    trigger: str
    status: str
    start: datetime
    end: datetime | None
    duration: float | None
    message: str

    def to_json(self) -> dict:
        return {"id": self.id, "task_id": self.task_id, "task": self.task, "node": self.node,
                "trigger": self.trigger, "status": self.status, "start": to_db(self.start),
                "end": to_db(self.end) if self.end else None,
                "duration": self.duration, "message": self.message}


@dataclass(frozen=True)
class Claim:
    """A run this process now owns: it must be finished with ``Store.finish_run``.

    ``timeout`` is the run's effective timeout in seconds (the task's, else the default):
    applied once, at the claim, which also set the run's deadline from it.
    """

    run_id: int
    task: Task
    node: str
    trigger: str
    start: datetime
    timeout: int


@dataclass(frozen=True)
class TickMark:
    """Where the run history stood when a tick started (``Store.tick_mark``).

    A scheduled claim made with it refuses a task with a run that was not finished by then
    (running then, or started since) and has failed since: a failure that ends after a
    tick started is retried by the next tick, never at once by one that overlapped it.
    Exact, unlike a comparison of seconds-precision times.
    """

    last_run_id: int
    running: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunningRun:
    """Who owns a run that is still marked ``running``, to detect a dead owner."""

    id: int
    task_id: int | None
    node: str
    pid: int | None
    host: str | None
    start: datetime
    deadline: datetime | None
    boot_id: str | None = None
    pidns: str | None = None
    proc_start: str | None = None
    pgid: int | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    task_id: int | None
    detail: str

    def to_json(self) -> dict:
        return {"id": self.id, "at": to_db(self.at), "actor": self.actor,
                "action": self.action, "task_id": self.task_id, "detail": self.detail}


@dataclass(frozen=True)
class Event:
    """A down/up notification event of a task on a node (SPEC §7)."""

    id: int
    at: datetime
    event: str
    task_id: int | None
    task_name: str
    node: str
    run_id: int | None
    failure_streak: int
    delivered: bool
    detail: str

    def to_json(self) -> dict:
        return {"id": self.id, "at": to_db(self.at), "event": self.event,
                "task_id": self.task_id, "task": self.task_name, "node": self.node,
                "run_id": self.run_id, "failure_streak": self.failure_streak,
                "delivered": self.delivered, "detail": self.detail}


def truncate_message(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes (SPEC §2: messages ≤ 4 KiB)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    marker = "… [truncated]"
    keep = limit - len(marker.encode())
    return data[:keep].decode("utf-8", "ignore") + marker
