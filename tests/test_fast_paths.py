"""The cheap paths of a cron tick behave exactly like the general ones (see docs/performance.md).

``_parse_tick`` must read a plain cron line as argparse does (or decline it); an idle tick
must not import what only running a task needs; a child's result must survive any text.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from picron.cli import _parse_tick, build_parser
from picron.isolation import run_in_child
from picron.modules import TaskContext, TaskModule

PLAIN = [
    ["run_scheduled"], ["run-scheduled", "-c"], ["run_scheduled", "--cron"],
    ["--db", "x.db", "run_scheduled", "-c"], ["run_scheduled", "-c", "--db", "x.db"],
    ["--db", "a.db", "run_scheduled", "--db", "b.db"], ["--config", "c.toml", "run_scheduled"],
    ["run_scheduled", "-n", "node2", "-c"], ["run_scheduled", "--node", "n.1", "--debug"],
    ["--debug", "run_scheduled", "-c", "-c"], ["--db", "", "run_scheduled"],
    ["--db", "run_scheduled", "run_scheduled"],
]
DECLINED = [
    [], ["list"], ["run_scheduled", "-h"], ["run_scheduled", "--help"], ["run_scheduled", "-d"],
    ["run_scheduled", "--cr"], ["run_scheduled", "-cn", "x"], ["-c", "run_scheduled"],
    ["-n", "x", "run_scheduled"], ["--node", "x", "run_scheduled"], ["run_scheduled", "--db"],
    ["run_scheduled", "--db", "-c"], ["run_scheduled", "-n", ""], ["run_scheduled", "-n", "a/b"],
    ["run_scheduled", "--db=x.db"], ["run_scheduled", "--"], ["run_scheduled", "extra"],
    ["run_scheduled", "run_scheduled"], ["--db", "x"],
]


@pytest.mark.parametrize("argv", PLAIN)
def test_a_plain_cron_line_is_read_as_argparse_reads_it(argv):
    assert vars(_parse_tick(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", DECLINED)
def test_anything_else_is_left_to_argparse(argv):
    assert _parse_tick(argv) is None


def test_an_idle_tick_imports_nothing_that_only_running_a_task_needs(tmp_path):
    code = ("import sys\nfrom picron.cli import main\n"
            f"assert main(['--db', {str(tmp_path / 'p.db')!r}, 'run_scheduled', '-c']) == 0\n"
            "print(' '.join(sorted(sys.modules)))")
    env = {**os.environ, "PICRON_NODE": "node1"}
    env.pop("PICRON_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    loaded = set(done.stdout.split())
    assert "picron.runner" in loaded  # a new database: the full tick created it
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    baseline = subprocess.run([sys.executable, "-c", "import sys, sqlite3; print(*sys.modules)"],
                              env=env, capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split()) - set(baseline.stdout.split())  # what picron added
    assert "picron.storage.sqlitedb" in loaded  # the second tick found nothing to do at once
    heavy = {"croniter", "logging", "json", "socket", "http", "email", "subprocess", "re",
             "argparse", "dataclasses", "typing", "picron.storage.sql", "picron.runner",
             "picron.modules", "picron.output", "picron.isolation", "picron.records",
             "picron.storage.postgres", "psycopg"}
    assert loaded & heavy == set()


class Says(TaskModule):
    identifier = "says"
    description = "test"
    options = {}

    def do(self, options):
        self.say("NUL \x00 in the middle, a lone surrogate \ud800, and ünïcode")
        return options.get("ok", True)


class Dies(TaskModule):
    identifier = "dies"
    description = "test"
    options = {}

    def do(self, options):
        os.kill(os.getpid(), signal.SIGKILL)


def context():
    return TaskContext(node="node1", location="unused.db", now=lambda: None, timeout=10,
                       task_name="t")


@pytest.mark.parametrize("ok, status", [(True, "success"), (False, "failed")])
def test_any_text_comes_back_from_the_child_unchanged(ok, status):
    assert run_in_child(Says, {"ok": ok}, context(), 10) == (
        status, "NUL \x00 in the middle, a lone surrogate \ud800, and ünïcode")


def test_a_child_that_dies_without_a_result_is_a_failure():
    assert run_in_child(Dies, {}, context(), 10) == (
        "failed", "the task process died (killed by signal 9)")



# -- tick_is_idle: the first look of a quiet tick ---------------------------------------------

def _database(tmp_path, **task):
    from picron.records import TaskSpec
    from picron.storage import open_store
    from tests.conftest import FakeClock

    path = str(tmp_path / "idle.db")
    store = open_store(path)
    clock = FakeClock()
    store.add_task(TaskSpec(**{"name": "t", "interval": "@hourly", "taskmodule": "command",
                               "nodes": ("node1",), **task}), clock())
    return path, store


def test_idle_records_the_tick_when_nothing_is_to_do(tmp_path):
    from picron.storage import tick_is_idle

    path, store = _database(tmp_path, active=False)  # inactive: never due
    assert tick_is_idle(path, "node1")
    assert store.last_tick("node1") is not None


@pytest.mark.parametrize("state", ["due", "running", "future"])
def test_idle_leaves_every_unusual_state_to_the_full_tick(tmp_path, state):
    from datetime import datetime, timedelta, timezone

    from picron.storage import tick_is_idle

    path, store = _database(tmp_path)  # created 2026-01-01: due long ago
    task = store.list_tasks()[0]
    now = datetime.now(timezone.utc)
    if state != "due":
        store.set_last_run(task.id, "node1", now + timedelta(days=3650))  # not due
    if state == "running":
        store.set_last_run(task.id, "node1", now)
        store.claim_run(task.id, "node1", "manual", now, pid=1, host="h", timeout=60)
    assert not tick_is_idle(path, "node1")
    assert store.last_tick("node1") is None  # nothing recorded: the full tick will


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "directory", "old schema"])
def test_idle_never_creates_or_touches_a_doubtful_database(tmp_path, kind):
    from picron.storage import tick_is_idle

    path = tmp_path / "x.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "directory":
        path.mkdir()
    elif kind == "old schema":
        import sqlite3

        sqlite3.connect(path).execute("create table t (x)")
    before = path.read_bytes() if path.is_file() else None
    assert not tick_is_idle(str(path), "node1")
    assert (path.read_bytes() if path.is_file() else None) == before


def test_idle_reports_a_busy_database_at_once(tmp_path):
    import sqlite3

    from picron.errors import StorageError
    from picron.storage import sqlitedb as idle

    path, store = _database(tmp_path, active=False)
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin exclusive")  # WAL: readers pass, the tick's write waits
    original = idle.BUSY_TIMEOUT_SECONDS
    idle.BUSY_TIMEOUT_SECONDS = 0.1
    try:
        with pytest.raises(StorageError, match="database busy"):
            idle.tick_is_idle(path, "node1")
    finally:
        idle.BUSY_TIMEOUT_SECONDS = original
        holder.close()
