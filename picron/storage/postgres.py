"""The PostgreSQL backend: ``PostgresStore`` and the idle look of a cron tick.

Imported only for a ``postgresql://`` location (``picron.storage.open_store``). The domain
queries are ``SqlStore``'s, written once with SQLite's ``?``/``:name`` placeholders; this
module translates them for psycopg and supplies the few expressions the two dialects spell
differently. Connections, migrations and the write lock are in ``picron.storage.pgdb``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from picron.storage import pgdb, rules
from picron.storage.pgdb import psycopg
from picron.storage.sql import SqlStore

# A string literal or quoted name (copied as is), a cast, a placeholder, or a "%".
_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|::|\?|:([A-Za-z_]\w*)|%""")


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's placeholders in psycopg's spelling: ``?`` -> ``%s``, ``:name`` ->
    ``%(name)s``, a literal ``%`` -> ``%%``; literals and ``::`` casts are left alone."""
    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token
    return _TOKEN.sub(replace, sql)


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


def row_factory(cursor):
    """psycopg row factory making ``Row``s (one subclass per result shape)."""
    names = {column.name: index for index, column in enumerate(cursor.description or ())}
    shaped = type("Row", (Row,), {"__slots__": (), "names": names})
    return shaped


_IDLE = (
    f"with look (busy) as ({rules.ANYTHING_TO_DO}),"
    " recorded as (insert into tick (node, at) select ?, ? from look"
    f" where not busy and (select version from {pgdb.VERSION_TABLE}) = ?"
    " on conflict (node) do update set at = excluded.at returning 1)"
    " select count(*) from recorded")


def tick_is_idle(location: str, node: str) -> bool:
    """Record a tick on ``node`` and return True if nothing is due, running or in the
    future there: one connection and one statement (the look and the tick's upsert).

    Returns False when the full tick has to look (including an old or missing schema,
    whose error the full tick reports). Raises ``StorageError`` when the server cannot be
    reached, so that a down server is not waited for twice.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())  # as schedule.to_db
    conn = pgdb.connect(location)
    try:
        with conn:
            recorded = conn.execute(translate(_IDLE), (node, now, node, now, node, now,
                                                       pgdb.SCHEMA_VERSION)).fetchone()[0]
        return recorded == 1
    except psycopg.Error:
        return False


class PostgresStore(SqlStore):
    """The picron database in PostgreSQL, shared by every node (SPEC §3).

    One connection per store, in autocommit: reads are single statements; writes are
    ``transaction()``s serialised by picron's advisory lock (``picron.storage.pgdb``).
    A connection the server dropped (restart, idle timeout) is replaced at the next
    statement outside a transaction, so a long-lived store recovers by itself.
    """

    _NO_LIMIT = "all"

    def __init__(self, location: str, *, default_zone: tzinfo | None = None,
                 create: bool = True) -> None:
        super().__init__(location, default_zone)
        self._conn = self._connect(create=create)

    def _connect(self, *, create: bool = True) -> psycopg.Connection:
        conn = pgdb.connect(self.location)
        try:
            pgdb.migrate(conn, create=create)
        except psycopg.Error as error:
            conn.close()
            raise pgdb.storage_error(error, f"database {pgdb.describe(conn)}") from None
        except BaseException:
            conn.close()
            raise
        conn.row_factory = row_factory
        return conn

    def _session(self) -> psycopg.Connection:
        """The connection, reconnecting if the server dropped it (not inside a transaction)."""
        if self._conn.closed or self._conn.broken:
            if self._depth:
                raise pgdb.StorageError("database: connection to the database server lost")
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
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (pgdb.WRITE_LOCK,))
                yield
        except psycopg.Error as error:
            raise pgdb.storage_error(error) from None
        finally:
            self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction on one consistent snapshot (backups and copies): it
        takes no lock, so ticks and the web server go on writing meanwhile."""
        conn = self._session()
        self._depth = 1
        try:
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read, read only")
                conn.execute("set local statement_timeout = 0")
                yield
        except psycopg.Error as error:
            raise pgdb.storage_error(error) from None
        finally:
            self._depth = 0

    def close(self) -> None:
        self._conn.close()

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
            raise pgdb.storage_error(error) from None

    def _one(self, sql: str, params: Sequence = ()):
        try:
            return self._session().execute(translate(sql), tuple(params)).fetchone()
        except psycopg.Error as error:
            raise pgdb.storage_error(error) from None

    def _exec(self, sql: str, params: Sequence = ()) -> int:
        try:
            return self._session().execute(translate(sql), tuple(params)).rowcount
        except psycopg.Error as error:
            raise pgdb.storage_error(error) from None

    def _exec_many(self, sql: str, rows: Iterable[Sequence]) -> None:
        rows = list(rows)
        if not rows:
            return
        try:
            with self._session().cursor() as cursor:
                cursor.executemany(translate(sql), rows)
        except psycopg.Error as error:
            raise pgdb.storage_error(error) from None

    def _copied(self, table: str) -> None:
        """Move the table's id sequence past the ids a copy inserted."""
        if table in pgdb.ID_TABLES:
            self._one(f"select setval(pg_get_serial_sequence('{table}', 'id'),"
                      f" coalesce(max(id), 0) + 1, false) from {table}")

    def _task_json_sql(self) -> str:
        return _TASK_JSON


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
