"""The storage contract (``picron.storage.Store``), run on every backend through the
``store`` fixture, and the seam itself: nothing above storage touches a driver."""
from __future__ import annotations

import ast
import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from picron.errors import AlreadyRunning, Conflict, NotFound, StorageError
from picron.records import TaskSpec
from picron.storage import Store, is_postgres, open_store
from picron.storage.sqlite import SqliteStore
from picron.storage.sqlitedb import SCHEMA_VERSION
from tests.conftest import START

PACKAGE = Path(__file__).resolve().parent.parent / "picron"
DRIVERS = ("sqlite3", "psycopg", "picron.storage.sqlite", "picron.storage.sqlitedb",
           "picron.storage.postgres", "picron.db", "picron.store")


def spec(name="t", **changes) -> TaskSpec:
    return TaskSpec(**{"name": name, "interval": "@hourly", "taskmodule": "succeed",
                       "nodes": ("node1",), **changes})


def claim(store, task_id, node="node1", trigger="manual", now=START, **owner):
    return store.claim_run(task_id, node, trigger, now, pid=os.getpid(), host="h",
                           timeout=60, **owner)


# -- the seam ------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_above_storage_imports_a_driver_or_a_backend():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if PACKAGE / "storage" in path.parents:
            continue
        bad = {name for name in _imports(path)
               if any(name == d or name.startswith(d + ".") for d in DRIVERS)}
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}


def test_nothing_above_storage_reaches_for_a_connection():
    uses = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
            if PACKAGE / "storage" not in path.parents
            and any(word in path.read_text() for word in ("store.conn", "._conn"))]
    assert uses == []


def test_open_store_chooses_the_backend_by_location(tmp_path):
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://h/db")
    assert not is_postgres(str(tmp_path / "postgresql.db"))
    with open_store(tmp_path / "x.db") as store:
        assert isinstance(store, SqliteStore) and isinstance(store, Store)
        assert store.location == str(tmp_path / "x.db") and store.can_share_with_child()
    with open_store(":memory:") as store:
        assert not store.can_share_with_child()


def test_a_read_only_store_reads_and_never_writes(tmp_path):
    path = str(tmp_path / "p.db")
    with open_store(path) as store:
        store.add_task(spec(), START)
    before = (open(path, "rb").read(), os.stat(path).st_mtime_ns)
    with open_store(path, read_only=True) as store:
        assert [task.name for task in store.list_tasks()] == ["t"]
        for write in (lambda: store.change_counter("c", 1), lambda: store.add_task(spec("u"), START),
                      lambda: store.record_tick("node1", START)):
            with pytest.raises(StorageError, match=f"^database {path}: is read-only$"):
                write()
    assert (open(path, "rb").read(), os.stat(path).st_mtime_ns) == before
    with pytest.raises(StorageError, match="does not exist"):
        open_store(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_read_only_open_neither_migrates_nor_switches_to_wal(tmp_path):
    from picron.storage import SchemaBehind
    from picron.storage.sqlitedb import MIGRATIONS

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "; pragma user_version = 1;")
    conn.close()
    before = open(path, "rb").read()
    with pytest.raises(SchemaBehind, match="has schema version 1 of"):
        open_store(path, read_only=True)
    assert open(path, "rb").read() == before  # still version 1, still a rollback journal
    with open_store(path) as store:  # a writable open migrates it
        assert store.list_tasks() == []
    assert sqlite3.connect(path).execute("pragma journal_mode").fetchone()[0] == "wal"


# -- the contract, on every backend ----------------------------------------------------------

