"""SPEC §2 rules 1-8 through the store and the runner, with an injected clock."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from picron.errors import AlreadyRunning, NotFound
from picron.liveness import this_process
from picron.records import TaskSpec
from picron.runner import Runner
from tests.conftest import FakeClock, Succeed

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def spec(name, interval="*/5 * * * *", nodes=("node1",), module="succeed", **kw):
    return TaskSpec(name=name, interval=interval, taskmodule=module, nodes=tuple(nodes), **kw)


def make_runner(store, registry, clock, node="node1"):
    return Runner(store, registry, node=node, clock=clock, db_clock=clock, isolate=False)


def test_privacyidea_scheduling_scenario_in_moscow_time(make_store, registry):
    """privacyIDEA's test_05_scheduling: two nodes, an inactive task, ordering, enabling."""
    store = make_store(default_zone=ZoneInfo("Europe/Moscow"))
    created = at("2018-05-01 00:00+03:00")
    one = store.add_task(spec("task one", "0 0 1 * *", ["pinode1"]), created).id
    two = store.add_task(spec("task two", "0 8 * * WED", ["pinode2"], active=False), created).id
    three = store.add_task(spec("task three", "*/30 * * * 2", ["pinode1", "pinode2"]),
                           created).id
    four = store.add_task(spec("task four", "0 0 1 8 *", ["pinode2"]), created).id
    store.set_last_run(one, "pinode1", at("2018-06-01 00:00:05+03:00"))
    store.set_last_run(two, "pinode2", at("2018-06-20 08:00:05+03:00"))
    store.set_last_run(three, "pinode1", at("2018-06-26 11:36:37+03:00"))
    store.set_last_run(three, "pinode2", at("2018-06-26 11:30:33+03:00"))
    store.set_last_run(four, "pinode2", at("2017-08-01 00:00:43+03:00"))

    def due(node, when):
        return [store.get_task(i).name for i in store.due_task_ids(node, at(when))]

    assert due("pinode1", "2018-06-26 11:59+03:00") == []
    assert due("pinode2", "2018-06-26 11:59+03:00") == []
    assert due("pinode1", "2018-06-26 12:00+03:00") == ["task three"]
    assert due("pinode2", "2018-06-26 12:00+03:00") == ["task three"]
    store.set_last_run(three, "pinode1", at("2018-08-01 00:00+03:00"))
    store.set_last_run(three, "pinode2", at("2018-08-01 00:00+03:00"))
    now = "2018-08-01 11:59+03:00"
    assert due("pinode1", now) == ["task one"]
    assert due("pinode2", now) == ["task four"]
    store.set_active(two, True, at(now))
    assert due("pinode1", now) == ["task one"]
    assert due("pinode2", now) == ["task two", "task four"]  # id order at equal ordering
    for task_id, node in ((one, "pinode1"), (two, "pinode2"), (four, "pinode2")):
        store.set_last_run(task_id, node, at(now))
    later = at(now) + timedelta(seconds=1)
    assert store.due_task_ids("pinode1", later) == store.due_task_ids("pinode2", later) == []
    assert store.due_task_ids("pinode3", later) == []


def test_next_runs_come_from_last_runs_or_last_update(store):
    created = at("2018-06-23 07:55+00:00")
    task = store.add_task(spec("daily", "0 8 * * *", ["foo", "bar", "baz"]), created)
    store.set_last_run(task.id, "foo", at("2018-06-25 08:04:30+00:00"))
    store.set_last_run(task.id, "bar", at("2018-06-24 07:05:37+00:00"))
    task = store.get_task(task.id)
    assert task.next_runs == {"foo": at("2018-06-26 08:00+00:00"),
                              "bar": at("2018-06-24 08:00+00:00"),
                              "baz": at("2018-06-23 08:00+00:00")}
    assert task.last_runs == {"foo": at("2018-06-25 08:04:30+00:00"),
                              "bar": at("2018-06-24 07:05:37+00:00")}


