"""R11: a month of 5-minute ticks - tick time, history retention, WAL size and RSS stay flat.

The month is simulated in-process with an injected clock and in-process task execution
(child-process isolation is proven by R4/R5; forking 30,000 times would only slow the
soak); the memory of one tick is then measured on a real ``run_scheduled`` process
against the soaked database.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta, timezone

from tests.reliability.conftest import T0, scale
from picron.modules import Registry
from picron.records import TaskSpec
from picron.runner import Runner
from picron.storage import open_store

import picron_testmods

DAYS = scale(2, 30)
RETENTION_DAYS = scale(1, 7)
MEASURE = ("import os, sys; pid = os.fork()\n"
           "if pid == 0: os.execv(sys.argv[1], sys.argv[1:])\n"
           "_, status, usage = os.wait4(pid, 0)\n"
           "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)")
INTERVALS = ["*/5 * * * *"] * 3 + ["*/15 * * * *"] * 2 + ["0 * * * *"] * 2 + \
            ["30 2 * * *", "0 0 * * 0", "*/10 8-18 * * 1-5"]


def test_a_month_of_ticks(lab, clock, figure):
    store = open_store(lab.db, default_zone=timezone.utc)
    clock.set(T0)
    for i, interval in enumerate(INTERVALS):
        store.add_task(TaskSpec(name=f"soak{i}", interval=interval, taskmodule="flaky",
                                nodes=("node1",), timezone="UTC", options={"seed": "11"}),
                       clock())
    picron_testmods.Flaky.random = None
    runner = Runner(store, Registry(modules=picron_testmods.MODULES), node="node1",
                    clock=clock, isolate=False, history_days=RETENTION_DAYS)
    slowest, runs, failures, wal = 0.0, 0, 0, 0
    for _ in range(DAYS * 288):
        clock.advance(minutes=5)
        started = time.perf_counter()
        report = runner.run_scheduled()
        slowest = max(slowest, time.perf_counter() - started)
        runs += len(report.results)
        failures += sum(not r.ok for r in report.results)
        wal = max(wal, _size(lab.db + "-wal"))
    oldest = store.list_runs(limit=10 ** 9)[-1].start
    store.close()
    # The tick's peak RSS, measured by a small Python in between: a child forked from
    # this (big) pytest process would report pytest's own peak (Linux keeps the larger
    # high-water mark across fork and exec).
    env = lab.env(at=clock() + timedelta(minutes=5, seconds=3))
    measured = subprocess.run([sys.executable, "-c", MEASURE, *lab.argv("run_scheduled", "-c")],
                              env=env, capture_output=True, text=True, timeout=120)
    code, rss_kb = map(int, measured.stdout.split())
    rss_mb = rss_kb / 1024
    assert slowest <= 2.0
    assert oldest >= clock() - timedelta(days=RETENTION_DAYS, minutes=5)
    assert wal <= 16 * 2 ** 20
    assert rss_mb <= 50
    assert code in (0, 1) and 0 < failures < runs * 0.03
    figure(f"{DAYS} days, {runs} runs ({failures} failed): slowest tick "
           f"{slowest * 1000:.0f} ms, WAL max {wal / 2 ** 20:.1f} MiB, history from "
           f"{oldest:%Y-%m-%d %H:%M} (retention {RETENTION_DAYS} d), one tick's RSS "
           f"{rss_mb:.1f} MB")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
