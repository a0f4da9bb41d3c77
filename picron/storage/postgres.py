"""The PostgreSQL backend: ``PostgresStore``.

Imported only for a ``postgresql://`` location (``picron.storage.open_store``). The domain
queries are ``SqlStore``'s, written once with SQLite's ``?``/``:name`` placeholders; this
module translates them for psycopg and supplies the few expressions the two dialects spell
differently. Connections, migrations, the write lock and the idle look of a cron tick
(which must not import the store) are in ``picron.storage.pgdb``.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo

from picron.errors import NotFound
from picron.storage import pgdb
from picron.storage.pgdb import psycopg, translate
from picron.storage.sql import SqlStore


class Row(tuple):
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    __slots__ = ()
    names: dict[str, int] = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


_ROW_TYPES: dict[tuple[str, ...], type] = {}


def row_factory(cursor):
    """psycopg row factory making ``Row``s (one subclass per result shape)."""
    names = tuple(column.name for column in cursor.description or ())
    shaped = _ROW_TYPES.get(names)
    if shaped is None:
        shaped = _ROW_TYPES[names] = type("Row", (Row,), {
            "__slots__": (), "names": {name: index for index, name in enumerate(names)}})
    return shaped


# BEGIN and the write lock in one round trip (a constant: no parameters).
_BEGIN_WRITE = f"begin; select pg_advisory_xact_lock({pgdb.WRITE_LOCK:d})"


# Sessions of closed stores, (location, session) oldest first, for the next store of this
# process; at most IDLE_SESSIONS in all.
IDLE_SESSIONS = 8
_idle: list[tuple[str, psycopg.Connection]] = []
_idle_pid = os.getpid()
_idle_lock = threading.Lock()
_inherited: list = []  # a forked child's copies of its parent's sessions: never touched


def _reuse(location: str) -> psycopg.Connection | None:
    """A kept session of ``location`` that still answers on the current schema, or None
    (one round trip: the server may have restarted, or a newer picron migrated meanwhile)."""
    global _idle, _idle_pid
    while True:
        with _idle_lock:
            if _idle_pid != os.getpid():  # a forked child: using or closing the parent's
                _inherited.append(_idle)  # sessions would end them under the parent
                _idle, _idle_pid = [], os.getpid()
            index = next((i for i in range(len(_idle) - 1, -1, -1)
                          if _idle[i][0] == location), None)
            if index is None:
                return None
            conn = _idle.pop(index)[1]
        try:
            version = conn.execute(f"select version from {pgdb.VERSION_TABLE}").fetchone()
            if version[0] == pgdb.SCHEMA_VERSION:
                return conn
        except psycopg.Error:
            pass
        conn.close()


def _keep(location: str, conn: psycopg.Connection) -> None:
    """Keep a closed store's session for reuse (closing the oldest kept one beyond
    ``IDLE_SESSIONS``), or close it."""
    if (conn.closed or conn.broken or _idle_pid != os.getpid()
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
        conn.close()
        return
    with _idle_lock:
        _idle.append((location, conn))
        surplus = _idle[:-IDLE_SESSIONS]
        del _idle[:-IDLE_SESSIONS]
    for _, old in surplus:
        old.close()


def _rollback(conn: psycopg.Connection) -> None:
    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        try:
            conn.execute("rollback")
        except psycopg.Error:
            pass  # the session is gone: so is its transaction


class PostgresStore(SqlStore):
    """The picron database in PostgreSQL, shared by every node (SPEC §3).

    One session per store, in autocommit: reads are single statements; writes are
    ``transaction()``s serialised by picron's advisory lock (``picron.storage.pgdb``).
    A session the server dropped (restart, idle timeout) is replaced at the next
    statement outside a transaction, so a long-lived store recovers by itself; a closed
    store's session is kept for the next store of the process (the web server opens one
    store per request, and a new session costs the server a process: about 25 ms).
    """

    _NO_LIMIT = "all"

    def __init__(self, location: str, *, default_zone: tzinfo | None = None,
                 create: bool = True) -> None:
        super().__init__(location, default_zone)
        self._where = f"database server {pgdb.server_name(location)}"  # for messages
        self._conn = _reuse(location) or self._connect(create=create)

    def _connect(self, *, create: bool = True) -> psycopg.Connection:
        conn = pgdb.connect(self.location)
        try:
            pgdb.migrate(conn, create=create)
        except psycopg.Error as error:
            conn.close()
            raise pgdb.storage_error(error, self._where) from None
        except BaseException:
            conn.close()
            raise
        conn.row_factory = row_factory
        return conn

    def _session(self) -> psycopg.Connection:
        """The session, replaced if the server dropped it (not inside a transaction)."""
        if self._conn.closed or self._conn.broken:
            if self._depth:
                raise pgdb.StorageError(f"{self._where}: connection lost")
            self._conn = self._connect()
        return self._conn

    _depth = 0

    # -- Store -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction that first takes picron's write lock, the equivalent of
        SQLite's ``BEGIN IMMEDIATE``: writers run one at a time and each sees everything
        committed before it (READ COMMITTED), so read-then-write is safe."""
        if self._depth:
            yield
            return
        conn = self._session()
        self._depth = 1
        try:
            conn.execute(_BEGIN_WRITE)
            try:
                yield
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("commit")
        except psycopg.Error as error:
            _rollback(conn)
            raise pgdb.storage_error(error, self._where) from None
        finally:
            self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction on one consistent snapshot (backups and copies): it
        takes no lock, so ticks and the web server go on writing meanwhile; it may sit
        idle while the copy is written, so the idle timeout is off for it."""
        conn = self._session()
        self._depth = 1
        try:
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read, read only")
                conn.execute("set local statement_timeout = 0")  # reads everything
                conn.execute("set local idle_in_transaction_session_timeout = 0")
                yield
        except psycopg.Error as error:
            raise pgdb.storage_error(error, self._where) from None
        finally:
            self._depth = 0

    def close(self) -> None:
        _keep(self.location, self._conn)

    def backup(self, target_path: str) -> None:
        from picron.storage.copy import backup_to_sqlite

        backup_to_sqlite(self, target_path)

    def now(self) -> datetime:
        """The database server's clock (``statement_timestamp()``), for leases and
        deadlines, in UTC."""
        return self._one("select statement_timestamp()")[0].astimezone(UTC)

    def can_share_with_child(self) -> bool:
        return True

    # -- the connection API ------------------------------------------------------------

    def _all(self, sql: str, params: Sequence = ()) -> list:
        try:
            return self._session().execute(translate(sql), tuple(params)).fetchall()
        except psycopg.Error as error:
            raise pgdb.storage_error(error, self._where) from None

    def _one(self, sql: str, params: Sequence = ()):
        try:
            return self._session().execute(translate(sql), tuple(params)).fetchone()
        except psycopg.Error as error:
            raise pgdb.storage_error(error, self._where) from None

    def _exec(self, sql: str, params: Sequence = ()) -> int:
        try:
            return self._session().execute(translate(sql), tuple(params)).rowcount
        except psycopg.Error as error:
            raise pgdb.storage_error(error, self._where) from None

    def _exec_many(self, sql: str, rows: Iterable[Sequence]) -> None:
        rows = list(rows)
        if not rows:
            return
        try:
            with self._session().cursor() as cursor:
                cursor.executemany(translate(sql), rows)
        except psycopg.Error as error:
            raise pgdb.storage_error(error, self._where) from None

    def _copied(self, table: str) -> None:
        """Move the table's id sequence past the ids a copy inserted."""
        if table in pgdb.ID_TABLES:
            self._one(f"select setval(pg_get_serial_sequence('{table}', 'id'),"
                      f" coalesce(max(id), 0) + 1, false) from {table}")

    def _task_json_sql(self) -> str:
        return _TASK_JSON

    def _task_parts(self, task_id: int) -> tuple:
        """One round trip instead of three: the options and node rows come as JSON
        aggregates beside the task row (every task_node column is text or integer, so
        JSON gives back the same Python values)."""
        row = self._one(_TASK_PARTS, (task_id,))
        if row is None:
            raise NotFound(f"task {task_id} not found", field="id")
        return row, dict(row["picron_options"]), row["picron_nodes"]


