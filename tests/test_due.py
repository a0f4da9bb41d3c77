"""One definition of "due" (issue 10): the dry run, the tick and the idle look agree in every
task state, to the microsecond; an overlapping tick still never retries a failure at once."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from picron.modules import Registry, TaskModule
from picron.records import TaskSpec
from picron.runner import STALE_GRACE, Runner
from picron.storage import open_store, tick_is_idle
from tests.conftest import FAKE_MODULES, START, FakeClock

SLOT = START + timedelta(hours=1)  # the first slot of an @hourly task created at START


class Trigger(TaskModule):
    """Runs ``Trigger.action`` (set by a test) in the middle of a tick."""

    identifier = "trigger"
    description = "test"
    options = {}
    action = staticmethod(lambda: None)

    def do(self, options):
        Trigger.action()
        return True


REGISTRY = Registry(modules={**FAKE_MODULES, "trigger": Trigger})


def spec(name="t", module="succeed", **changes) -> TaskSpec:
    return TaskSpec(**{"name": name, "interval": "@hourly", "taskmodule": module,
                       "nodes": ("node1",), **changes})


def runner(store, clock) -> Runner:
    return Runner(store, REGISTRY, node="node1", clock=clock, isolate=False)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _due(store, clock, at):
    clock.set(at)
    return [task.name for task in runner(store, clock).due_tasks(at)]


def _tick(store, clock, at):
    clock.set(at)
    return [result.task for result in runner(store, clock).run_scheduled().results]


def _state(store, clock, state):
    """Bring task "t" into ``state``; returns the moment to compare the dry run and the tick."""
    here = os.uname().nodename
    failing = state in ("retrying", "retrying, same second", "max retries reached")
    task = store.add_task(spec(module="fail" if failing else "succeed",
                               active=state != "inactive",
                               max_retries=0 if state == "max retries reached" else None),
                          START)
    if failing:
        at = SLOT + timedelta(microseconds=200_000)
        assert _tick(store, clock, at) == ["t"]  # the failure, at .2 s
        return at + (timedelta(microseconds=500_000) if state == "retrying, same second"
                     else timedelta(minutes=5))
    if state == "running":
        store.claim_run(task.id, "node1", "manual", SLOT, pid=os.getpid(), host=here,
                        timeout=3600)
    elif state == "interrupted":
        store.claim_run(task.id, "node1", "manual", SLOT, pid=dead_pid(), host=here,
                        timeout=3600)
    elif state == "overdue elsewhere":
        store.claim_run(task.id, "node1", "manual", SLOT, pid=1, host="elsewhere", timeout=60)
        return SLOT + timedelta(seconds=61) + STALE_GRACE
    elif state == "clock gone back":
        store.set_last_run(task.id, "node1", SLOT + timedelta(days=1))
    elif state == "not yet due":
        return SLOT - timedelta(microseconds=1)
    return SLOT + timedelta(minutes=1, microseconds=300)


EXPECTED = {"due": ["t"], "not yet due": [], "retrying": ["t"], "retrying, same second": ["t"],
            "max retries reached": [], "running": [], "interrupted": ["t"],
            "overdue elsewhere": ["t"], "inactive": [], "clock gone back": []}


@pytest.mark.parametrize("state", list(EXPECTED))
def test_the_dry_run_answers_what_the_tick_at_the_same_moment_does(state):
    clock = FakeClock()
    with open_store(":memory:") as store:
        at = _state(store, clock, state)
        predicted = _due(store, clock, at)
        assert predicted == _tick(store, clock, at) == EXPECTED[state]


@pytest.mark.parametrize("state", list(EXPECTED))
def test_the_idle_look_agrees_with_the_tick(tmp_path, monkeypatch, state):
    """An idle look that says "nothing to do" is right (it leaves running runs and last
    runs in the future to the full tick, which may then find nothing)."""
    from picron.storage import sqlitedb

    clock = FakeClock()
    path = str(tmp_path / "p.db")
    with open_store(path) as store:
        at = _state(store, clock, state)
        monkeypatch.setattr(sqlitedb, "utcnow", lambda: at)
        idle = tick_is_idle(path, "node1")
        assert _tick(store, clock, at) == EXPECTED[state]
    assert idle == (state in ("not yet due", "max retries reached", "inactive"))


def test_a_failure_is_retried_by_the_next_tick_within_the_same_second():
    clock = FakeClock()
    with open_store(":memory:") as store:
        store.add_task(spec(module="fail"), START)
        assert _tick(store, clock, SLOT + timedelta(microseconds=100)) == ["t"]
        assert _tick(store, clock, SLOT + timedelta(microseconds=900_000)) == ["t"]
        assert store.get_task(1).failure_streak == {"node1": 2}


def test_an_interrupted_run_is_retried_by_the_tick_that_detects_it():
    clock = FakeClock(SLOT + timedelta(microseconds=700_000))
    with open_store(":memory:") as store:
        task = store.add_task(spec(), START)
        run = store.claim_run(task.id, "node1", "scheduled", SLOT, pid=dead_pid(),
                              host=os.uname().nodename, timeout=60)
        report = runner(store, clock).run_scheduled()
        assert report.interrupted == [run.run_id]
        assert [(r.task, r.status) for r in report.results] == [("t", "success")]


def test_an_overlapping_tick_never_retries_a_failure_at_once():
    """Tick B starts; while it runs its first task, tick A runs "flaky", which fails. B then
    reaches "flaky": due again, but its failure ended after B began - only the next tick
    retries it."""
    clock = FakeClock(SLOT)
    with open_store(":memory:") as store:
        store.add_task(spec("first", module="trigger", ordering=0), START)
        store.add_task(spec("flaky", module="fail", ordering=1), START)
        store.add_task(spec("later", ordering=2), START)
        store.set_last_run(store.find_task("first").id, "node1", START)  # due in B only
        inner = []
        Trigger.action = lambda: inner.extend(r.task for r in runner(store, clock)
                                              .run_scheduled().results)
        try:
            outer = [r.task for r in runner(store, clock).run_scheduled().results]
        finally:
            Trigger.action = staticmethod(lambda: None)
        assert inner == ["flaky", "later"]
        assert outer == ["first"]  # not "flaky" (nor "later", which A ran)
        assert _tick(store, clock, SLOT + timedelta(seconds=1)) == ["flaky"]


def test_an_overlapping_tick_runs_a_task_whose_run_succeeded_meanwhile_if_due():
    """Only failures wait for the next tick: after a success the rule alone decides."""
    clock = FakeClock(SLOT)
    with open_store(":memory:") as store:
        store.add_task(spec("first", module="trigger", ordering=0), START)
        store.add_task(spec("every minute", ordering=1, interval="* * * * *"), START)
        store.set_last_run(store.find_task("first").id, "node1", START)

        def inner_tick():  # an earlier tick, a minute behind, runs "every minute" meanwhile
            clock.set(SLOT - timedelta(minutes=1))
            runner(store, clock).run_scheduled()
            clock.set(SLOT)

        Trigger.action = inner_tick
        try:
            outer = [r.task for r in runner(store, clock).run_scheduled().results]
        finally:
            Trigger.action = staticmethod(lambda: None)
        assert outer == ["first", "every minute"]


def test_a_claim_with_a_mark_refuses_runs_unfinished_at_the_mark(store):
    task = store.add_task(spec(module="fail"), START)
    other = store.add_task(spec("other"), START)
    running = store.claim_run(other.id, "node1", "manual", SLOT, pid=1, host="h", timeout=60)
    first = store.claim_run(task.id, "node1", "scheduled", SLOT, pid=1, host="h", timeout=60)
    mark = store.tick_mark()
    assert (mark.last_run_id, set(mark.running)) == (first.run_id, {running.run_id,
                                                                     first.run_id})
    store.finish_run(first.run_id, "failed", SLOT, 0.1)
    claim = dict(pid=1, host="h", timeout=60)
    assert store.claim_run(task.id, "node1", "scheduled", SLOT, mark=mark, **claim) is None
    assert store.claim_run(task.id, "node1", "scheduled", SLOT, mark=store.tick_mark(),
                           **claim) is not None


def test_timestamps_have_one_writer():
    """No module formats a database timestamp itself: to_db is the only writer."""
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "picron"
    writers = [str(path.relative_to(package)) for path in package.rglob("*.py")
               if "%Y-%m-%dT%H:%M:%S" in path.read_text()]
    assert writers == []


def test_the_counter_step_limit_is_one_constant(app):
    from picron.counters import MAX_STEP, change_counter
    from picron.errors import ValidationError

    assert change_counter(app.store, "c", MAX_STEP) == MAX_STEP == 2**53 - 1
    with pytest.raises(ValidationError, match=str(MAX_STEP)):
        change_counter(app.store, "c", MAX_STEP + 1)
