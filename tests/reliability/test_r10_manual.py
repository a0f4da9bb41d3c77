"""R10: ``run_manually`` while the scheduled run of the same task is running is refused."""
from __future__ import annotations

from datetime import timedelta

from tests.reliability.conftest import T0, read_events, wait_for


def test_manual_run_refused_while_scheduled_run_is_running(lab):
    log = lab.log()
    lab.add_tasks({"name": "busy", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": log, "sleep": 3}})
    at = T0 + timedelta(minutes=5, seconds=10)
    tick = lab.spawn("run_scheduled", "-c", at=at)
    wait_for(lambda: read_events(log))
    manual = lab.run("run_manually", "-t", "busy", at=at + timedelta(seconds=1))
    tick.communicate(timeout=60)
    assert manual.returncode == 1
    assert manual.stderr.strip().splitlines() == [
        "picron: error: task 'busy' is already running on node node1; not started again"]
    assert manual.stdout == ""
    assert tick.returncode == 0
    assert [e["event"] for e in read_events(log)] == ["start", "end"]
    assert lab.query("select trigger, status from run") == [("scheduled", "success")]
