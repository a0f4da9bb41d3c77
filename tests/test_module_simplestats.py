"""The ``simplestats`` module: each switched-on option writes one correct value."""
from __future__ import annotations

from datetime import timedelta

from picron.isolation import run_module
from picron.modules import TaskContext
from picron.modules.simplestats import SimpleStats
from picron.records import TaskSpec

ALL = ("total_tasks", "active_tasks", "inactive_tasks", "failed_runs", "event_counters")


def run(path, clock, **options):
    context = TaskContext(node="node1", location=path, now=clock, timeout=30, task_name="s")
    return run_module(SimpleStats, SimpleStats.typed_options(
        SimpleStats.validate_options(options)), context)


def populate(store, clock):
    """5 tasks (3 active), 2 counters, runs of every status, some older than 24 h."""
    ids = [store.add_task(TaskSpec(name=f"t{i}", interval="@hourly", taskmodule="command",
                                   nodes=("node1",), active=i < 3), clock()).id
           for i in range(5)]
    store.change_counter("logins", 5)
    store.change_counter("errors", 0)
    history = [(-30, "failed"), (-25, "timeout"),                   # older than 24 h
               (-23, "failed"), (-5, "timeout"), (-2, "interrupted"),
               (-1, "success"), (0, "success")]
    for hours, status in history:
        at = clock() + timedelta(hours=hours)
        claim = store.claim_run(ids[0], "node1", "manual", at, pid=1, host="h", timeout=60)
        store.finish_run(claim.run_id, status, at + timedelta(seconds=1), 1.0)


def test_values_against_a_known_database(module_db, clock):
    path, store = module_db
    clock.advance(days=3)
    populate(store, clock)
    status, message = run(path, clock, **{name: True for name in ALL})
    assert status == "success"
    assert message == ("total_tasks=5, active_tasks=3, inactive_tasks=2, failed_runs=3, "
                       "event_counters=2")
    assert store.latest_stats() == {"total_tasks": 5, "active_tasks": 3, "inactive_tasks": 2,
                                    "failed_runs": 3, "event_counters": 2}
    assert store.get_stats("total_tasks") == [(clock(), 5)]


def test_only_switched_on_options_write(module_db, clock):
    path, store = module_db
    populate(store, clock)
    assert run(path, clock, active_tasks="true", failed_runs=False)[0] == "success"
    assert store.stat_keys() == ["active_tasks"]
    clock.advance(minutes=5)
    run(path, clock, active_tasks=True)
    assert [value for _, value in store.get_stats("active_tasks")] == [3, 3]


def test_nothing_switched_on_writes_nothing(module_db, clock):
    path, store = module_db
    assert run(path, clock) == ("success", "no statistic switched on; nothing written")
    assert store.stat_keys() == []


def test_an_empty_database_counts_zero(module_db, clock):
    path, store = module_db
    run(path, clock, **{name: True for name in ALL})
    assert set(store.latest_stats().values()) == {0}


def test_an_unusable_database_is_a_failure(tmp_path, clock):
    path = tmp_path / "not-a-db"
    path.write_text("hello")
    status, message = run(str(path), clock, total_tasks=True)
    assert status == "failed" and "not a picron (SQLite) database" in message