def test_missed_slots_coalesce_into_one_run(store, registry, clock):
    store.add_task(spec("every5"), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(days=2)  # 576 missed slots
    report = runner.run_scheduled()
    assert [r.task for r in report.results] == ["every5"]
    assert runner.run_scheduled().results == []  # same minute: nothing due any more
    clock.advance(minutes=5)
    assert len(runner.run_scheduled().results) == 1


def test_runs_in_ordering_then_id_order_and_failures_do_not_stop_others(store, registry, clock):
    for name, ordering, module in (("a", 3, "succeed"), ("b", 1, "fail"), ("c", 2, "succeed"),
                                   ("d", 1, "boom"), ("e", 0, "succeed")):
        store.add_task(spec(name, ordering=ordering, module=module), clock())
    clock.advance(minutes=5)
    report = make_runner(store, registry, clock).run_scheduled()
    assert [(r.task, r.status) for r in report.results] == [
        ("e", "success"), ("b", "failed"), ("d", "failed"), ("c", "success"), ("a", "success")]
    assert report.failed
    boom = store.list_runs(store.find_task("d").id)[0]
    assert "RuntimeError: kaboom" in boom.message


def test_a_failed_run_is_retried_at_the_next_invocation(store, registry, clock):
    task = store.add_task(spec("flaky", "0 * * * *", module="fail"), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(hours=1)
    assert runner.run_scheduled().results[0].status == "failed"
    clock.advance(minutes=5)
    assert len(runner.run_scheduled().results) == 1  # retried
    task = store.get_task(task.id)
    assert task.last_runs == {}  # failures did not count as runs
    assert task.failure_streak == {"node1": 2}
    assert task.last_status == {"node1": "failed"}


def test_without_retry_a_failure_counts_as_a_run(store, registry, clock):
    task = store.add_task(spec("once", "0 * * * *", module="fail", retry_if_failed=False),
                          clock())
    runner = make_runner(store, registry, clock)
    clock.advance(hours=1)
    assert len(runner.run_scheduled().results) == 1
    clock.advance(minutes=5)
    assert runner.run_scheduled().results == []
    assert store.get_task(task.id).last_runs == {"node1": clock() - timedelta(minutes=5)}


def test_max_retries_then_wait_for_the_next_slot(store, registry, clock):
    """R7: max_retries=3 -> attempts at 4 ticks, then none until the next slot."""
    store.add_task(spec("limited", "0 0 * * *", module="fail", max_retries=3), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(days=1)
    attempts = []
    for _ in range(12 * 6):  # six hours of 5-minute ticks
        attempts += [clock()] * len(runner.run_scheduled().results)
        clock.advance(minutes=5)
    assert len(attempts) == 4
    assert attempts == [at("2026-01-02 00:00+00:00") + timedelta(minutes=5 * i) for i in range(4)]
    clock.set(at("2026-01-03 00:00+00:00"))
    assert len(runner.run_scheduled().results) == 1  # next slot: tries again
    assert len(store.list_runs()) == 5  # every attempt is in the history


def test_success_resets_the_failure_streak(store, registry, clock):
    task = store.add_task(spec("mixed", module="fail"), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(minutes=5)
    runner.run_scheduled()
    store.update_task(task.id, spec("mixed", module="succeed"), clock())
    clock.advance(minutes=5)
    runner.run_scheduled()
    task = store.get_task(task.id)
    assert task.failure_streak == {"node1": 0} and task.last_status == {"node1": "success"}


def test_inactive_tasks_never_run_but_have_next_runs(store, registry, clock):
    task = store.add_task(spec("off", active=False), clock())
    clock.advance(hours=1)
    assert make_runner(store, registry, clock).run_scheduled().results == []
    assert store.get_task(task.id).next_runs == {"node1": at("2026-01-01 00:05+00:00")}


def test_a_last_run_seconds_ahead_is_another_clock_not_a_warning(store, registry, clock):
    """Processes and nodes read clocks a little apart (M1): under a minute ahead, no warning;
    the task still waits for its next slot."""
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=10)
    store.set_last_run(task.id, "node1", clock() + timedelta(seconds=30))
    report = make_runner(store, registry, clock).run_scheduled()
    assert (report.results, report.warnings) == ([], [])
    store.set_last_run(task.id, "node1", clock() + timedelta(seconds=61))
    assert "clock went backwards" in make_runner(store, registry, clock).run_scheduled().warnings[0]


def test_clock_going_backwards_runs_nothing_twice_and_warns(store, registry, clock):
    store.add_task(spec("t"), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(minutes=10)
    assert len(runner.run_scheduled().results) == 1
    clock.advance(minutes=-7)
    report = runner.run_scheduled()
    assert report.results == []
    assert report.warnings and "clock went backwards" in report.warnings[0]
    clock.advance(minutes=7)
    assert runner.run_scheduled().results == []  # 00:10 already ran
    clock.advance(minutes=5)
    assert len(runner.run_scheduled().results) == 1


def test_last_run_ten_years_in_the_future_waits(store, registry, clock):
    task = store.add_task(spec("t"), clock())
    store.set_last_run(task.id, "node1", clock() + timedelta(days=3650))
    clock.advance(minutes=30)
    report = make_runner(store, registry, clock).run_scheduled()
    assert report.results == [] and len(report.warnings) == 1


def test_nodes_run_independently_and_removed_nodes_lose_their_last_run(store, registry, clock):
    """R9: nodes [a, b]; ticks as a, b and c."""
    task = store.add_task(spec("t", nodes=["a", "b"]), clock())
    runners = {n: make_runner(store, registry, clock, node=n) for n in "abc"}
    clock.advance(minutes=5)
    counts = {n: len(runners[n].run_scheduled().results) for n in "abc"}
    assert counts == {"a": 1, "b": 1, "c": 0}
    assert {n: len(runners[n].run_scheduled().results) for n in "abc"} == \
        {"a": 0, "b": 0, "c": 0}
    store.update_task(task.id, spec("t", nodes=["a"]), clock())
    assert set(store.get_task(task.id).last_runs) == {"a"}


def test_edit_keeps_last_runs_and_moves_last_update(store, clock):
    task = store.add_task(spec("t", nodes=["a", "b"]), clock())
    store.set_last_run(task.id, "a", at("2026-01-01 00:07+00:00"))
    clock.advance(hours=1)
    edited = store.update_task(task.id, spec("t", "0 * * * *", nodes=["a", "b"]), clock())
    assert edited.last_update == clock()
    assert edited.last_runs == {"a": at("2026-01-01 00:07+00:00")}
    assert edited.next_runs == {"a": at("2026-01-01 01:00+00:00"),
                                "b": at("2026-01-01 02:00+00:00")}
    disabled = store.set_active(task.id, False, clock.advance(minutes=1))
    assert disabled.last_update == clock() and not disabled.active


def test_second_claim_is_refused_while_running(store, clock):
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=5)
    claim = store.claim_run(task.id, "node1", "scheduled", clock(), pid=1, host="h", timeout=60)
    assert claim is not None
    assert store.claim_run(task.id, "node1", "scheduled", clock(), pid=2, host="h",
                           timeout=60) is None
    with pytest.raises(AlreadyRunning):  # R10: run_manually while the scheduled run runs
        store.claim_run(task.id, "node1", "manual", clock(), pid=3, host="h", timeout=60)
    assert store.finish_run(claim.run_id, "success", clock(), 0.1)
    assert not store.finish_run(claim.run_id, "failed", clock(), 0.1)  # finished once only
    assert store.claim_run(task.id, "node1", "scheduled", clock(), pid=2, host="h",
                           timeout=60) is None  # no longer due


def test_run_manually_runs_inactive_tasks_on_any_node(store, registry, clock):
    task = store.add_task(spec("t", active=False, nodes=["a"]), clock())
    runner = make_runner(store, registry, clock, node="a")
    result = runner.run_manually(task.id)
    assert result.ok and result.trigger == "manual"
    assert store.get_task(task.id).last_runs == {"a": clock()}
    elsewhere = runner.run_manually(task.id, node="z")
    assert elsewhere.ok and elsewhere.node == "z"
    assert Succeed.calls == [("t", "a"), ("t", "z")]
    with pytest.raises(NotFound):
        runner.run_manually(999)


def test_a_run_whose_owner_died_is_interrupted_and_retried(store, registry, clock):
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=5)
    runner = make_runner(store, registry, clock)
    dead = replace(this_process(runner.host), pid=2**22 + 12345)  # above pid_max: no such
    _claim_as(store, task.id, clock, dead, lease_until=clock() + timedelta(hours=1))
    clock.advance(minutes=1)
    report = runner.run_scheduled()
    assert len(report.interrupted) == 1
    assert [r.status for r in report.results] == ["success"]  # retried at once
    statuses = [run.status for run in store.list_runs(task.id)]
    assert statuses == ["success", "interrupted"]
    assert "died" in store.list_runs(task.id)[1].message


def test_a_run_on_another_host_is_interrupted_only_after_its_deadline(store, registry, clock):
    task = store.add_task(spec("t", timeout=60), clock())
    clock.advance(minutes=5)
    store.claim_run(task.id, "node1", "scheduled", clock(), pid=1, host="elsewhere",
                    timeout=3600)
    runner = make_runner(store, registry, clock)
    assert runner.run_scheduled().interrupted == []
    clock.advance(seconds=121)  # timeout 60 s + grace 60 s
    assert len(runner.run_scheduled().interrupted) == 1


def test_history_is_pruned_after_history_days(store, registry, clock):
    store.add_task(spec("t"), clock())
    runner = Runner(store, registry, node="node1", clock=clock,
                    history_days=1)
    for _ in range(3):  # runs at 13:00, 26:00 and 39:00; the first is then > 1 day old
        clock.advance(hours=13)
        runner.run_scheduled()
    assert len(store.list_runs()) == 2


def test_every_run_is_recorded_with_its_fields(store, registry, clock):
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=5)
    make_runner(store, registry, clock).run_scheduled()
    run = store.list_runs(task.id)[0].to_json()
    assert set(run) == {"id", "task_id", "task", "node", "trigger", "status", "start", "end",
                        "duration", "message"}
    assert run["task"] == "t" and run["trigger"] == "scheduled" and run["status"] == "success"
    assert run["start"] == "2026-01-01T00:05:00+00:00" and run["message"] == "fine"


def test_deleted_task_keeps_its_history(store, registry, clock):
    task = store.add_task(spec("gone"), clock())
    make_runner(store, registry, clock).run_manually(task.id)
    store.delete_task(task.id, clock())
    assert store.list_runs()[0].task == "gone"
    with pytest.raises(NotFound):
        store.get_task(task.id)
    again = store.add_task(spec("gone"), clock())
    assert again.id != task.id  # ids are never reused


def test_fake_clock_is_deterministic():
    clock = FakeClock()
    assert clock() == clock() and clock.advance(minutes=1) - timedelta(minutes=1) == \
        datetime(2026, 1, 1, tzinfo=UTC)


# -- interrupted runs, owners and leases (SPEC §2 rule 6) ----------------------------------


def _claim_as(store, task_id, clock, owner, lease_until=None, node="node1"):
    """A run claimed by ``owner`` (a ``picron.liveness.Owner``), as its runner would."""
    return store.claim_run(task_id, node, "scheduled", clock(), pid=owner.pid,
                           host=owner.host, timeout=3600, boot_id=owner.boot_id,
                           pidns=owner.pidns, proc_start=str(owner.proc_start),
                           pgid=owner.pgid, lease_until=lease_until)


def test_a_reused_pid_does_not_keep_a_dead_run_alive(store, registry, clock):
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=5)
    runner = make_runner(store, registry, clock)
    me = this_process(runner.host)  # a live process, but started before the run's owner
    _claim_as(store, task.id, clock, replace(me, proc_start=me.proc_start + 1),
              lease_until=clock() + timedelta(hours=1))
    report = runner.run_scheduled()
    assert len(report.interrupted) == 1 and [r.ok for r in report.results] == [True]


