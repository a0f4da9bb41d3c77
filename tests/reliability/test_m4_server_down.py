"""M4: the PostgreSQL server stops in the middle of a tick and of a web request, then returns.

The test starts its own throwaway server (``tests/pgserver.sh``) so that stopping it cannot
disturb the rest of the suite; it runs where ``$PICRON_TEST_PG`` is set (CI).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.pgserver import require_postgres
from tests.reliability.conftest import (T0, free_port, one_line, read_events, scale,
                                        wait_for)

SCRIPT = str(Path(__file__).parents[1] / "pgserver.sh")
DOWN_SECONDS = scale(3, 30)


class Server:
    """A private PostgreSQL server that can be halted and resumed."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="picron-m4-")
        self.url = subprocess.run([SCRIPT, "start", self.dir, str(free_port())], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def halt(self) -> None:
        subprocess.run([SCRIPT, "halt", self.dir], check=True, capture_output=True)

    def resume(self) -> None:
        subprocess.run([SCRIPT, "resume", self.dir], check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run([SCRIPT, "stop", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server():
    require_postgres()
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    started = Server()
    yield started
    started.remove()


def test_m4_server_stopped_mid_tick_and_mid_request(lab, serve, server, figure):
    lab.db = server.url
    log = lab.log()
    lab.add_tasks({"name": "long", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": log, "sleep": 2}},
                  {"name": "short", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": log}})
    served = serve()
    assert served.request("GET", "/api/tasks")[0] == 200

    # A tick runs 'long' (2 s); the server goes away while it runs.
    slot = T0 + timedelta(minutes=5, seconds=10)
    tick = lab.spawn("run_scheduled", "-c", at=slot)
    wait_for(lambda: any(e["event"] == "start" for e in read_events(log)))
    server.halt()
    halted = time.monotonic()
    out, err = tick.communicate(timeout=120)
    assert (tick.returncode, out) == (3, "") and one_line(err), err
    assert str(server.url.split("@")[1].split("/")[0]) in err          # names the server
    during = lab.run("run_scheduled", "-c", at=slot + timedelta(seconds=20))
    assert during.returncode == 3 and one_line(during.stderr), during.stderr
    status, _, body = served.request("GET", "/api/tasks")
    assert status == 503 and json.loads(body)["error"]["code"]
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - halted)))
    server.resume()

    status, _, body = served.request("GET", "/api/tasks")
    assert status == 200 and len(json.loads(body)) == 2              # web: normal again
    after = slot + timedelta(minutes=1)
    for tick_at in (after, after + timedelta(minutes=1)):  # recovery, then the retry
        done = lab.run("run_scheduled", "-c", at=tick_at)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    runs = lab.query("select task_name, status from run order by id")
    assert "running" not in {status for _, status in runs}             # none left running
    starts = Counter(e["task"] for e in read_events(log) if e["event"] == "start")
    successes = Counter(name for name, status in runs if status == "success")
    assert successes == {"long": 1, "short": 1}                        # nothing lost ...
    assert starts["short"] == 1 and starts["long"] <= 2                # ... or doubled
    if starts["long"] == 2:  # its result was lost with the server: recovered and retried
        assert [s for n, s in runs if n == "long"] == ["interrupted", "success"]
    again = lab.run("run_scheduled", "-c", at=after + timedelta(minutes=2))
    assert again.returncode == 0 and lab.query("select count(*) from run")[0][0] == len(runs)
    figure(f"server down {DOWN_SECONDS} s mid-tick and mid-request: tick exit 3 in one line, "
           f"web 503 then 200; after restart {dict(successes)} successes, runs "
           f"{[s for _, s in runs]}")
