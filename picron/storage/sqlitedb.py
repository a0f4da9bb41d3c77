"""SQLite below the store: connecting, the schema migrations, the one error mapping, the
online backup and the idle look.

Kept apart from ``picron.storage.sqlite`` (the store) so that an idle cron tick imports
only this and ``sqlite3``. Connections run in autocommit mode (``isolation_level=None``)
and every write starts with ``BEGIN IMMEDIATE``: the cron runner and the web server are
separate processes, and a deferred read-then-write transaction would fail at once with
"database is locked".
"""
from __future__ import annotations

import os
import sqlite3

from picron.errors import StorageError
from picron.storage import DatabaseBusy, UniqueViolation
from picron.storage.rules import ANYTHING_TO_DO, TICK_UPSERT
from picron.timestamps import to_db, utcnow

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
    """
    -- Where a task's down/up notifications go (SPEC §1, §7); null: the config's.
    alter table task add column notify_url text;
    alter table task add column notify_email text;
    -- The start of the newest finished run on the node, counted or not (SPEC §1).
    alter table task_node add column last_attempt_at text;
    update task_node set last_attempt_at = (
        select max(run.start_at) from run where run.task_id = task_node.task_id
        and run.node = task_node.node and run.status != 'running');
    -- due_at is now exactly next_run_at while active (picron.storage.rules.DUE): a retry
    -- is no longer put off to the second after its failure ended.
    update task_node set due_at = next_run_at where due_at is not null;
    -- The owner of a run (host, boot, PID namespace, process start, process group) and
    -- its lease, for liveness across hosts and reboots (SPEC §2 rule 6).
    alter table run add column boot_id text;
    alter table run add column pidns text;
    alter table run add column proc_start text;
    alter table run add column pgid integer;
    alter table run add column lease_until text;
    -- Down/up notification events (SPEC §7) and whether they were delivered.
    create table event (
        id integer primary key autoincrement,
        at text not null,
        event text not null check (event in ('down', 'up')),
        task_id integer,
        task_name text not null,
        node text not null,
        run_id integer,
        failure_streak integer not null,
        delivered integer not null default 0,
        detail text not null default ''
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def storage_error(error: sqlite3.Error, path: str | None = None) -> StorageError:
    """Map a sqlite3 error to one clear ``StorageError`` line: the only place that reads
    SQLite's messages. A unique-constraint failure becomes ``UniqueViolation``."""
    text = str(error)
    where = f"database {path}" if path else "database"
    if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in text:
        return UniqueViolation(f"{where}: {text}")
    if "locked" in text or "busy" in text:
        return DatabaseBusy(f"{where}: database busy (locked by another process); try again")
    if "readonly" in text or "read-only" in text:
        return StorageError(f"{where}: is read-only")
    if "not a database" in text or "malformed" in text:
        return StorageError(f"{where}: not a picron (SQLite) database or damaged")
    return StorageError(f"{where}: {text}")


def connect(path: str, *, busy_timeout: float | None = None,
            create: bool = True) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the picron database at ``path``.

    ``":memory:"`` gives a private in-memory database. A new database gets a 0700
    directory and a 0600 file. Raises ``StorageError`` with one clear line when the path
    is a directory, not a SQLite database, read-only, locked or newer than this picron.
    """
    if path != ":memory:":
        _check_file(path, create)
    timeout = BUSY_TIMEOUT_SECONDS if busy_timeout is None else busy_timeout
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as error:
        raise storage_error(error, path) from None
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
    except sqlite3.Error as error:
        raise storage_error(error, path) from None
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(temporary + suffix)
            except FileNotFoundError:
                pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version (``PRAGMA user_version``); returns it.

    Each script runs in one transaction with its version bump, so a failure leaves the
    database as it was. Two processes migrating at once are safe: the loser re-reads.
    Raises ``sqlite3.Error`` (the caller maps it) or ``StorageError`` for a newer schema.
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


def backup_database(conn: sqlite3.Connection, target: str) -> None:
    """Write a consistent copy of the database to ``target`` (SQLite's online backup API).

    The copy is written next to ``target`` (0600 from the start) and renamed into place,
    so a reader never sees half a backup. Raises ``StorageError`` if ``target`` cannot be
    written.
    """
    if os.path.isdir(target):
        raise StorageError(f"backup {target}: is a directory")
    temporary = f"{target}.partial-{os.getpid()}"
    try:
        os.close(os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600))
        copy = sqlite3.connect(temporary)
        try:
            conn.backup(copy)
        finally:
            copy.close()
        os.replace(temporary, target)
    except (OSError, sqlite3.Error) as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, sqlite3.Error):
            raise StorageError(f"backup {target}: {storage_error(error).message}") from None
        raise StorageError(f"backup {target}: {error.strerror or error}") from None


def tick_is_idle(path: str, node: str) -> bool:
    """The SQLite idle look (see ``picron.storage.tick_is_idle``).

    Anything unusual (no database yet, an old schema, any error but a busy database)
    answers "not idle", and the full tick then does its work and reports any error as if
    this look had not happened.
    """
    if not _usable_file(path):
        return False
    now = to_db(utcnow())
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        if conn.execute("pragma user_version").fetchone()[0] != SCHEMA_VERSION:
            return False
        if conn.execute(ANYTHING_TO_DO, (node, now, node, now)).fetchone()[0]:
            return False
        conn.execute("begin immediate")
        conn.execute(TICK_UPSERT, (node, now))
        conn.execute("commit")
        return True
    except sqlite3.Error as error:
        mapped = storage_error(error, path)
        if isinstance(mapped, DatabaseBusy):
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
