"""R3, R7, R8, R9: scheduling rules with an injected clock (in-process runner, no real time)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.reliability.conftest import T0, scale
from picron.records import TaskSpec
from picron.runner import Runner

UTC = timezone.utc


def make_runner(store, registry, clock, node="node1", **kwargs) -> Runner:
    return Runner(store, registry, node=node, clock=clock, **kwargs)


def add(store, clock, name, interval, module="succeed", nodes=("node1",), tz="UTC", **fields):
    spec = TaskSpec(name=name, interval=interval, taskmodule=module, nodes=tuple(nodes),
                    timezone=tz, **fields)
    return store.add_task(spec, clock())


def timed_tick(runner):
    started = time.perf_counter()
    report = runner.run_scheduled()
    return report, time.perf_counter() - started


# -- R3 ------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [timedelta(days=2), timedelta(days=3653)], ids=["2d", "10y"])
def test_missed_slots_coalesce_into_one_quick_run(store, registry, clock, figure, gap):
    clock.set(T0 - gap)
    task = add(store, clock, "late", "*/5 * * * *")
    runner = make_runner(store, registry, clock)
    clock.advance(minutes=5)
    assert len(runner.run_scheduled().results) == 1
    clock.set(T0 + timedelta(seconds=7))
    report, seconds = timed_tick(runner)
    again, _ = timed_tick(runner)
    assert [r.task for r in report.results] == ["late"] and again.results == []
    assert seconds <= 1.0
    assert store.get_task(task.id).last_runs["node1"] == clock()
    figure(f"one run after a {gap.days}-day gap, tick {seconds * 1000:.1f} ms")


def test_last_run_in_the_future_runs_nothing_and_warns(store, registry, clock, figure):
    add(store, clock, "ahead", "*/5 * * * *")
    runner = make_runner(store, registry, clock)
    clock.set(T0 + timedelta(days=3653, minutes=5))
    assert len(runner.run_scheduled().results) == 1
    clock.set(T0 + timedelta(minutes=30))  # the clock went 10 years back
    report, seconds = timed_tick(runner)
    assert report.results == []
    assert len(report.warnings) == 1 and "clock went backwards" in report.warnings[0]
    assert seconds <= 1.0
    figure(f"future reference: 0 runs, 1 warning, tick {seconds * 1000:.1f} ms")


def test_future_warning_reaches_cron_stderr(lab):
    lab.add_tasks({"name": "ahead", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": lab.log()}})
    future = lab.run("run_scheduled", "-c", at=T0 + timedelta(days=3653, minutes=5))
    back = lab.run("run_scheduled", "-c", at=T0 + timedelta(minutes=30))
    assert future.returncode == 0 and back.returncode == 0 and back.stdout == ""
    assert back.stderr.startswith("picron: warning: task 'ahead': its last run")
    assert len(back.stderr.splitlines()) == 1
    assert lab.query("select count(*) from run")[0][0] == 1


# -- R7 ------------------------------------------------------------------------------


def test_max_retries_then_wait_for_next_slot(store, registry, clock):
    clock.set(T0)
    task = add(store, clock, "flaky", "0 * * * *", module="fail", max_retries=3)
    runner = make_runner(store, registry, clock)
    attempts = []
    for _ in range(12 * 2 + 4):                    # ticks every 5 minutes, 00:05 .. 02:20
        clock.advance(minutes=5)
        attempts += [clock().strftime("%H:%M") for _ in runner.run_scheduled().results]
    assert attempts == ["01:00", "01:05", "01:10", "01:15", "02:00", "02:05", "02:10", "02:15"]
    history = store.list_runs(task.id, limit=100)
    assert [r.start.strftime("%H:%M") for r in reversed(history)] == attempts
    assert {r.status for r in history} == {"failed"}


# -- R8 ------------------------------------------------------------------------------

EXPRESSIONS = {"daily": "30 2 * * *", "hourly": "0 * * * *", "five": "*/5 * * * *"}
MATCH = {"daily": lambda t: (t.hour, t.minute) == (2, 30), "hourly": lambda t: t.minute == 0,
         "five": lambda t: t.minute % 5 == 0}
CHANGES = {"Europe/Berlin": ("2026-03-29T01:00", "2026-10-25T01:00"),
           "America/New_York": ("2026-03-08T07:00", "2026-11-01T06:00")}
WINDOW = scale(timedelta(hours=4), timedelta(days=1))


def expected_fires(kind: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """SPEC §2.2 by brute force: every matching wall-clock minute; a missing one fires at
    the end of its gap, a repeated one at its first occurrence."""
    fires, naive = set(), (start.astimezone(zone) - timedelta(hours=3)).replace(tzinfo=None)
    while naive <= (end.astimezone(zone) + timedelta(hours=3)).replace(tzinfo=None):
        if MATCH[kind](naive):
            instant = naive.replace(tzinfo=zone).astimezone(UTC)   # fold=0: the first one
            if instant.astimezone(zone).replace(tzinfo=None) != naive:  # in a gap
                instant = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
                while instant.astimezone(zone).replace(tzinfo=None) <= naive:
                    instant += timedelta(minutes=1)
            fires.add(instant)
        naive += timedelta(minutes=1)
    return sorted(fires)


@pytest.mark.parametrize("zone_name", sorted(CHANGES))
@pytest.mark.parametrize("change", [0, 1], ids=["spring", "autumn"])
def test_dst_changes(store, registry, clock, figure, zone_name, change):
    zone = ZoneInfo(zone_name)
    jump = datetime.fromisoformat(CHANGES[zone_name][change]).replace(tzinfo=UTC)
    start, end = jump - WINDOW, jump + WINDOW
    clock.set(start)
    tasks = {kind: add(store, clock, kind, expr, tz=zone_name)
             for kind, expr in EXPRESSIONS.items()}
    runner = make_runner(store, registry, clock)
    ran = {kind: [] for kind in tasks}
    slowest = 0.0
    previous = start
    while clock() < end:
        now = clock.advance(minutes=5)
        report, seconds = timed_tick(runner)
        slowest = max(slowest, seconds)
        for result in report.results:
            ran[result.task].append(now)
        previous = now
    for kind in tasks:
        fires = expected_fires(kind, zone, start, end)
        ticks = [start + timedelta(minutes=5 * k) for k in range(1, (previous - start)
                                                                  // timedelta(minutes=5) + 1)]
        expected = [t for t in ticks if any(t - timedelta(minutes=5) < f <= t for f in fires)]
        assert ran[kind] == expected, kind
    assert slowest <= 1.0
    local = {kind: [t.astimezone(zone).strftime("%H:%M%z") for t in ran[kind]
                    if abs(t - jump) <= timedelta(hours=2)] for kind in ("daily", "hourly")}
    figure(f"{zone_name} {['spring', 'autumn'][change]}: runs near the jump {local}; "
           f"slowest tick {slowest * 1000:.1f} ms")


def test_berlin_gap_and_fold_by_hand(store, registry, clock):
    """The two SPEC §2.2 cases spelled out for Berlin's daily 02:30 task."""
    berlin = ZoneInfo("Europe/Berlin")
    clock.set(datetime(2026, 3, 28, 12, tzinfo=UTC))
    add(store, clock, "daily", "30 2 * * *", tz="Europe/Berlin")
    runner = make_runner(store, registry, clock)
    ran = []
    for first, last in ((datetime(2026, 3, 28, 12), datetime(2026, 3, 30, 12)),
                        (datetime(2026, 10, 24, 12), datetime(2026, 10, 26, 12))):
        clock.set(first.replace(tzinfo=UTC))
        while clock() < last.replace(tzinfo=UTC):
            clock.advance(minutes=5)
            ran += [clock() for _ in runner.run_scheduled().results]
    assert ran[0].astimezone(berlin).strftime("%m-%d %H:%M") == "03-29 03:00"  # gap → 03:00
    autumn = [t for t in ran if t.date() == datetime(2026, 10, 25).date()]
    assert [t.strftime("%H:%M") for t in autumn] == ["00:30"]  # 02:30 CEST, not again in CET
    assert len(ran) == len({t.astimezone(berlin).date() for t in ran})  # once a day


# -- R9 ------------------------------------------------------------------------------


def test_nodes_run_their_own_slots(store, registry, clock):
    clock.set(T0)
    task = add(store, clock, "both", "*/5 * * * *", nodes=("a", "b"))
    runners = {node: make_runner(store, registry, clock, node=node) for node in "abc"}
    slots = 6
    ran = {node: 0 for node in runners}
    for _ in range(slots):
        clock.advance(minutes=5)
        for node, runner in runners.items():
            ran[node] += len(runner.run_scheduled().results)
            ran[node] += len(runner.run_scheduled().results)  # a second tick: nothing more
    assert ran == {"a": slots, "b": slots, "c": 0}
    assert set(store.get_task(task.id).last_runs) == {"a", "b"}
    spec = store.get_task(task.id).spec
    store.update_task(task.id, TaskSpec(**{**spec.__dict__, "nodes": ("a",)}), clock())
    edited = store.get_task(task.id)
    assert set(edited.last_runs) == {"a"} and set(edited.next_runs) == {"a"}
    clock.advance(minutes=5)
    assert runners["b"].run_scheduled().results == []
    assert len(runners["a"].run_scheduled().results) == 1
