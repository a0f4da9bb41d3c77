"""SQLite connections, the schema migrations and the one transaction helper.

Connections run in autocommit mode (``isolation_level=None``) and every write starts
with ``BEGIN IMMEDIATE``: the cron runner and the web server are separate processes, and
a deferred read-then-write transaction would fail at once with "database is locked".
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from picron.errors import StorageError

BUSY_TIMEOUT_SECONDS = 5.0

# Append-only: script n (1-based) takes the schema to version n. Never edit a shipped one.
MIGRATIONS = [
    """
    create table task (
        id integer primary key autoincrement,
        name text not null unique,
        active integer not null default 1,
        ordering integer not null default 0 check (ordering >= 0),
        interval text not null,
        timezone text,
        taskmodule text not null,
        retry_if_failed integer not null default 1,
        max_retries integer check (max_retries >= 0),
        timeout integer check (timeout > 0),
        last_update text not null
    );
    create table task_option (
        task_id integer not null references task (id) on delete cascade,
        key text not null,
        value text not null,
        primary key (task_id, key)
    ) without rowid;
    -- One row per node in the task's nodes: its last counted run, the next run of
    -- SPEC §2 and due_at, the scheduling key (null while inactive; after a failure that
    -- will be retried, not before that failure ended, so concurrent ticks don't retry it).
    create table task_node (
        task_id integer not null references task (id) on delete cascade,
        node text not null,
        position integer not null,
        last_run_at text,
        next_run_at text not null,
        due_at text,
        last_status text,
        failure_streak integer not null default 0,
        failed_attempts integer not null default 0,
        primary key (task_id, node)
    ) without rowid;
    create index task_node_due on task_node (node, due_at);
    create index task_node_last_run on task_node (node, last_run_at);
    create table run (
        id integer primary key autoincrement,
        task_id integer references task (id) on delete set null,
        task_name text not null,
        node text not null,
        trigger text not null check (trigger in ('scheduled', 'manual')),
        status text not null
            check (status in ('running', 'success', 'failed', 'timeout', 'interrupted')),
        start_at text not null,
        end_at text,
        duration real,
        message text not null default '',
        pid integer,
        host text,
        deadline_at text
    );
    -- The claim: a task runs at most once at a time per node (SPEC §2 rule 6).
    create unique index run_one_running on run (task_id, node) where status = 'running';
    create index run_task on run (task_id, id);
    create index run_start on run (start_at);
    create table tick (node text primary key, at text not null) without rowid;
    create table counter (name text primary key, value integer not null) without rowid;
    create table stat (
        id integer primary key,
        key text not null,
        at text not null,
        value integer not null
    );
    create index stat_key_at on stat (key, at);
    create table audit (
        id integer primary key,
        at text not null,
        actor text not null,
        action text not null,
        task_id integer,
        detail text not null default ''
    );
    create table setting (key text primary key, value text not null) without rowid;
    """,
]


SCHEMA_VERSION = len(MIGRATIONS)

# Recording a cron tick (backs ``picron check``); shared by the store and ``picron.idle``.
TICK_UPSERT = ("insert into tick (node, at) values (?, ?)"
               " on conflict (node) do update set at = excluded.at")


def connect(path: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS,
            create: bool = True) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the picron database at ``path``.

    ``":memory:"`` gives a private in-memory database. A new database gets a 0700
    directory and a 0600 file. Raises ``StorageError`` with one clear line when the path
    is a directory, not a SQLite database, read-only, locked or newer than this picron.
    """
    if path != ":memory:":
        _check_file(path, create)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as error:
        raise StorageError(f"database {path}: {error}") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("pragma foreign_keys = on")
        if path != ":memory:":
            conn.execute("pragma journal_mode = wal")
            conn.execute("pragma synchronous = normal")
        migrate(conn)
    except sqlite3.Error as error:
        conn.close()
        raise storage_error(error, path) from None
    except StorageError:
        conn.close()
        raise
    return conn


def _check_file(path: str, create: bool) -> None:
    # Never open() the database file here: closing any descriptor of it drops every POSIX
    # lock this process holds on it, including those of other connections (SQLite's
    # "How To Corrupt" §2.2). A server thread doing that made a cron tick believe it was
    # the last user, delete the WAL and the -shm under the server, and every later query
    # failed with "disk I/O error". SQLite itself reports a file that is not a database.
    if os.path.isdir(path):
        raise StorageError(f"database {path}: is a directory")
    try:
        status = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise StorageError(f"database {path}: does not exist") from None
        _create_file(path)
        return
    except OSError as error:
        raise StorageError(f"database {path}: cannot read: {error.strerror}") from None
    if status.st_size == 0:
        raise StorageError(f"database {path}: not a picron (SQLite) database (empty file)")
    if not os.access(path, os.R_OK):
        raise StorageError(f"database {path}: cannot read: Permission denied")
    # A file without write bits is read-only on purpose, even for root (who could write it).
    if not os.access(path, os.W_OK) or not status.st_mode & 0o222:
        raise StorageError(f"database {path}: is read-only")


def _create_file(path: str) -> None:
    """Create a migrated database under a temporary name, then link it into place.

    Other processes therefore never see a half-created (empty) database file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.new-{os.getpid()}"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("pragma journal_mode = wal")
            migrate(conn)
        finally:
            conn.close()
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process created it a moment ago
    except OSError as error:
        raise StorageError(f"database {path}: cannot create: {error.strerror}") from None
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(temporary + suffix)
            except FileNotFoundError:
                pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns that version.

    Each script runs in one transaction with its version bump, so a failure leaves the
    database as it was. Two processes migrating at once are safe: the loser re-reads.
    """
    newest = len(MIGRATIONS)
    version = conn.execute("pragma user_version").fetchone()[0]
    if version > newest:
        raise StorageError(f"database schema version {version} is newer than this picron "
                           f"supports ({newest}); upgrade picron")
    while version < newest:
        number = version + 1
        try:
            conn.executescript(f"begin immediate; {MIGRATIONS[version]}\n"
                               f"pragma user_version = {number:d}; commit;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("rollback")
            again = conn.execute("pragma user_version").fetchone()[0]
            if again < number:
                raise
        version = conn.execute("pragma user_version").fetchone()[0]
    return version


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    Keep the body short: it holds the database's single write lock. Inside another
    ``transaction`` it joins the outer one, so several writes can be made all-or-nothing.
    """
    if conn.in_transaction:
        yield conn
        return
    try:
        conn.execute("begin immediate")
    except sqlite3.Error as error:
        raise storage_error(error) from None
    try:
        yield conn
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


def storage_error(error: sqlite3.Error, path: str | None = None) -> StorageError:
    """Map a driver error to one clear ``StorageError`` line."""
    text = str(error)
    where = f"database {path}" if path else "database"
    if "locked" in text or "busy" in text:
        return StorageError(f"{where}: database busy (locked by another process); try again")
    if "readonly" in text or "read-only" in text:
        return StorageError(f"{where}: is read-only")
    if "not a database" in text or "malformed" in text:
        return StorageError(f"{where}: not a picron (SQLite) database or damaged")
    return StorageError(f"{where}: {text}")


def backup_database(conn: sqlite3.Connection, target: str) -> None:
    """Write a consistent copy of the database to ``target`` (SQLite's online backup API).

    The copy is written next to ``target`` and renamed into place, so a reader never
    sees half a backup. Raises ``StorageError`` if ``target`` cannot be written.
    """
    if os.path.isdir(target):
        raise StorageError(f"backup {target}: is a directory")
    temporary = f"{target}.partial-{os.getpid()}"
    try:
        copy = sqlite3.connect(temporary)
        try:
            conn.backup(copy)
        finally:
            copy.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except (OSError, sqlite3.Error) as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise StorageError(f"backup {target}: {getattr(error, 'strerror', None) or error}") from None
