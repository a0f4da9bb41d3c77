"""Copying a whole picron database between backends (SPEC §4 ``copy-db`` and ``backup``).

Every row of every table moves with its id, so runs keep pointing at their tasks, audit
entries at what they describe, and no task runs early or twice after the move. The source
is read in one consistent snapshot and never written; the target is written in one
transaction, all or nothing.
"""
from __future__ import annotations

import os

from picron.errors import StorageError, ValidationError
from picron.storage import Store, is_postgres, open_store
from picron.storage.sqlitedb import remove_database_files

# Every table of picron's schema, parents first (tests/test_copy_db.py checks the list
# against the schema, so a new table cannot be forgotten here).
TABLES = ("task", "task_option", "task_node", "run", "tick", "counter", "stat", "audit",
          "setting", "event")


def copy_rows(source: Store, target: Store) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``, which must be empty; returns the
    number of rows per table. Raises ``ValidationError`` for a non-empty target."""
    with target.transaction():
        filled = [table for table in TABLES if target._one(f"select count(*) from {table}")[0]]
        if filled:
            raise ValidationError(f"target: the database is not empty (has rows in "
                                  f"{', '.join(filled)}); nothing copied", field="target")
        counts = {}
        with source.snapshot():
            for table in TABLES:
                rows = source._all(f"select * from {table}")
                counts[table] = len(rows)
                if rows:
                    columns = list(rows[0].keys())
                    target._exec_many(
                        f"insert into {table} ({', '.join(columns)})"
                        f" values ({', '.join('?' * len(columns))})", [tuple(r) for r in rows])
                    target._copied(table)
    return counts


def copy_database(source: Store, location: str) -> dict[str, int]:
    """``picron copy-db``: everything into ``location``, an empty PostgreSQL database or
    SQLite file, or a SQLite path that does not exist yet (created 0600, in place only
    once complete)."""
    if location == source.location:
        raise ValidationError("target: is the current database", field="target")
    if is_postgres(location) or os.path.exists(location):
        with open_store(location, default_zone=source.default_zone) as target:
            return copy_rows(source, target)
    return _new_sqlite_file(source, location, replace=False)


def backup_to_sqlite(source: Store, path: str) -> None:
    """A consistent SQLite snapshot of ``source`` at ``path`` (replaced atomically)."""
    if os.path.isdir(path):
        raise StorageError(f"backup {path}: is a directory")
    _new_sqlite_file(source, path, replace=True)


def _new_sqlite_file(source: Store, path: str, *, replace: bool) -> dict[str, int]:
    """Fill a new SQLite file (0600 from its creation) under a temporary name, then move it
    into place, so nobody ever sees half a copy."""
    temporary = f"{path}.partial-{os.getpid()}"
    remove_database_files(temporary)
    try:
        with open_store(temporary, default_zone=source.default_zone) as target:
            counts = copy_rows(source, target)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # never over a file that appeared meanwhile
    except FileExistsError:
        raise ValidationError(f"target: {path} exists", field="target") from None
    except OSError as error:
        raise StorageError(f"{path}: {error.strerror}") from None
    finally:
        remove_database_files(temporary)
    return counts
