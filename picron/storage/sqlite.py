"""The SQLite backend: ``SqlStore`` on one ``sqlite3`` connection.

Connecting, migrating, the error mapping, backups and the idle look live in
``picron.storage.sqlitedb`` (cheap to import for an idle tick); this module adds the
connection API the domain queries run on, ``BEGIN IMMEDIATE`` transactions and SQLite's
JSON functions.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import tzinfo

from picron.storage.sql import SqlStore
from picron.storage.sqlitedb import backup_database, connect, storage_error


class SqliteStore(SqlStore):
    """The picron database in one SQLite file (or ``":memory:"``, private to this store).

    One connection per store: open one store per thread (the web server opens one per
    request, a background run its own).
    """

    _NO_LIMIT = "-1"

    def __init__(self, location: str, *, default_zone: tzinfo | None = None,
                 create: bool = True, busy_timeout: float | None = None) -> None:
        super().__init__(location, default_zone)
        self._conn = connect(location, create=create, busy_timeout=busy_timeout)

    # -- Store -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: the database's single write lock is taken
        at the start, so a read-then-write never fails half-way with "locked"."""
        conn = self._conn
        if conn.in_transaction:
            yield
            return
        try:
            conn.execute("begin immediate")
        except sqlite3.Error as error:
            raise storage_error(error) from None
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise
        try:
            conn.execute("commit")
        except sqlite3.Error as error:
            if conn.in_transaction:
                conn.execute("rollback")
            raise storage_error(error) from None

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error as error:
            raise storage_error(error) from None

    def backup(self, target_path: str) -> None:
        backup_database(self._conn, target_path)

    def can_share_with_child(self) -> bool:
        return self.location != ":memory:"

    # -- the connection API ------------------------------------------------------------

    def _all(self, sql: str, params: Sequence = ()) -> list:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as error:
            raise storage_error(error) from None

    def _one(self, sql: str, params: Sequence = ()):
        try:
            return self._conn.execute(sql, tuple(params)).fetchone()
        except sqlite3.Error as error:
            raise storage_error(error) from None

    def _exec(self, sql: str, params: Sequence = ()) -> int:
        try:
            return self._conn.execute(sql, tuple(params)).rowcount
        except sqlite3.Error as error:
            raise storage_error(error) from None

    def _exec_many(self, sql: str, rows: Iterable[Sequence]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as error:
            raise storage_error(error) from None

    def _task_json_sql(self) -> str:
        return _TASK_JSON


def _per_node(column: str, where: str = "") -> str:
    return (f"(select json_group_object(node, {column}) from (select node, {column}"
            f" from task_node where task_id = t.id{where} order by position))")


def _flag(column: str) -> str:
    return f"json(iif({column}, 'true', 'false'))"


# The SQL twin of Task.to_json (tests/test_store_json.py keeps the two equal).
_TASK_JSON = (
    f"select json_object('id', t.id, 'name', t.name, 'active', {_flag('t.active')},"
    " 'ordering', t.ordering, 'interval', t.interval, 'timezone', t.timezone,"
    " 'nodes', (select json_group_array(node) from (select node from task_node"
    " where task_id = t.id order by position)),"
    " 'taskmodule', t.taskmodule,"
    " 'options', (select json_group_object(key, value) from (select key, value"
    " from task_option where task_id = t.id order by key)),"
    f" 'retry_if_failed', {_flag('t.retry_if_failed')},"
    " 'max_retries', t.max_retries, 'timeout', t.timeout,"
    " 'notify_url', t.notify_url, 'notify_email', t.notify_email,"
    " 'last_update', t.last_update,"
    f" 'last_runs', {_per_node('last_run_at', ' and last_run_at is not null')},"
    f" 'next_runs', {_per_node('next_run_at')},"
    f" 'last_status', {_per_node('last_status', ' and last_status is not null')},"
    f" 'last_attempts', {_per_node('last_attempt_at', ' and last_attempt_at is not null')},"
    f" 'failure_streak', {_per_node('failure_streak')}) from task t")