def test_transaction_rolls_back_on_error_and_nests(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.change_counter("a", 1)
            with store.transaction():  # joins the outer transaction
                store.change_counter("b", 1)
            raise RuntimeError
    assert store.list_counters() == {}
    with store.transaction():
        store.change_counter("a", 1)
        store.set_setting("k", "v")
    assert (store.list_counters(), store.get_setting("k")) == ({"a": 1}, "v")


def test_the_database_clock_is_aware_utc(store):
    now = store.now()
    assert now.utcoffset() == timedelta(0)


def test_tasks_round_trip_with_the_new_fields(store, clock):
    task = store.add_task(spec(notify_url="https://example.org/hook", notify_email=""),
                          clock())
    assert (task.notify_url, task.notify_email, task.last_attempts) == \
        ("https://example.org/hook", "", {})
    assert store.get_task(task.id).spec == task.spec
    with pytest.raises(Conflict):
        store.add_task(spec(), clock())
    with pytest.raises(NotFound):
        store.get_task(task.id + 1)


def test_list_pages_and_counts(store, clock):
    for number in range(5):
        store.add_task(spec(f"t{number}", ordering=4 - number, active=number != 0), clock())
    names = [task.name for task in store.list_tasks()]
    assert names == ["t4", "t3", "t2", "t1", "t0"]
    assert [t.name for t in store.list_tasks(limit=2, offset=1)] == ["t3", "t2"]
    assert [t.name for t in store.list_tasks(offset=3)] == ["t1", "t0"]
    assert (store.count_tasks(), store.count_tasks(active=True),
            store.count_tasks(active=False)) == (5, 4, 1)


def test_a_finished_run_records_its_attempt(store, clock):
    task = store.add_task(spec(taskmodule="fail"), clock())
    started = clock.advance(hours=1)
    run = claim(store, task.id, trigger="scheduled", now=started)
    assert run is not None and run.timeout == 60
    assert store.finish_run(run.run_id, "failed", started + timedelta(seconds=2), 2.0, "no")
    assert not store.finish_run(run.run_id, "success", started, 1.0)  # compare-and-set
    task = store.get_task(task.id)
    assert task.last_attempts == {"node1": started}
    assert task.last_runs == {} and task.failure_streak == {"node1": 1}
    assert task.to_json()["last_attempts"] == {"node1": started.isoformat()}


def test_an_edit_returns_the_task_as_stored(store, clock):
    """edit_task builds its answer from what it wrote, without reading it back: it must
    equal a fresh read (options by key, kept run state, an unassigned node's row gone)."""
    task = store.add_task(spec(taskmodule="fail", nodes=("node1", "node2"),
                               options={"b": "2", "a": "1"}), clock())
    run = claim(store, task.id, node="node3")  # a manual run where it is not assigned
    store.finish_run(run.run_id, "failed", START + timedelta(seconds=1), 1.0, "no")
    run = claim(store, task.id, now=clock.advance(hours=1))
    store.finish_run(run.run_id, "failed", clock() + timedelta(seconds=1), 1.0, "no")
    assert "node3" in store.get_task(task.id).last_status
    for change in ({"active": False}, {"options": {"z": "9", "c": "3"}},
                   {"nodes": ("node2", "node1"), "timezone": "Europe/Paris"}):
        edited = store.edit_task(task.id, lambda s, c=change: TaskSpec(**{
            **{f: getattr(s, f) for f in TaskSpec.__dataclass_fields__}, **c}),
            clock.advance(minutes=1))
        fresh = store.get_task(task.id)
        assert edited == fresh
        assert edited.to_json() == fresh.to_json()
        assert list(edited.options) == list(fresh.options)
    assert fresh.failure_streak == {"node1": 1, "node2": 0} and not fresh.active


def test_claims_carry_the_owner_and_the_effective_timeout(store, clock):
    own = store.add_task(spec("own", timeout=5), clock())
    default = store.add_task(spec("default"), clock())
    lease = START + timedelta(seconds=30)
    first = claim(store, own.id, boot_id="b", pidns="pid:[1]", proc_start="42", pgid=7,
                  lease_until=lease)
    assert first.timeout == 5 and claim(store, default.id).timeout == 60
    with pytest.raises(AlreadyRunning):
        claim(store, own.id)
    assert claim(store, own.id, trigger="scheduled", now=START + timedelta(hours=2)) is None
    running = {run.id: run for run in store.running_runs()}[first.run_id]
    assert (running.boot_id, running.pidns, running.proc_start, running.pgid,
            running.lease_until, running.deadline) == \
        ("b", "pid:[1]", "42", 7, lease, START + timedelta(seconds=5))
    with pytest.raises(NotFound):
        claim(store, default.id + 100)


def test_events(store):
    first = store.add_event(START, "down", 3, "t", "node1", 9, 1)
    second = store.add_event(START + timedelta(minutes=5), "up", None, "gone", "node2", None, 0)
    store.mark_event_delivered(first, True, "HTTP 204")
    events = store.list_events()
    assert [e.id for e in events] == [second, first]
    assert (events[1].event, events[1].task_id, events[1].run_id, events[1].failure_streak,
            events[1].delivered, events[1].detail) == ("down", 3, 9, 1, True, "HTTP 204")
    assert (events[0].delivered, events[0].detail) == (False, "")
    assert store.list_events(limit=1) == events[:1]
    with pytest.raises(NotFound):
        store.mark_event_delivered(second + 1, True)
    with pytest.raises(StorageError):
        store.add_event(START, "sideways", None, "t", "n", None, 0)


def test_stats_counters_settings_and_audit(store, clock):
    store.add_stat("k", START, 1)
    store.add_stat("k", START + timedelta(minutes=1), 2)
    store.add_stat("j", START, 5)
    assert store.latest_stats() == {"k": 2, "j": 5}
    assert store.delete_stats("k", before=START + timedelta(seconds=30)) == 1
    assert store.delete_stats() == 2
    assert store.change_counter("c", 2**53 - 1) == 2**53 - 1
    assert store.change_counter("c", -(2**53 - 1)) == 0
    task = store.add_task(spec(), clock())
    store.delete_task(task.id, clock(), actor="me")
    assert [(a.action, a.actor) for a in store.list_audit()] == [("delete", "me"),
                                                                 ("create", "system")]


# -- SQLite specifics --------------------------------------------------------------------------

def test_schema_v2_adds_exactly_the_agreed_names(tmp_path):
    path = str(tmp_path / "p.db")
    open_store(path).close()
    conn = sqlite3.connect(path)

    def columns(table):
        return [row[1] for row in conn.execute(f"pragma table_info({table})")]

    assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert columns("task")[-2:] == ["notify_url", "notify_email"]
    assert columns("task_node")[-1] == "last_attempt_at"
    assert columns("run")[-5:] == ["boot_id", "pidns", "proc_start", "pgid", "lease_until"]
    assert columns("event") == ["id", "at", "event", "task_id", "task_name", "node", "run_id",
                                "failure_streak", "delivered", "detail"]


def test_migrating_v1_keeps_the_data_and_fills_last_attempts(tmp_path):
    from picron.storage import sqlitedb

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(sqlitedb.MIGRATIONS[0] + "pragma user_version = 1;")
    conn.executescript(
        "insert into task (id, name, interval, taskmodule, last_update) values"
        " (1, 't', '@hourly', 'succeed', '2026-01-01T00:00:00+00:00');"
        "insert into task_node (task_id, node, position, next_run_at, due_at) values"
        " (1, 'node1', 0, '2026-01-01T01:00:00+00:00', '2026-01-01T01:00:00+00:00');"
        "insert into run (task_id, task_name, node, trigger, status, start_at) values"
        " (1, 't', 'node1', 'scheduled', 'failed', '2026-01-01T01:00:00+00:00'),"
        " (1, 't', 'node1', 'scheduled', 'running', '2026-01-01T02:00:00+00:00');")
    conn.close()
    with open_store(path) as store:
        task = store.get_task(1)
        assert task.last_attempts == {"node1": START + timedelta(hours=1)}
        assert task.notify_url is None


def test_backup_is_a_consistent_private_snapshot(tmp_path, clock):
    with open_store(tmp_path / "p.db") as store:
        store.add_task(spec(), clock())
        target = str(tmp_path / "copy.db")
        store.backup(target)
    assert os.stat(target).st_mode & 0o777 == 0o600
    with open_store(target) as copy:
        assert [t.name for t in copy.list_tasks()] == ["t"]
    with pytest.raises(StorageError, match="is a directory"):
        open_store(":memory:").backup(str(tmp_path))


def test_driver_errors_become_storage_errors(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"x" * 4096)
    with pytest.raises(StorageError, match="not a picron"):
        open_store(garbage)
    with open_store(tmp_path / "p.db") as store:
        sqlite3.connect(tmp_path / "p.db").execute("drop table counter")
        with pytest.raises(StorageError, match="no such table"):
            store.list_counters()
