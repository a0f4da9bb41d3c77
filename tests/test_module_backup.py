"""The ``backup`` module: a consistent online copy, named by time, rotated to ``keep``."""
from __future__ import annotations

import os
import sqlite3
from datetime import timezone

import pytest

from picron.errors import ValidationError
from picron.isolation import run_in_child, run_module
from picron.modules import TaskContext
from picron.modules.backup import Backup
from picron.records import TaskSpec
from picron.storage import open_store


@pytest.fixture
def db(tmp_path, clock):
    path = str(tmp_path / "picron.db")
    store = open_store(path, default_zone=timezone.utc)
    store.add_task(TaskSpec(name="keep me", interval="@daily", taskmodule="backup",
                            nodes=("node1",)), clock())
    yield path, store
    store.close()


def context(path, clock):
    return TaskContext(node="node1", location=path, now=clock, timeout=30, task_name="b")


def run(path, clock, **options):
    return run_module(Backup, Backup.typed_options(Backup.validate_options(options)),
                      context(path, clock))


def test_backup_is_a_consistent_copy(db, clock, tmp_path):
    path, _ = db
    directory = tmp_path / "backups" / "nested"
    status, message = run(path, clock, directory=str(directory))
    target = directory / "picron-20260101T000000Z.db"
    assert (status, message) == ("success", f"backup written to {target}")
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert copy.execute("select name from task").fetchall() == [("keep me",)]
    finally:
        copy.close()
    assert oct(os.stat(target).st_mode & 0o777) == "0o600"
    assert oct(os.stat(directory).st_mode & 0o777) == "0o700"


def test_rotation_keeps_exactly_keep_newest_and_only_touches_own_files(db, clock, tmp_path):
    path, _ = db
    directory = tmp_path / "backups"
    directory.mkdir()
    others = ["notes.txt", "picron-latest.db", "picron-20990101T000000Z.db.bak"]
    for name in others:
        (directory / name).write_text("not ours")
    for _ in range(6):
        status, message = run(path, clock, directory=str(directory), keep=3)
        assert status == "success"
        clock.advance(hours=1)
    assert "removed 1 older backups: picron-20260101T020000Z.db" in message
    assert sorted(os.listdir(directory)) == sorted(others + [
        "picron-20260101T030000Z.db", "picron-20260101T040000Z.db",
        "picron-20260101T050000Z.db"])


def test_default_keep_is_seven(db, clock, tmp_path):
    path, _ = db
    for _ in range(9):
        run(path, clock, directory=str(tmp_path / "b"))
        clock.advance(days=1)
    assert len(os.listdir(tmp_path / "b")) == 7


def test_unwritable_directory_is_a_failure(db, clock, tmp_path):
    path, _ = db
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, message = run(path, clock, directory=str(blocker / "sub"))
    assert status == "failed" and message.startswith(f"cannot create the directory {blocker}")


def test_in_memory_database_cannot_be_backed_up(clock, tmp_path):
    status, message = run(":memory:", clock, directory=str(tmp_path))
    assert (status, message) == ("failed", "an in-memory database cannot be backed up")


def test_works_in_the_runner_child_process(db, clock, tmp_path):
    path, _ = db
    options = Backup.typed_options({"directory": str(tmp_path / "c")})
    assert run_in_child(Backup, options, context(path, clock), 30)[0] == "success"
    assert os.listdir(tmp_path / "c") == ["picron-20260101T000000Z.db"]


@pytest.mark.parametrize("options, problem", [
    ({"directory": "relative/dir"}, "'directory' must be an absolute path"),
    ({"directory": "/b", "keep": 0}, "'keep' must be between 1 and 10000"),
    ({"keep": 3}, "requires option 'directory'"),
])
def test_bad_options_are_refused(options, problem):
    with pytest.raises(ValidationError, match=problem):
        Backup.validate_options(options)