def test_a_live_owner_on_this_host_keeps_its_run_whatever_its_lease(store, registry, clock):
    task = store.add_task(spec("t", timeout=60), clock())
    clock.advance(minutes=5)
    runner = make_runner(store, registry, clock)
    _claim_as(store, task.id, clock, this_process(runner.host),
              lease_until=clock() - timedelta(seconds=1))
    clock.advance(seconds=100)
    assert runner.run_scheduled().interrupted == []
    clock.advance(seconds=30)  # past its deadline (timeout 60 s) + grace: its parent hangs
    assert len(runner.run_scheduled().interrupted) == 1


@pytest.mark.parametrize("elsewhere", [{"host": "other-host"}, {"boot_id": "other-boot"},
                                       {"pidns": "pid:[4026531999]"}])
def test_elsewhere_an_expired_lease_means_interrupted(store, registry, clock, elsewhere):
    """A pid from another host, boot or PID namespace means nothing here: the lease, on
    the database's clock, decides; the tick that finds it expired retries the task."""
    task = store.add_task(spec("t"), clock())
    clock.advance(minutes=5)
    db_clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))  # the server's clock differs
    runner = Runner(store, registry, node="node1", clock=clock, db_clock=db_clock)
    owner = replace(this_process(runner.host), pid=2**22 + 7, **elsewhere)  # dead here
    _claim_as(store, task.id, clock, owner, lease_until=db_clock() + timedelta(seconds=60))
    clock.advance(hours=2)  # the node's clock means nothing for a lease
    assert runner.run_scheduled().interrupted == [] and store.running_runs()
    db_clock.advance(seconds=61)
    report = runner.run_scheduled()
    assert len(report.interrupted) == 1
    assert [r.status for r in report.results] == ["success"]
    assert "lease" in store.list_runs(task.id)[1].message


