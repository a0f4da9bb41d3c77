"""Benchmark fixtures: task databases of any size, built in one transaction, and a no-op module.

Rows go in with ``executemany`` on a database that picron's own ``connect`` created and
migrated, so the schema (and its indexes) is exactly what a real installation has. Idle
databases hold tasks whose next runs lie weeks ahead (a tick finds nothing due); "due"
databases hold tasks whose next run has passed.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from picron.storage.sqlitedb import connect
from picron.schedule import next_fire, to_db

NODE = "bench"
OTHER_NODE = "other"
NOOP_MODULE = "bench_noop"
# Far-away slots; whichever is at least a day ahead is used, so nothing becomes due mid-run.
_IDLE_INTERVALS = ("@monthly", "0 12 15 6 *", "@yearly")

_NOOP_SOURCE = '''"""A task module that does nothing: what is left is picron's own cost."""
from picron.modules import TaskModule


class Noop(TaskModule):
    identifier = "bench_noop"
    description = "Does nothing (benchmarks)."
    options = {}

    def do(self, options):
        return True
'''


def write_noop_plugin(directory: str) -> str:
    """Install the no-op module as an entry point in ``directory``; put it on PYTHONPATH."""
    dist = os.path.join(directory, "picron_bench_noop-1.0.dist-info")
    os.makedirs(dist, exist_ok=True)
    with open(os.path.join(directory, "picron_bench_noop.py"), "w") as file:
        file.write(_NOOP_SOURCE)
    with open(os.path.join(dist, "METADATA"), "w") as file:
        file.write("Metadata-Version: 2.1\nName: picron-bench-noop\nVersion: 1.0\n")
    with open(os.path.join(dist, "entry_points.txt"), "w") as file:
        file.write(f"[picron.modules]\n{NOOP_MODULE} = picron_bench_noop:Noop\n")
    return directory


def build_database(path: str, tasks: int, due: int = 0, now: datetime | None = None) -> str:
    """Create ``path`` with ``tasks`` tasks on node ``bench``, the first ``due`` of them due.

    Idle tasks look like tasks that have run before (a last run, one history row each);
    every second task is also assigned to a second node. Due tasks use the no-op module.
    """
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    conn = connect(path)
    conn.isolation_level = "IMMEDIATE"  # "with conn" below: one write transaction
    last_run = now - timedelta(minutes=1)
    interval, next_run = _idle_slot(last_run, now)
    with conn:
        conn.executemany(
            "insert into task (id, name, active, ordering, interval, timezone, taskmodule,"
            " retry_if_failed, last_update) values (?, ?, 1, ?, ?, 'UTC', ?, 1, ?)",
            ((i, f"task-{i:06d}", i % 10, "*/5 * * * *" if i <= due else interval,
              NOOP_MODULE if i <= due else "command", to_db(now - timedelta(days=1)))
             for i in range(1, tasks + 1)))
        conn.executemany(
            "insert into task_option (task_id, key, value) values (?, 'command', 'true')",
            ((i,) for i in range(due + 1, tasks + 1)))
        conn.executemany(
            "insert into task_node (task_id, node, position, last_run_at, next_run_at, due_at,"
            " last_status) values (?, ?, ?, ?, ?, ?, ?)", _node_rows(tasks, due, now, last_run,
                                                                     next_run))
        conn.executemany(
            "insert into run (task_id, task_name, node, trigger, status, start_at, end_at,"
            " duration, message) values (?, ?, ?, 'scheduled', 'success', ?, ?, 0.01, '')",
            ((i, f"task-{i:06d}", NODE, to_db(last_run), to_db(last_run))
             for i in range(due + 1, tasks + 1)))
    conn.close()
    return path


def _node_rows(tasks: int, due: int, now: datetime, last_run: datetime, next_run: datetime):
    past = to_db(now - timedelta(minutes=1))
    for i in range(1, tasks + 1):
        if i <= due:
            yield (i, NODE, 0, None, past, past, None)
        else:
            yield (i, NODE, 0, to_db(last_run), to_db(next_run), to_db(next_run), "success")
        if i % 2 == 0:  # a second node: rows the tick must not look at
            yield (i, OTHER_NODE, 1, None, to_db(next_run), to_db(next_run), None)


def _idle_slot(last_run: datetime, now: datetime) -> tuple[str, datetime]:
    for interval in _IDLE_INTERVALS:
        next_run = next_fire(interval, last_run, timezone.utc)
        if next_run > now + timedelta(days=1):
            return interval, next_run
    raise RuntimeError("no idle interval is a day away")  # unreachable: June vs. New Year
