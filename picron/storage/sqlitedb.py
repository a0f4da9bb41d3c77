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
from picron.files import private_temporary
from picron.storage import DatabaseBusy, SchemaBehind, UniqueViolation
from picron.storage.rules import ANYTHING_TO_DO, TICK_UPSERT
from picron.timestamps import to_db, utcnow

BUSY_TIMEOUT_SECONDS = 5.0
# Check each page's cells as it is read: without it, a damaged page can be read as garbage
# without an error (an idle look then saw "nothing due" and wrote to a damaged file).
CHECK_CELLS = "pragma cell_size_check = on"

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


# Files whose pages this process has checked (device, inode): each is checked once.
_CHECKED: set[tuple[int, int]] = set()
# The tables (and views, triggers) of each schema version, for recognising picron's files.
_SCHEMA_TABLES: dict[int, frozenset[str]] = {}
_TABLES = ("select name from sqlite_master where type in ('table', 'view', 'trigger')"
           " and name not like 'sqlite!_%' escape '!'")


def storage_error(error: sqlite3.Error, path: str | None = None,
                  where: str | None = None) -> StorageError:
    """Map a sqlite3 error to one clear ``StorageError`` line: the only place that reads
    SQLite's errors. A unique-constraint failure becomes ``UniqueViolation``. The line
    starts with ``where`` (default: "database PATH")."""
    text = str(error)
    code = getattr(error, "sqlite_errorname", "") or ""
    where = where or (f"database {path}" if path else "database")
    if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in text:
        return UniqueViolation(f"{where}: {text}")
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return DatabaseBusy(f"{where}: database busy (locked by another process); try again")
    if code.startswith("SQLITE_READONLY") or "readonly" in text:
        return StorageError(f"{where}: is read-only")
    if code.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return damaged(where, text)
    if code == "SQLITE_NOTADB" or "not a database" in text:
        return StorageError(f"{where}: not a picron database (not a SQLite file)")
    free = _free_bytes(path)
    # SQLite says "disk I/O error" when the full disk is met extending its -shm file.
    if code.startswith("SQLITE_FULL") or (code.startswith("SQLITE_IOERR")
                                          and free is not None and free < 1 << 20):
        space = "" if free is None else f" ({free // 1024} KiB free)"
        return StorageError(f"{where}: disk full{space}; free some space and try again")
    return StorageError(f"{where}: {text}")


def damaged(where: str, detail: str) -> StorageError:
    """The error for a file whose pages are damaged (SPEC §3), with SQLite's first finding."""
    detail = detail.replace("*** in database main ***", "").strip().replace("\n", "; ")
    return StorageError(f"{where}: is damaged ({detail[:200]}); restore it from a backup")


def _free_bytes(path: str | None) -> int | None:
    if not path or path == ":memory:":
        return None
    try:
        status = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return status.f_bavail * status.f_frsize


def connect(path: str, *, busy_timeout: float | None = None, create: bool = True,
            read_only: bool = False) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the picron database at ``path``.

    ``":memory:"`` gives a private in-memory database. A new database gets a 0700
    directory and a 0600 file. Only an empty database or picron's own is used, and only
    when its pages pass SQLite's quick check (SPEC §3): a foreign or damaged file is
    refused before anything is written to it. ``read_only`` (and a file this user may not
    write) opens it for reading only: no WAL switch, no migration, and writes fail with
    "read-only". Raises ``StorageError`` with one clear line when the path is a
    directory, not a SQLite database, someone else's, damaged, read-only for a write,
    locked or newer than this picron.
    """
    target = path
    if path != ":memory:":
        read_only = _check_file(path, create, read_only)
        if read_only:
            target = _read_only_uri(path)
    timeout = BUSY_TIMEOUT_SECONDS if busy_timeout is None else busy_timeout
    try:
        conn = sqlite3.connect(target, timeout=timeout, isolation_level=None,
                               check_same_thread=False, uri=target != path)
    except sqlite3.Error as error:
        raise _open_error(error, path) from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("pragma foreign_keys = on")
        conn.execute(CHECK_CELLS)
        version = _check_schema(conn, path)
        if path != ":memory:":
            _check_pages(conn, path)
        if read_only:
            if version < SCHEMA_VERSION:
                raise SchemaBehind(
                    f"database {path}: is empty; picron creates its tables on first use"
                    if version == 0 else f"database {path}: has schema version {version} "
                    f"of {SCHEMA_VERSION}; picron upgrades it on first use")
        else:
            if path != ":memory:":
                conn.execute("pragma journal_mode = wal")
                conn.execute("pragma synchronous = normal")
            migrate(conn)
    except sqlite3.Error as error:
        conn.close()
        raise _open_error(error, path) from None
    except StorageError:
        conn.close()
        raise
    return conn


def _check_file(path: str, create: bool, read_only: bool) -> bool:
    """Refuse what SQLite cannot or must not open; returns whether to open read-only."""
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
        if not create or read_only:
            raise StorageError(f"database {path}: does not exist") from None
        _create_file(path)
        return False
    except OSError as error:
        raise StorageError(f"database {path}: cannot read: {error.strerror}") from None
    if status.st_size == 0:
        raise StorageError(f"database {path}: not a picron database (empty file)")
    if not os.access(path, os.R_OK):
        raise StorageError(f"database {path}: cannot read: Permission denied")
    if not may_write(path):
        return True
    directory = os.path.dirname(os.path.abspath(path))
    if not read_only and not os.access(directory, os.W_OK | os.X_OK) and not all(
            os.path.exists(path + suffix) for suffix in ("-wal", "-shm")):
        raise StorageError(_directory_read_only(path))
    return read_only


def may_write(path: str) -> bool:
    """Whether this process may write the database file ``path``."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    # A file without write bits is read-only on purpose, even for root (who could write it).
    return bool(os.access(path, os.W_OK) and status.st_mode & 0o222)


