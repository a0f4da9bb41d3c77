"""R2: a task that runs longer than its cron interval never overlaps itself."""
from __future__ import annotations

import time
from datetime import timedelta

from tests.reliability.conftest import T0, read_events, scale, wait_for

SLEEP = scale(2, 5)          # real seconds the task runs
TICKS = scale(12, 40)        # one tick per fake minute ...
TICK_EVERY = 0.5             # ... started half a real second after the previous one looked


def test_long_task_never_runs_twice_at_once(lab, figure):
    """Ticks look one after another (each is started once the previous one has skipped the
    task or started it), so "the first tick after it finished" is well defined however
    slowly the machine starts processes: the first tick started after the tick that ran
    the task had exited (its result recorded)."""
    log = lab.log()
    lab.add_tasks({"name": "long", "interval": "* * * * *", "taskmodule": "record",
                   "options": {"log": log, "sleep": SLEEP}})
    spawned, procs, exited = [], [], {}

    def note_exits():
        for k, proc in enumerate(procs, 1):
            if k not in exited and proc.poll() is not None:
                exited[k] = _uptime()
        return exited

    for k in range(1, TICKS + 1):
        spawned.append(_uptime())
        procs.append(lab.spawn("run_scheduled", "-c", at=T0 + timedelta(minutes=k, seconds=5)))
        wait_for(lambda: k in note_exits() or k in _start_minutes(log), timeout=60)
        time.sleep(TICK_EVERY)
    wait_for(lambda: len(note_exits()) == TICKS, timeout=120)
    for proc in procs:
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    events = read_events(log)
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) == len(ends) >= 2
    assert len(starts) < TICKS  # some ticks came while it ran, and skipped it
    # never two instances at once: each start comes after the previous end
    for previous, following in zip(ends, starts[1:]):
        assert following["t"] >= previous["t"]
    # it runs again, once, at the first tick after it finished: no later than the first
    # tick started after the tick that ran it had exited (an earlier one may have looked
    # after the result was recorded, before the exit was seen)
    minutes = _start_minutes(log)
    for ran, following in zip(minutes, minutes[1:]):
        first_after = next((k for k, t in enumerate(spawned, 1) if t >= exited[ran]), None)
        assert first_after is None or ran < following <= first_after, \
            (ran, following, first_after)
    assert lab.query("select count(*) from run")[0][0] == len(starts)
    figure(f"{TICKS} ticks {TICK_EVERY} s apart, a {SLEEP} s task: {len(starts)} runs, "
           f"never 2 at once, each restarted by the first tick after it ended")


def _start_minutes(log: str) -> list[int]:
    """The fake minute (= the tick number) of every start, in order."""
    return [int(e["at"][14:16]) for e in read_events(log) if e["event"] == "start"]


def _uptime() -> float:
    from picron_testmods import uptime

    return uptime()
