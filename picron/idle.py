"""The first look of a cron tick: is there anything at all to do on this node?

Most ticks find nothing due. Answering that with one connection and three indexed
queries - before argparse, the store or the runner are imported - keeps such a tick near
the cost of starting Python (docs/performance.md). Anything unusual (no database yet, an
old schema, a due or running task, a last run in the future, any error but a busy
database) answers "not idle", and the full tick then does its work and reports any error
as if this look had not happened.
"""
from __future__ import annotations

import os
import sqlite3
import time

from picron.db import BUSY_TIMEOUT_SECONDS, SCHEMA_VERSION, TICK_UPSERT, storage_error

_ANYTHING_TO_DO = (
    "select exists (select 1 from run where status = 'running')"
    " or exists (select 1 from task_node where node = :node and due_at <= :now)"
    " or exists (select 1 from task_node where node = :node and last_run_at > :now)")


def tick_is_idle(path: str, node: str) -> bool:
    """Record a tick on ``node`` and return True if nothing is due, running or in the future.

    Returns False (recording nothing) whenever the full tick has to look; raises
    ``StorageError`` only for a database locked by another process, so that a busy
    database is not waited for twice.
    """
    if not _usable_file(path):
        return False
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())  # as schedule.to_db
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        if conn.execute("pragma user_version").fetchone()[0] != SCHEMA_VERSION:
            return False
        if conn.execute(_ANYTHING_TO_DO, {"node": node, "now": now}).fetchone()[0]:
            return False
        conn.execute("begin immediate")
        conn.execute(TICK_UPSERT, (node, now))
        conn.execute("commit")
        return True
    except sqlite3.Error as error:
        mapped = storage_error(error, path)
        if "busy" in mapped.message:
            raise mapped from None
        return False
    finally:
        if conn is not None:
            conn.close()


def _usable_file(path: str) -> bool:
    if path == ":memory:":
        return False
    try:
        status = os.stat(path)
    except OSError:
        return False
    return (status.st_size > 0 and status.st_mode & 0o222 and os.path.isfile(path)
            and os.access(path, os.R_OK | os.W_OK))
