"""SQLite connections, migrations, transactions and the error hierarchy."""
from __future__ import annotations

import sqlite3

import pytest

from picron import errors
from picron.storage import sqlitedb as db
from picron.storage.sqlite import SqliteStore
from picron.storage.sqlitedb import connect, migrate


def tables(conn):
    return {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}


def test_fresh_database_is_migrated_to_the_newest_version(tmp_path):
    conn = connect(str(tmp_path / "new.db"))
    assert conn.execute("pragma user_version").fetchone()[0] == len(db.MIGRATIONS)
    assert {"task", "task_node", "run", "tick", "counter", "stat", "audit"} <= tables(conn)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert conn.execute("pragma foreign_keys").fetchone()[0] == 1


def test_migrating_again_changes_nothing(tmp_path):
    path = str(tmp_path / "x.db")
    conn = connect(path)
    conn.execute("insert into counter (name, value) values ('kept', 3)")
    conn.close()
    conn = connect(path)
    assert migrate(conn) == len(db.MIGRATIONS)
    assert conn.execute("select value from counter").fetchone()[0] == 3


def test_a_failing_migration_leaves_no_trace(monkeypatch):
    conn = connect(":memory:")
    conn.execute("insert into counter (name, value) values ('kept', 1)")
    broken = "create table half (x); alter table counter add column extra; select nonsense();"
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert conn.execute("pragma user_version").fetchone()[0] == len(db.MIGRATIONS) - 1
    assert "half" not in tables(conn)
    assert [r[1] for r in conn.execute("pragma table_info(counter)")] == ["name", "value"]
    assert conn.execute("select value from counter").fetchone()[0] == 1


def test_a_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "future.db")
    connect(path).execute(f"pragma user_version = {len(db.MIGRATIONS) + 1}")
    with pytest.raises(errors.StorageError, match="newer than this picron"):
        connect(path)


def test_a_locked_database_is_a_clear_storage_error(tmp_path):
    path = str(tmp_path / "locked.db")
    holder = connect(path)
    holder.execute("begin exclusive")
    waiter = SqliteStore(path, busy_timeout=0.2)
    with pytest.raises(errors.StorageError, match="database busy"):
        with waiter.transaction():
            pass
    holder.execute("rollback")


@pytest.mark.parametrize("cls, code, status, exit_code", [
    (errors.PicronError, "internal", 500, 1),
    (errors.ValidationError, "invalid", 400, 2),
    (errors.NotFound, "not_found", 404, 2),
    (errors.Conflict, "conflict", 409, 2),
    (errors.AlreadyRunning, "already_running", 409, 1),
    (errors.Unauthorized, "unauthorized", 401, 1),
    (errors.Forbidden, "forbidden", 403, 1),
    (errors.PayloadTooLarge, "too_large", 413, 1),
    (errors.UnsupportedMediaType, "unsupported_media_type", 415, 1),
    (errors.StorageError, "unavailable", 503, 3),
    (errors.ConfigError, "unavailable", 503, 3),
    (errors.TaskFailed, "task_failed", 500, 1),
])
def test_error_classes_map_to_status_code_and_exit_code(cls, code, status, exit_code):
    error = cls("something is wrong", field="name") if cls is not errors.MethodNotAllowed \
        else cls("x")
    assert (error.code, error.http_status, error.exit_code) == (code, status, exit_code)
    assert error.to_json() == {"error": {"code": code, "message": "something is wrong",
                                         "field": "name"}}
    assert isinstance(error, errors.PicronError)
