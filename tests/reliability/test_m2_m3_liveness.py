"""M2 and M3: liveness across hosts on one PostgreSQL database (SPEC §2 rule 6).

"Hosts" are ``picron`` processes in their own UTS, PID and mount namespaces (``unshare``),
with their own host name: a pid written by one means nothing to another, so only the run's
lease - measured by the database server's clock - can tell them that its owner is gone.
Node clocks are moved with libfaketime; the server's clock is the real one.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from picron.records import TaskSpec
from picron.storage import open_store
from tests.reliability.conftest import (T0, Picron, faketime_lib, read_events, scale,
                                        slot_of, wait_for)

LEASE = 5               # config lease_seconds (its minimum): renewed every 1.25 s
TICK_EVERY = 1.0        # real seconds between the ticks that watch a run

# Starts picron in the calling namespaces under another host name (argv: host, picron args).
_AS_HOST = ("import os, socket, sys; socket.sethostname(sys.argv[1]);"
            " os.execv(sys.executable, [sys.executable, '-m', 'picron', *sys.argv[2:]])")


@pytest.fixture
def pg_lab(tmp_path, plugin_path):
    """A ``Picron`` on a fresh PostgreSQL schema, with ``lease_seconds = 5``."""
    if not os.environ.get("PICRON_TEST_PG"):
        pytest.skip("set PICRON_TEST_PG=postgresql://... to run the PostgreSQL half (M2, M3)")
    pgserver = pytest.importorskip("tests.pgserver")
    with pgserver.fresh_postgres() as location:
        open_store(location).close()
        config = tmp_path / "picron.toml"
        config.write_text(f"lease_seconds = {LEASE}\n")
        yield Picron(db=location, tmp=tmp_path, plugin_path=plugin_path)


def _env(lab, node, at=None, offset=None):
    env = lab.env(node, at)
    env["PICRON_CONFIG"] = str(lab.tmp / "picron.toml")
    if offset is not None:  # the node's clock runs on, `offset` seconds off the real one
        env.update(LD_PRELOAD=faketime_lib(), FAKETIME=f"{offset:+d}", FAKETIME_NO_CACHE="1")
    return env


def _on_host(host, *args):
    """argv running ``picron ARGS`` as another host: own host name, pids and /proc."""
    unshare = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        unshare.append("--map-root-user")
    return [*unshare, sys.executable, "-c", _AS_HOST, host, *args]


def _runs(lab, task_id):
    store = lab.store()
    try:
        return store.list_runs(task_id, limit=10_000)
    finally:
        store.close()


def _db_now(lab):
    store = lab.store()
    try:
        return store.now()
    finally:
        store.close()


def _lease_until(lab, run_id):
    store = lab.store()
    try:
        return next(r.lease_until for r in store.running_runs() if r.id == run_id)
    finally:
        store.close()


def test_m2_kill_9_recovered_by_another_host(pg_lab, figure):
    """R4 on PostgreSQL: the runner is killed mid-task; ticks of the same node from another
    host (as after a fail-over) record the run interrupted once its lease expired - never
    before - and retry it in that same tick."""
    import subprocess

    lab = pg_lab
    trials = scale(3, 50)
    log = lab.log()
    (task,) = lab.add_tasks({"name": "slow", "interval": "*/5 * * * *",
                             "taskmodule": "slow_once", "options": {"log": log, "sleep": 8}})
    rng = random.Random(2)
    outcomes, waited = [], []
    for trial in range(1, trials + 1):
        slot = T0 + timedelta(minutes=5 * trial)
        runner = subprocess.Popen(lab.argv("run_scheduled", "-c"),
                                  env=_env(lab, "node1", slot + timedelta(seconds=10)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: [e for e in read_events(log) if e["event"] == "start"
                          and slot_of(e["at"]) == slot.isoformat()])
        (run_id,) = [r.id for r in _runs(lab, task.id) if r.status == "running"]
        time.sleep(rng.uniform(0, 3))
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=30)
        killed = time.monotonic()
        lease_until = _lease_until(lab, run_id)
        ticks = []  # (db time before, db time after, exit code, run's status after)
        while not ticks or ticks[-1][3] == "running":
            assert len(ticks) < 60, "never recovered"
            before = _db_now(lab)
            done = subprocess.run(
                _on_host("other-host", "run_scheduled", "-c"), capture_output=True, text=True,
                env=_env(lab, "node1", slot + timedelta(seconds=40 + len(ticks))), timeout=60)
            status = next(r.status for r in _runs(lab, task.id) if r.id == run_id)
            ticks.append((before, _db_now(lab), done.returncode, status))
            if status == "running":
                time.sleep(TICK_EVERY)
        waited.append(time.monotonic() - killed)
        recovering = len(ticks) - 1
        first_expired = next((k for k, t in enumerate(ticks) if t[0] > lease_until), recovering)
        slot_runs = [r.status for r in _runs(lab, task.id) if r.start >= slot]
        outcomes.append((
            ticks[-1][3], {t[2] for t in ticks},
            ticks[-1][1] >= lease_until,        # not before its lease expired ...
            recovering <= first_expired,        # ... and at the first tick after it did
            slot_runs))                         # retried once, by that same tick
    assert outcomes == [("interrupted", {0}, True, True, ["success", "interrupted"])] * trials
    assert [r for r in _runs(lab, task.id) if r.status == "running"] == []
    figure(f"{trials} kills, recovered by another host's tick after the {LEASE} s lease "
           f"expired: {max(waited):.1f} s at most after the kill (lease + {TICK_EVERY:g} s "
           f"ticks), each retried once by that tick, none left running")


def test_m3_clock_skew_interrupts_no_live_run(pg_lab, figure):
    """One node's clock 10 minutes ahead, another's 10 minutes behind, each on its own host,
    both running a task that outlives several leases: neither ever interrupts the other's
    live run; no slot runs twice; ``check`` warns on the skewed nodes only."""
    lab = pg_lab
    seconds = scale(12, 60)
    log = lab.log()
    store = lab.store()
    try:
        task = store.add_task(TaskSpec(
            "long", "0 * * * *", "record", ("ahead", "behind"), timezone="UTC", timeout=120,
            options={"log": log, "sleep": str(seconds), "fail": "false"}),
            store.now() - timedelta(hours=2))  # due on both nodes, whatever their skew
    finally:
        store.close()
    skews = {"ahead": 600, "behind": -600}

    def tick(node):
        return subprocess.Popen(_on_host(f"host-{node}", "run_scheduled", "-c"),
                                env=_env(lab, node, offset=skews[node]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    long_ticks = [tick(node) for node in skews]
    wait_for(lambda: len([r for r in _runs(lab, task.id) if r.status == "running"]) == 2,
             timeout=60)
    watching = 0
    while any(proc.poll() is None for proc in long_ticks):
        for node in skews:
            out, err = tick(node).communicate(timeout=seconds + 120)
            assert err == ""
            watching += 1
        time.sleep(TICK_EVERY / 2)
    assert [proc.wait() for proc in long_ticks] == [0, 0]
    for _ in range(3):  # right after the runs: the slot they ran must not run again
        for node in skews:
            assert tick(node).wait(timeout=seconds + 120) == 0
    runs = _runs(lab, task.id)
    assert [r.status for r in runs if r.status != "success"] == []
    slots = [(r.node, r.start.replace(minute=0, second=0)) for r in runs]
    assert len(slots) == len(set(slots)) and {r.node for r in runs} == set(skews)
    starts = [e for e in read_events(log) if e["event"] == "start"]
    assert len(starts) == len(runs)
    warnings = {}
    for node, offset in {**skews, "exact": None}.items():
        done = subprocess.run(lab.argv("check", "--max-age", "60"), capture_output=True,
                              text=True, env=_env(lab, node, offset=offset), timeout=60)
        warnings[node] = "database server's" in done.stderr
    assert warnings == {"ahead": True, "behind": True, "exact": False}
    figure(f"clocks 10 min ahead and 10 min behind, a {seconds} s task on each node "
           f"({seconds // LEASE}+ leases of {LEASE} s), {watching} ticks while they ran: "
           f"0 live runs interrupted, {len(runs)} runs, no slot twice, check warned on the "
           f"2 skewed nodes only")

