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


PROGRAM_SECONDS = 2
PROGRAM_TRIALS = scale(10, 100)


def test_kill_9_while_the_task_runs_a_program(lab, figure):
    """R4 with a ``command`` task: the programs it started outlive the killed runner unless
    recovery stops them, and a retry beside them would run the work twice at once."""
    work = lab.tmp / "work"
    lock = lab.tmp / "lock"
    # "overlap" when the previous copy still runs (a zombie does not: nothing may reap it)
    script = (f"p=$(cat {lock} 2>/dev/null); if [ -n \"$p\" ] && [ -r /proc/$p/stat ] &&"
              f" read -r _ _ state _ < /proc/$p/stat && [ $state != Z ];"
              f" then echo overlap $$ >> {work}; fi; echo $$ > {lock};"
              f" echo start $$ >> {work}; sleep {PROGRAM_SECONDS}; echo done $$ >> {work}")
    added = lab.run("task", "add", "--name", "program", "--interval", "*/5 * * * *",
                    "--module", "command", "--option", f"command=sh -c '{script}'", at=T0)
    assert added.returncode == 0, added.stderr
    rng = random.Random(44)
    outcomes, kept_running = [], 0
    for trial in range(1, PROGRAM_TRIALS + 1):
        slot = T0 + timedelta(minutes=5 * trial)
        seen = len(_lines(work))
        runner = lab.spawn("run_scheduled", "-c", at=slot + timedelta(seconds=10))
        shell = int(wait_for(lambda: _lines(work)[seen:])[0].split()[1])
        run_id = _running(lab)
        time.sleep(rng.uniform(0, PROGRAM_SECONDS - 0.3))
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=30)
        kept_running += _alive(shell)
        after = lab.run("run_scheduled", "-c", at=slot + timedelta(seconds=40))
        in_tick = _lines(work)[seen:]
        wait_for(lambda: not _alive(shell), timeout=PROGRAM_SECONDS + 10)
        lines = _lines(work)[seen:]
        retry = next((line.split()[1] for line in lines[1:] if line.startswith("start")), "-")
        expected = [f"start {shell}", f"start {retry}", f"done {retry}"]
        finished = f"done {shell}"  # the interrupted copy may only end before the retry
        status = lab.query("select status from run where id = ?", (run_id,))[0][0]
        running = lab.query("select count(*) from run where status = 'running'")[0][0]
        successes = lab.query("select count(*) from run where status = 'success' and"
                              " start_at >= ?", (slot.isoformat(),))[0][0]
        outcomes.append((
            after.returncode, status, running, successes,
            # retried (to its end) by the very tick that recovered it
            [line for line in in_tick if line != finished] == expected,
            # never two copies at once: no "overlap" line, no end of the old after the new
            [line for line in lines if line != finished] == expected
            and lines.index(finished) == 1 if finished in lines else lines == expected))
    assert outcomes == [(0, "interrupted", 0, 1, True, True)] * PROGRAM_TRIALS
    figure(f"{PROGRAM_TRIALS}/{PROGRAM_TRIALS} kills of a runner during a {PROGRAM_SECONDS} s "
           f"program ({kept_running} left the program running): interrupted, its program "
           f"stopped, retried once by the recovering tick, never two copies at once")


def _lines(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
