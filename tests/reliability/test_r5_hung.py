"""R5: hung tasks are stopped at their timeout; the next task still runs."""
from __future__ import annotations

from datetime import timedelta

from tests.reliability.conftest import T0, one_line, read_events

TIMEOUT = 2


def test_hung_tasks_are_stopped_at_their_timeout(lab, figure):
    log = lab.log()
    hung = ("hang_sleep", "hang_swallow", "hang_c")
    lab.add_tasks(*({"name": name, "interval": "*/5 * * * *", "taskmodule": name,
                     "ordering": i, "timeout": TIMEOUT, "options": {"log": log}}
                    for i, name in enumerate(hung)),
                  {"name": "normal", "interval": "*/5 * * * *", "taskmodule": "record",
                   "ordering": 9, "options": {"log": log}})
    tick = lab.run("run_scheduled", "-c", at=T0 + timedelta(minutes=5, seconds=10))
    runs = {row[0]: row[1:] for row in lab.query(
        "select task_name, status, duration from run order by id")}
    starts = {e["task"]: e["t"] for e in read_events(log) if e["event"] == "start"}
    order = [*hung, "normal"]
    assert tick.returncode == 1
    assert len(tick.stderr.strip().splitlines()) == 3 and "Traceback" not in tick.stderr
    assert tick.stdout == ""
    assert [runs[name][0] for name in order] == ["timeout"] * 3 + ["success"]
    for name in hung:                        # each stopped <= timeout + 1 s
        assert TIMEOUT <= runs[name][1] <= TIMEOUT + 1, (name, runs[name])
    for name, following in zip(order, order[1:]):   # start to next start: <= timeout + 1 s
        assert starts[following] - starts[name] <= TIMEOUT + 1, (name, starts)
    stopped = starts["hang_c"] + runs["hang_c"][1]
    assert starts["normal"] - stopped <= 1   # the normal task starts <= 1 s later
    assert [line for line in tick.stderr.splitlines() if one_line(line)]
    figure("stopped after " + ", ".join(f"{name} {runs[name][1]:.2f} s" for name in hung)
           + f" (timeout {TIMEOUT} s); the normal task started "
           f"{starts['normal'] - stopped:.2f} s later")