def _directory_read_only(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return (f"database {path}: its directory {directory} is read-only; SQLite needs to "
            f"create {name}-wal and {name}-shm there")


def _read_only_uri(path: str) -> str:
    """``mode=ro``; and ``immutable`` for a file nobody may write that no connection has
    open (no -wal beside it), so that reading it creates no -wal and -shm files."""
    from urllib.parse import quote  # not on the idle tick's path

    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    if not os.stat(path).st_mode & 0o222 and not os.path.exists(path + "-wal"):
        uri += "&immutable=1"
    return uri


def _open_error(error: sqlite3.Error, path: str) -> StorageError:
    directory = os.path.dirname(os.path.abspath(path))
    if (getattr(error, "sqlite_errorname", "") == "SQLITE_CANTOPEN" and path != ":memory:"
            and not os.access(directory, os.W_OK | os.X_OK)):
        return StorageError(_directory_read_only(path))
    return storage_error(error, path)


def _check_schema(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of an empty database or of picron's own; refuses any other."""
    version = conn.execute("pragma user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(f"database {path}: schema version {version} is newer than this "
                           f"picron supports ({SCHEMA_VERSION}); upgrade picron")
    tables = {row[0] for row in conn.execute(_TABLES)}
    expected = _schema_tables(version)
    if tables != expected:
        other = sorted(tables - expected)
        holds = (f"it holds other tables: {', '.join(other[:5])}" if other else
                 f"it lacks picron's tables: {', '.join(sorted(expected - tables)[:5])}")
        raise StorageError(f"database {path}: not a picron database ({holds}); picron "
                           "uses only an empty database or its own, and leaves this one alone")
    return version


def _schema_tables(version: int) -> frozenset[str]:
    """The tables the first ``version`` migrations create (computed once, in memory)."""
    if version not in _SCHEMA_TABLES:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for script in MIGRATIONS[:version]:
                conn.executescript(script)
            _SCHEMA_TABLES[version] = frozenset(row[0] for row in conn.execute(_TABLES))
        finally:
            conn.close()
    return _SCHEMA_TABLES[version]


def _check_pages(conn: sqlite3.Connection, path: str) -> None:
    """SQLite's quick check of every page, once per process and file: a damaged page is
    found before anything is written, and not only by the query that happens to read it
    (which may also read garbage without noticing)."""
    status = os.stat(path)
    identity = (status.st_dev, status.st_ino)
    if identity in _CHECKED:
        return
    finding = conn.execute("pragma quick_check(1)").fetchone()[0]
    if finding != "ok":
        raise damaged(f"database {path}", finding)
    _CHECKED.add(identity)


def _create_file(path: str) -> None:
    """Create a migrated database under a temporary name, then link it into place.

    Other processes therefore never see a half-created (empty) database file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = None
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temporary = private_temporary(path)
        os.close(fd)
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
        if temporary is not None:
            remove_database_files(temporary)


def remove_database_files(path: str) -> None:
    """Delete a SQLite file and the -wal/-shm/-journal files beside it, if there."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version (``PRAGMA user_version``); returns it.

    Each script runs in one transaction with its version bump, so a failure leaves the
    database as it was. Two processes migrating at once are safe: the loser re-reads.
    The caller has checked that the schema is picron's and not newer (``connect``).
    Raises ``sqlite3.Error`` (the caller maps it).
    """
    newest = len(MIGRATIONS)
    version = conn.execute("pragma user_version").fetchone()[0]
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

    The copy is written to a new file beside ``target``, 0600 from its creation, and
    renamed into place, so a reader never sees half a backup nor one that others may read.
    Raises ``StorageError`` if ``target`` cannot be written.
    """
    if os.path.isdir(target):
        raise StorageError(f"backup {target}: is a directory")
    temporary = None
    try:
        fd, temporary = private_temporary(target)
        os.close(fd)
        copy = sqlite3.connect(temporary)
        try:
            conn.backup(copy)
        finally:
            copy.close()
        os.replace(temporary, target)
    except (OSError, sqlite3.Error) as error:
        if temporary is not None:
            remove_database_files(temporary)
        if isinstance(error, sqlite3.Error):
            raise storage_error(error, target, where=f"backup {target}") from None
        raise StorageError(f"backup {target}: {error.strerror or error}") from None


def tick_is_idle(path: str, node: str) -> bool:
    """The SQLite idle look (see ``picron.storage.tick_is_idle``).

    Anything unusual (no database yet, an old schema, any error but a busy database)
    answers "not idle", and the full tick then does its work and reports any error as if
    this look had not happened. The pages it reads are checked as they are read
    (``CHECK_CELLS``); the check of the whole file (``_check_pages``) is the full open's,
    too slow for an idle tick.
    """
    if not _usable_file(path):
        return False
    now = to_db(utcnow())
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        conn.execute(CHECK_CELLS)
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
