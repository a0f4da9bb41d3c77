"""R6: due tasks run in (ordering, id) order; failures don't stop the others."""
from __future__ import annotations

from datetime import timedelta

from tests.reliability.conftest import T0, read_events


def test_run_order_and_failures(lab):
    log = lab.log()
    orderings = (3, 1, 2, 1, 0)
    failing = {"t1", "t4"}
    tasks = lab.add_tasks(*({"name": f"t{i}", "interval": "*/5 * * * *", "ordering": k,
                             "taskmodule": "record",
                             "options": {"log": log, "fail": f"t{i}" in failing}}
                            for i, k in enumerate(orderings)))
    tick = lab.run("run_scheduled", "-c", at=T0 + timedelta(minutes=5, seconds=10))
    ran = [e["task"] for e in read_events(log) if e["event"] == "start"]
    expected = [t.name for t in sorted(tasks, key=lambda t: (t.ordering, t.id))]
    statuses = dict(lab.query("select task_name, status from run"))
    assert ran == expected == ["t4", "t1", "t3", "t2", "t0"]
    assert statuses == {name: "failed" if name in failing else "success" for name in expected}
    assert tick.returncode == 1
    assert tick.stdout == ""
    assert len(tick.stderr.splitlines()) == 2 and "Traceback" not in tick.stderr


def test_without_cron_flag_it_tells_what_it_runs(lab):
    lab.add_tasks({"name": "ok", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": lab.log()}})
    tick = lab.run("run_scheduled", at=T0 + timedelta(minutes=5, seconds=10))
    assert tick.returncode == 0
    assert "ok" in tick.stdout and tick.stderr == ""
