"""The ``cleanup`` module: old stats and runs go, recent ones (and running runs) stay."""
from __future__ import annotations

from datetime import timedelta

import pytest

from picron.errors import ValidationError
from picron.isolation import run_module
from picron.modules import TaskContext
from picron.modules.cleanup import Cleanup
from picron.records import TaskSpec


def run(path, clock, **options):
    context = TaskContext(node="node1", location=path, now=clock, timeout=30, task_name="c")
    return run_module(Cleanup, Cleanup.typed_options(Cleanup.validate_options(options)),
                      context)


def populate(store, clock):
    """Stats and runs 40, 20 and 1 days old, and a run that is still going (50 days)."""
    task = store.add_task(TaskSpec(name="t", interval="@hourly", taskmodule="command",
                                   nodes=("node1", "node2")), clock())
    for days in (40, 20, 1):
        at = clock() - timedelta(days=days)
        store.add_stat("load", at, days)
        claim = store.claim_run(task.id, "node1", "manual", at, pid=1, host="h", timeout=60)
        store.finish_run(claim.run_id, "success", at, 0.5)
    store.claim_run(task.id, "node2", "manual", clock() - timedelta(days=50), pid=1, host="h",
                    timeout=60)


def ages(store, clock):
    stats = [(clock() - at).days for at, _ in store.get_stats("load")]
    runs = sorted((clock() - run.start).days for run in store.list_runs())
    return stats, runs


def test_deletes_old_stats_and_runs_and_keeps_recent_ones(module_db, clock):
    path, store = module_db
    clock.advance(days=100)
    populate(store, clock)
    assert run(path, clock, stats_older_than_days=30, runs_older_than_days=10) == \
        ("success", "deleted 1 monitoring stats older than 30 days\n"
                    "deleted 2 runs older than 10 days")
    assert ages(store, clock) == ([20, 1], [1, 50])  # the running one is never deleted


def test_each_option_alone(module_db, clock):
    path, store = module_db
    clock.advance(days=100)
    populate(store, clock)
    assert run(path, clock, runs_older_than_days=30)[1] == "deleted 1 runs older than 30 days"
    assert ages(store, clock) == ([40, 20, 1], [1, 20, 50])
    assert run(path, clock, stats_older_than_days=0)[1] == \
        "deleted 3 monitoring stats older than 0 days"
    assert ages(store, clock) == ([], [1, 20, 50])


@pytest.mark.parametrize("options, problem", [
    ({}, "needs stats_older_than_days or runs_older_than_days"),
    ({"runs_older_than_days": -1}, "'runs_older_than_days' must be between 0 and 36500"),
    ({"stats_older_than_days": 10**9}, "'stats_older_than_days' must be between 0 and 36500"),
    ({"stats_older_than_days": "ten"}, "'stats_older_than_days' must be an integer"),
])
def test_bad_options_are_refused(options, problem):
    with pytest.raises(ValidationError, match=problem):
        Cleanup.validate_options(options)