# get_task's reads in one statement (``SqlStore._task_parts``).
_TASK_PARTS = (
    "select t.*, coalesce((select json_agg(json_build_array(key, value) order by key)"
    " from task_option where task_id = t.id), '[]') as picron_options,"
    " coalesce((select json_agg(row_to_json(n) order by position) from task_node n"
    " where n.task_id = t.id), '[]') as picron_nodes from task t where t.id = ?")


def _per_node(column: str, where: str = "") -> str:
    return (f"coalesce((select json_object_agg(node, {column} order by position)"
            f" from task_node where task_id = t.id{where}), '{{}}')")


# The SQL twin of Task.to_json (tests/test_store_json.py keeps the two equal), in
# PostgreSQL's JSON functions (an empty aggregate is null there, hence the coalesces).
_TASK_JSON = (
    "select json_build_object('id', t.id, 'name', t.name, 'active', t.active <> 0,"
    " 'ordering', t.ordering, 'interval', t.interval, 'timezone', t.timezone,"
    " 'nodes', coalesce((select json_agg(node order by position) from task_node"
    " where task_id = t.id), '[]'),"
    " 'taskmodule', t.taskmodule,"
    " 'options', coalesce((select json_object_agg(key, value order by key) from task_option"
    " where task_id = t.id), '{}'),"
    " 'retry_if_failed', t.retry_if_failed <> 0,"
    " 'max_retries', t.max_retries, 'timeout', t.timeout,"
    " 'notify_url', t.notify_url, 'notify_email', t.notify_email,"
    " 'last_update', t.last_update,"
    f" 'last_runs', {_per_node('last_run_at', ' and last_run_at is not null')},"
    f" 'next_runs', {_per_node('next_run_at')},"
    f" 'last_status', {_per_node('last_status', ' and last_status is not null')},"
    f" 'last_attempts', {_per_node('last_attempt_at', ' and last_attempt_at is not null')},"
    f" 'failure_streak', {_per_node('failure_streak')})::text from task t")