def test_a_claim_records_its_owner_and_a_lease_on_the_database_clock(store, registry, clock):
    task = store.add_task(spec("t"), clock())
    db_clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    runner = Runner(store, registry, node="node1", clock=clock, db_clock=db_clock,
                    lease_seconds=30)
    claim = runner.claim_manual(task.id)
    (run,) = store.running_runs()
    me = this_process(runner.host)
    assert (run.id, run.host, run.pid, run.boot_id, run.pidns, run.proc_start) == \
        (claim.run_id, me.host, me.pid, me.boot_id, me.pidns, str(me.proc_start))
    assert run.lease_until == db_clock() + timedelta(seconds=30)
    assert run.deadline == db_clock() + timedelta(seconds=3600)
    db_clock.advance(seconds=10)
    assert store.renew_run(claim.run_id, db_clock() + timedelta(seconds=30), pgid=4242)
    (run,) = store.running_runs()
    assert (run.lease_until, run.pgid) == (db_clock() + timedelta(seconds=30), 4242)
    assert store.finish_run(claim.run_id, "success", clock(), 0.1)
    assert not store.renew_run(claim.run_id, db_clock() + timedelta(seconds=30))


def test_manual_runs_on_a_node_not_assigned_record_its_last_run(store, registry, clock):
    """Rule 7: shown in last_runs, schedules nothing, removed by the next edit (rule 5)."""
    task = store.add_task(spec("t", nodes=["a"]), clock())
    runner = make_runner(store, registry, clock, node="a")
    clock.advance(minutes=1)
    assert runner.run_manually(task.id, node="z").ok
    shown = store.get_task(task.id)
    assert shown.nodes == ("a",) and set(shown.next_runs) == {"a"}
    assert shown.last_runs == {"z": clock()} and shown.last_status == {"z": "success"}
    assert shown.last_attempts == {"z": clock()}
    clock.advance(hours=1)
    assert make_runner(store, registry, clock, node="z").run_scheduled().results == []
    assert [t.id for t in store.list_tasks("z")] == []
    edited = store.update_task(task.id, spec("t", "*/10 * * * *", nodes=["a"]), clock())
    assert edited.last_runs == {} and edited.last_status == {}


def test_last_attempts_shows_when_a_retried_task_last_tried(store, registry, clock):
    task = store.add_task(spec("t", module="fail"), clock())
    runner = make_runner(store, registry, clock)
    clock.advance(minutes=5)
    runner.run_scheduled()
    clock.advance(minutes=3)
    runner.run_scheduled()
    shown = store.get_task(task.id)
    assert shown.last_attempts == {"node1": clock()}
    assert shown.next_runs["node1"] < shown.last_attempts["node1"]  # being retried
    assert shown.last_runs == {}
    assert shown.to_json()["last_attempts"] == {"node1": "2026-01-01T00:08:00+00:00"}
