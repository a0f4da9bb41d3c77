"""R4: ``kill -9`` of the runner in the middle of a 5 s task loses nothing."""
from __future__ import annotations

import random
import signal
import sqlite3
import time
from datetime import timedelta

from tests.reliability.conftest import T0, read_events, scale, slot_of, wait_for

TRIALS = scale(3, 100)
TASK_SECONDS = 5


def test_kill_9_mid_task_is_recovered(lab, figure):
    log = lab.log()
    (task,) = lab.add_tasks({"name": "slow", "interval": "*/5 * * * *",
                             "taskmodule": "slow_once",
                             "options": {"log": log, "sleep": TASK_SECONDS}})
    rng = random.Random(4)
    outcomes = []
    for trial in range(1, TRIALS + 1):
        slot = T0 + timedelta(minutes=5 * trial)
        runner = lab.spawn("run_scheduled", "-c", at=slot + timedelta(seconds=10))
        child = wait_for(lambda: _started(log, slot))     # the task is running ...
        run_id = _running(lab)
        time.sleep(rng.uniform(0, TASK_SECONDS - 0.2))   # ... kill at a random moment of it
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=30)
        wait_for(lambda: not _alive(child), timeout=5)   # the task died with its runner
        conn = sqlite3.connect(lab.db)
        integrity = conn.execute("pragma integrity_check").fetchone()[0]
        conn.close()
        after = lab.run("run_scheduled", "-c", at=slot + timedelta(seconds=40))
        again = lab.run("run_scheduled", "-c", at=slot + timedelta(seconds=70))
        status = lab.query("select status from run where id = ?", (run_id,))[0][0]
        running = lab.query("select count(*) from run where status = 'running'")[0][0]
        tries = sum(1 for e in read_events(log)
                    if e["event"] == "start" and slot_of(e["at"]) == slot.isoformat())
        outcomes.append((integrity, after.returncode, again.returncode, status, running, tries))
    assert outcomes == [("ok", 0, 0, "interrupted", 0, 2)] * TRIALS
    assert lab.query("select count(*) from run where task_id = ? and status = 'success'",
                     (task.id,))[0][0] == TRIALS
    figure(f"{TRIALS}/{TRIALS} trials: integrity ok, run interrupted after the next tick, "
           f"none left running, retried exactly once")


def _running(lab):
    rows = lab.query("select id from run where status = 'running'")
    return rows[0][0] if rows else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def _started(log: str, slot) -> int | None:
    pids = [e["pid"] for e in read_events(log)
            if e["event"] == "start" and slot_of(e["at"]) == slot.isoformat()]
    return pids[0] if pids else None
