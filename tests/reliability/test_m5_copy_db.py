"""M5: ``copy-db`` of a month of history (R11's database) into PostgreSQL, then ticks go on
there exactly as they would have on SQLite."""
from __future__ import annotations

from datetime import timedelta, timezone

from tests.conftest import dump
from tests.reliability.conftest import T0, scale
from tests.reliability.test_r11_soak import INTERVALS
from picron.modules import Registry
from picron.records import TaskSpec
from picron.runner import Runner
from picron.storage import open_store
from picron.storage.copy import TABLES

import picron_testmods

DAYS = scale(1, 30)
KEYS = {"task": "id", "task_option": "task_id, key", "task_node": "task_id, node",
        "run": "id", "tick": "node", "counter": "name", "stat": "id", "audit": "id",
        "setting": "key", "event": "id"}


def _history(location: str, clock) -> None:
    """R11's month: 10 tasks ticking every 5 minutes, 1 % failures, and a bit of
    everything else a database holds (counters, stats, settings, audit, events)."""
    store = open_store(location, default_zone=timezone.utc)
    clock.set(T0)
    for i, interval in enumerate(INTERVALS):
        store.add_task(TaskSpec(name=f"soak{i}", interval=interval, taskmodule="flaky",
                                nodes=("node1", "node2") if i % 3 == 0 else ("node1",),
                                timezone="UTC", options={"seed": "11"}), clock())
    picron_testmods.Flaky.random = None
    runners = [Runner(store, Registry(modules=picron_testmods.MODULES), node=node,
                      clock=clock, isolate=False, history_days=7) for node in ("node1", "node2")]
    for step in range(DAYS * 288):
        clock.advance(minutes=5)
        for runner in runners:
            runner.run_scheduled()
        if step % 12 == 0:
            store.change_counter("hourly", 1)
            store.add_stat("load", clock(), step)
    store.set_setting("note", "moved")
    store.set_active(store.find_task("soak9").id, False, clock(), actor="admin")
    store.add_event(clock(), "down", 1, "soak0", "node1", None, 2)
    store.close()


def _rows(location: str) -> dict[str, list[tuple]]:
    store = open_store(location, default_zone=timezone.utc)
    try:
        return {table: [tuple(r) for r in store._all(
            f"select * from {table} order by {KEYS[table]}")] for table in TABLES}
    finally:
        store.close()


def test_m5_a_month_copied_into_postgres_ticks_on_the_same(lab, clock, pg_location, figure):
    _history(lab.db, clock)
    before = dump(lab.db)
    copied = lab.run("copy-db", pg_location)
    assert copied.returncode == 0, copied.stderr
    assert dump(lab.db) == before                                   # the source only read
    sqlite_rows, postgres_rows = _rows(lab.db), _rows(pg_location)
    assert sqlite_rows == postgres_rows                              # every row equal
    assert lab.run("copy-db", pg_location).returncode == 2           # not over a full one

    # The next ticks, on both (a copy of the SQLite database, so both start equal).
    twin = str(lab.tmp / "twin.db")
    assert lab.run("backup", twin).returncode == 0
    started = {}
    for name, location in (("sqlite", twin), ("postgres", pg_location)):
        for node in ("node1", "node2"):
            lab.db = location
            done = lab.run("run_scheduled", "-c", node=node,
                           at=clock() + timedelta(minutes=5, seconds=7))
            assert done.returncode in (0, 1), done.stderr
        rows = _rows(location)["run"]
        started[name] = sorted((r[2], r[3], r[4], r[6]) for r in rows[len(sqlite_rows["run"]):])
    assert started["sqlite"] == started["postgres"] != []
    figure(f"{DAYS} days copied: {sum(map(len, sqlite_rows.values()))} rows "
           f"({len(sqlite_rows['run'])} runs) equal; next ticks started the same "
           f"{len(started['postgres'])} runs")
