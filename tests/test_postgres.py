"""What only the PostgreSQL backend has: its SQL translation, its write lock, its session
settings, refusing foreign databases, errors when the server is away, snapshots.

The storage contract itself runs on both backends through the parametrised ``store``
fixture; everything here needs ``$PICRON_TEST_PG`` except the translation.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from picron.errors import StorageError
from picron.records import TaskSpec
from picron.storage import open_store, tick_is_idle
from tests.pgserver import admin, fresh_postgres

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def picron(location: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PICRON_NODE": "node1", **(env or {})}
    environment.pop("PICRON_CONFIG", None)
    environment.pop("PICRON_DB", None)
    return subprocess.run([sys.executable, "-m", "picron", "--db", location, *args],
                          env=environment, capture_output=True, text=True, timeout=60)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def spec(name: str = "t", **changes) -> TaskSpec:
    return replace(TaskSpec(name, "*/5 * * * *", "succeed", ("node1",)), **changes)


def test_sqlite_placeholders_become_psycopg_ones():
    pytest.importorskip("psycopg")
    from picron.storage.pgdb import translate

    assert translate("select * from t where a = ? and b = :name") == \
        "select * from t where a = %s and b = %(name)s"
    assert translate("select '100%', 'a?b', ':x', \"we?ird\", 1::int, a % 2 from t") == \
        "select '100%', 'a?b', ':x', \"we?ird\", 1::int, a %% 2 from t"
    assert translate("select 'it''s ?' , ?") == "select 'it''s ?' , %s"


# -- refusing what is not ours ---------------------------------------------------------


def test_a_database_with_other_tables_is_refused_and_left_untouched(pg_location):
    url, schema = pg_location.split("?")[0], pg_location.rsplit("%3D", 1)[1]
    with admin(url) as conn:
        conn.execute(f"create table {schema}.customers (id int)")
    done = picron(pg_location, "list")
    assert done.returncode == 3 and one_line(done.stderr)
    assert "other tables (customers)" in done.stderr
    with admin(url) as conn:
        tables = conn.execute("select table_name from information_schema.tables"
                              " where table_schema = %s", (schema,)).fetchall()
    assert tables == [("customers",)]


def test_a_newer_schema_is_refused(pg_location):
    open_store(pg_location).close()
    with admin(pg_location) as conn:
        conn.execute("update picron_schema set version = 99")
    done = picron(pg_location, "list")
    assert done.returncode == 3 and one_line(done.stderr)
    assert "version 99 is newer" in done.stderr


def test_without_psycopg_a_postgres_location_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from picron.cli import main\n"
            "sys.exit(main(['--db', 'postgresql://u@127.0.0.1/x', 'list']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PICRON_NODE": "node1"}, timeout=60)
    assert done.returncode == 3 and one_line(done.stderr)
    assert "pip install 'picron[postgres]'" in done.stderr


@pytest.mark.parametrize("command", [["list"], ["run_scheduled", "-c"]])
def test_a_server_that_is_down_is_one_line_naming_the_host(command):
    pytest.importorskip("psycopg")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = picron(f"postgresql://picron:secret@127.0.0.1:{port}/picron", *command)
    assert done.returncode == 3 and one_line(done.stderr)
    assert f"127.0.0.1:{port}" in done.stderr and "secret" not in done.stderr


def test_a_refused_login_is_one_line_naming_the_host(pg_location):
    url = pg_location.replace("postgres@", "nosuchrole@", 1)
    done = picron(url, "list")
    assert done.returncode == 3 and one_line(done.stderr)
    assert "127.0.0.1" in done.stderr and "nosuchrole" in done.stderr


# -- the write lock --------------------------------------------------------------------


def test_writers_take_turns_so_read_then_write_loses_nothing(pg_location):
    """Two concurrent read-modify-write edits of different fields: both survive."""
    first, second = open_store(pg_location), open_store(pg_location)
    task = first.add_task(spec(), NOW)
    inside = threading.Event()

    def slow_rename(stored: TaskSpec) -> TaskSpec:
        inside.set()
        time.sleep(0.5)  # the other writer tries meanwhile
        return replace(stored, name="renamed")

    thread = threading.Thread(target=first.edit_task, args=(task.id, slow_rename, NOW))
    thread.start()
    inside.wait(10)
    second.edit_task(task.id, lambda stored: replace(stored, ordering=7), NOW)
    thread.join()
    edited = second.get_task(task.id)
    assert (edited.name, edited.ordering) == ("renamed", 7)
    first.close()
    second.close()


def test_a_run_finishing_while_its_task_is_edited_keeps_both(pg_location):
    first, second = open_store(pg_location), open_store(pg_location)
    task = first.add_task(spec(), NOW)
    claim = first.claim_run(task.id, "node1", "scheduled", NOW + timedelta(minutes=5),
                            pid=1, host="h", timeout=60)
    inside = threading.Event()

    def slow_edit(stored: TaskSpec) -> TaskSpec:
        inside.set()
        time.sleep(0.5)
        return replace(stored, options={"note": "edited"})

    thread = threading.Thread(target=first.edit_task, args=(task.id, slow_edit, NOW))
    thread.start()
    inside.wait(10)
    assert second.finish_run(claim.run_id, "success", NOW + timedelta(minutes=5, seconds=2), 2)
    thread.join()
    edited = second.get_task(task.id)
    assert edited.options == {"note": "edited"}
    assert edited.last_runs == {"node1": NOW + timedelta(minutes=5)}
    first.close()
    second.close()


def test_counters_from_many_threads_lose_no_increment(pg_location):
    stores = [open_store(pg_location) for _ in range(4)]

    def bump(store):
        for _ in range(25):
            store.change_counter("hits", 1)

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].get_counter("hits") == 100
    for store in stores:
        store.close()


def test_a_writer_waits_at_most_lock_timeout_then_says_busy(pg_location, monkeypatch):
    from picron.storage import pgdb

    monkeypatch.setattr(pgdb, "LOCK_TIMEOUT_MS", 300)
    holder, waiter = open_store(pg_location), open_store(pg_location)
    with holder.transaction():
        holder.set_counter("held", 1)
        started = time.monotonic()
        with pytest.raises(StorageError, match="busy"):
            waiter.set_counter("other", 1)
        assert time.monotonic() - started < 5
    waiter.set_counter("other", 2)  # the same store works again afterwards
    assert waiter.get_counter("other") == 2 and waiter.get_counter("held") == 1
    holder.close()
    waiter.close()


def test_a_peer_stuck_inside_a_transaction_is_cut_off_and_the_waiter_goes_on(
        pg_location, monkeypatch):
    from picron.storage import pgdb

    assert pgdb.IDLE_IN_TRANSACTION_MS < pgdb.LOCK_TIMEOUT_MS  # cut off before a waiter
    assert pgdb.STATEMENT_TIMEOUT_MS < pgdb.LOCK_TIMEOUT_MS    # would give up
    monkeypatch.setattr(pgdb, "IDLE_IN_TRANSACTION_MS", 300)
    stuck, other = open_store(pg_location), open_store(pg_location)
    finished = []
    waiter = threading.Thread(target=lambda: finished.append(
        (other.change_counter("other", 1), time.monotonic())))
    with pytest.raises(StorageError):
        with stuck.transaction():
            stuck.set_counter("lost", 1)
            waiter.start()  # queues for the write lock behind the stuck transaction
            time.sleep(2)   # "hangs" inside it: the server ends the session after 0.3 s
            woke = time.monotonic()
            stuck.set_counter("lost", 2)
    waiter.join(30)
    assert finished and finished[0][0] == 1 and finished[0][1] < woke  # went on meanwhile
    assert other.get_counter("lost") is None                       # the stuck one: undone
    assert stuck.get_counter("other") == 1  # the stuck store reconnected by itself
    stuck.close()
    other.close()


def test_a_store_reconnects_after_the_server_dropped_its_session(pg_location):
    store = open_store(pg_location)
    store.set_counter("c", 1)
    pid = store._conn.info.backend_pid
    with admin(pg_location) as conn:
        conn.execute("select pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StorageError, match="connection"):
        store.get_counter("c")
    assert store.get_counter("c") == 1
    store.close()


def test_a_kept_session_is_checked_before_it_is_reused(pg_location):
    """Closed stores keep their sessions for the next store; one whose tables vanished
    meanwhile (or whose server restarted) is not handed out."""
    open_store(pg_location).close()
    schema = pg_location.rsplit("%3D", 1)[1]
    with admin(pg_location) as conn:
        conn.execute(f"drop schema {schema} cascade")
        conn.execute(f"create schema {schema}")
    store = open_store(pg_location)
    assert store.list_tasks() == []  # migrated again, on a new session
    store.close()


def test_now_is_the_server_clock(pg_location):
    store = open_store(pg_location)
    with admin(pg_location) as conn:
        server = conn.execute("select statement_timestamp()").fetchone()[0]
    assert abs(store.now() - server) < timedelta(seconds=5)
    assert store.now().utcoffset() == timedelta(0)
    store.close()


# -- the idle look ---------------------------------------------------------------------


def test_the_idle_look_records_the_tick_only_when_nothing_is_to_do(pg_location):
    assert tick_is_idle(pg_location, "node1") is False  # no schema yet: the full tick
    store = open_store(pg_location)
    assert tick_is_idle(pg_location, "node1") is True
    assert set(store.last_ticks()) == {"node1"}
    store.add_task(spec(), datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert tick_is_idle(pg_location, "node1") is False  # due
    assert tick_is_idle(pg_location, "elsewhere") is True
    store.close()


def test_an_idle_sqlite_tick_imports_nothing_of_the_postgres_backend(tmp_path):
    db = str(tmp_path / "p.db")
    code = ("import sys\nfrom picron.cli import main\n"
            f"assert main(['--db', {db!r}, 'run_scheduled', '-c']) == 0\n"
            "print(' '.join(sorted(sys.modules)))")
    env = {**os.environ, "PICRON_NODE": "node1"}
    env.pop("PICRON_CONFIG", None)
    for _ in range(2):  # the first creates the database, the second is idle
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
    loaded = set(done.stdout.split())
    assert not {m for m in loaded if m.startswith("psycopg")
                or m in ("picron.storage.postgres", "picron.storage.pgdb")}


# -- backups ---------------------------------------------------------------------------


def test_backup_is_one_consistent_snapshot_while_others_write(pg_location, tmp_path):
    store, writer = open_store(pg_location), open_store(pg_location)
    task = store.add_task(spec(), NOW)
    reads = []
    original = store._all

    def all_then_write(sql, params=()):
        rows = original(sql, params)
        reads.append(sql)
        if len(reads) == 1:  # after the first table was read, another process writes
            late = writer.add_task(spec("late"), NOW)
            writer.claim_run(late.id, "node1", "manual", NOW, pid=1, host="h", timeout=5)
            writer.set_counter("late", 1)
        return rows

    store._all = all_then_write
    path = str(tmp_path / "backup.db")
    store.backup(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    copy = sqlite3.connect(path)
    assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert copy.execute("select id, name from task").fetchall() == [(task.id, "t")]
    assert copy.execute("select count(*) from run").fetchone()[0] == 0
    assert copy.execute("select count(*) from counter").fetchone()[0] == 0
    copy.close()
    assert writer.get_counter("late") == 1  # the writer was not held off
    store.close()
    writer.close()


def test_a_postgres_backup_restores_as_a_working_sqlite_database(pg_location, tmp_path):
    store = open_store(pg_location)
    task = store.add_task(spec(options={"note": "100% ?"}), NOW)
    store.change_counter("c", 3)
    path = str(tmp_path / "backup.db")
    done = picron(pg_location, "backup", path)
    assert done.returncode == 0, done.stderr
    restored = open_store(path)
    assert restored.get_task(task.id) == store.get_task(task.id)
    assert restored.add_task(spec("next"), NOW).id == task.id + 1
    restored.close()
    store.close()


def test_fresh_postgres_schemas_are_independent():
    with fresh_postgres() as one, fresh_postgres() as two:
        first, second = open_store(one), open_store(two)
        first.add_task(spec(), NOW)
        assert second.list_tasks() == []
        first.close()
        second.close()
