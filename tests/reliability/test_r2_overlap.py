"""R2: a task that runs longer than its cron interval never overlaps itself."""
from __future__ import annotations

import time
from datetime import timedelta

from tests.reliability.conftest import T0, read_events, scale

SLEEP = scale(2, 5)          # real seconds the task runs
TICKS = scale(12, 40)        # one tick per fake minute ...
TICK_EVERY = 0.5             # ... started every half real second


def test_long_task_never_runs_twice_at_once(lab, figure):
    log = lab.log()
    lab.add_tasks({"name": "long", "interval": "* * * * *", "taskmodule": "record",
                   "options": {"log": log, "sleep": SLEEP}})
    spawned, procs = [], []
    for k in range(1, TICKS + 1):
        spawned.append(_uptime())
        procs.append(lab.spawn("run_scheduled", "-c", at=T0 + timedelta(minutes=k, seconds=5)))
        time.sleep(TICK_EVERY)
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    events = read_events(log)
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) == len(ends) >= 2
    # never two instances at once: each start comes after the previous end
    for previous, following in zip(ends, starts[1:]):
        assert following["t"] >= previous["t"]
    # it runs again, once, at the first tick after it finished: the tick that ran it is
    # the first one started after the end (or the one started just before, while the
    # previous run was being recorded)
    minutes = [int(e["at"][14:16]) for e in starts]
    for previous, minute in zip(ends, minutes[1:]):
        first_after = next(k for k, t in enumerate(spawned, 1) if t >= previous["t"])
        assert minute in (first_after - 1, first_after), (minute, first_after)
    assert lab.query("select count(*) from run")[0][0] == len(starts)
    figure(f"{TICKS} ticks every {TICK_EVERY} s, a {SLEEP} s task: {len(starts)} runs, "
           f"never 2 at once, each restarted by the first tick after it ended")


def _uptime() -> float:
    from picron_testmods import uptime

    return uptime()
