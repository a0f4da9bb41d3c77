"""Is this node's cron still calling ``run_scheduled``? (``picron check``, ``/api/health``)."""
from __future__ import annotations

from datetime import datetime, timedelta

from picron.records import FAILURE_STATUSES
from picron.schedule import to_db


def check_ticks(store, node: str, now: datetime, max_age_minutes: int = 15) -> tuple[bool, str]:
    """(ok, message): ok when ``run_scheduled`` ran on ``node`` within ``max_age_minutes``
    and could write the database (a read-only one fails every tick)."""
    if store.read_only:
        return False, (f"database {store.location} is read-only: run_scheduled on node {node} "
                       "cannot record its ticks and runs")
    last = store.last_tick(node)
    if last is None:
        return False, (f"run_scheduled has never been invoked on node {node}: "
                       "is the cron entry (cron.d/picron) installed?")
    age = now - last
    minutes = int(age.total_seconds() // 60)
    if age > timedelta(minutes=max_age_minutes):
        return False, (f"run_scheduled last ran on node {node} at {to_db(last)}, {minutes} "
                       f"minutes ago (more than {max_age_minutes}): check the cron entry")
    return True, f"ok: run_scheduled last ran on node {node} at {to_db(last)} ({minutes} min ago)"


def failing_tasks(store, node: str) -> list[str]:
    """Names of the active tasks of ``node`` whose newest finished run there failed."""
    return [task.name for task in store.list_tasks(node)
            if task.active and task.last_status.get(node) in FAILURE_STATUSES]
