"""The ``eventcounter`` module: counter → stats, with and without reset, missing counter."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from picron.errors import ValidationError
from picron.isolation import run_module
from picron.modules import TaskContext
from picron.modules.eventcounter import EventCounter


def run(path, clock, **options):
    context = TaskContext(node="node1", location=path, now=clock, timeout=30, task_name="ec")
    stored = EventCounter.validate_options({"event_counter": "logins", "stats_key": "logins_5m",
                                            **options})
    return run_module(EventCounter, EventCounter.typed_options(stored), context)


def test_without_reset_the_counter_keeps_counting(module_db, clock):
    path, store = module_db
    store.change_counter("logins", 7)
    assert run(path, clock) == ("success", "wrote logins=7 to stats key 'logins_5m'")
    store.change_counter("logins", 1)
    clock.advance(minutes=5)
    run(path, clock)
    assert store.get_stats("logins_5m") == [(clock() - timedelta(minutes=5), 7), (clock(), 8)]
    assert store.get_counter("logins") == 8


def test_with_reset_each_value_is_the_count_since_the_last_run(module_db, clock):
    path, store = module_db
    store.change_counter("logins", 7)
    assert run(path, clock, reset_event_counter=True) == \
        ("success", "wrote logins=7 to stats key 'logins_5m' and reset the counter")
    assert store.get_counter("logins") == 0
    store.change_counter("logins", 2)
    clock.advance(minutes=5)
    run(path, clock, reset_event_counter="true")
    assert [value for _, value in store.get_stats("logins_5m")] == [7, 2]
    assert store.get_counter("logins") == 0


def test_missing_counter_warns_writes_nothing_and_succeeds(module_db, clock, caplog):
    path, store = module_db
    with caplog.at_level(logging.WARNING, logger="picron.task"):
        status, message = run(path, clock, reset_event_counter=True)
    assert status == "success"
    assert message == "warning: there is no event counter named 'logins'; nothing written"
    assert "task ec: there is no event counter named 'logins'" in caplog.text
    assert store.stat_keys() == [] and store.get_counter("logins") is None


@pytest.mark.parametrize("missing", ["event_counter", "stats_key"])
def test_both_names_are_required(missing):
    options = {"event_counter": "a", "stats_key": "b"}
    del options[missing]
    with pytest.raises(ValidationError, match=f"requires option '{missing}'"):
        EventCounter.validate_options(options)


@pytest.mark.parametrize("empty", ["event_counter", "stats_key"])
def test_names_must_not_be_empty(empty):
    with pytest.raises(ValidationError, match=f"'{empty}' must not be empty"):
        EventCounter.validate_options({"event_counter": "a", "stats_key": "b", empty: " "})
