"""S11-S15: the served web page against other local accounts, connection floods, login
guessing over many addresses; the modes of the files that hold secrets; secret options.

Everything goes over real loopback sockets to a ``picron serve`` subprocess. Addresses of
127.0.0.0/8 other than 127.0.0.1 stand for other clients (Linux routes the whole block to
the loopback interface).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest

from .conftest import api_token, percentile, scale
from .test_security import PASSWORD, _basic, get

# -- S11 -----------------------------------------------------------------------------

# Run as the other account with the system's Python (the test's may live under /root).
_PROBE = r"""
import http.client, json, os, sys
port, token, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
routes = [("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/tasks/1"),
          ("POST", "/api/tasks/1/run"), ("DELETE", "/api/tasks/1"), ("GET", "/api/health"),
          ("GET", "/metrics"), ("GET", "/api/runs"), ("POST", "/api/counters/c/increment"),
          ("GET", "/"), ("GET", "/history"), ("GET", "/tasks/1/edit"), ("POST", "/tasks/1/run"),
          ("POST", "/tasks"), ("GET", "/login?token=" + "x" * 43)]
body = json.dumps({"name": "pwned", "interval": "@daily", "taskmodule": "command",
                   "options": {"command": "touch /tmp/pwned"}}).encode()
answers = []
for method, path in routes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    conn.request(method, path, body=body if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    answers.append([method, path, response.status, response.getheader("Location") or "",
                    response.getheader("Content-Type") or ""])
    conn.close()
readable = []
for directory, _, files in os.walk(root):
    for name in files:
        try:
            with open(os.path.join(directory, name), "rb") as file:
                if token.encode() in file.read():
                    readable.append(name)
        except OSError:
            pass
print(json.dumps({"answers": answers, "readable": readable}))
"""


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as another local account")
def test_s11_another_local_account_gets_nothing(lab, serve, figure):
    (task,) = lab.add_tasks({"name": "mine", "interval": "@daily", "taskmodule": "record",
                             "options": {"log": lab.log()}})
    served = serve()
    token = served.auth.removeprefix("Bearer ")
    before = lab.query("select count(*) from task"), lab.query("select count(*) from run")
    done = _as_nobody("/usr/bin/python3", "-c", _PROBE, str(served.port), token,
                      str(lab.tmp))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for method, path, status, location, content_type in result["answers"]:
        if path.startswith(("/api/", "/metrics")):
            assert status == 401 and content_type == "application/json", (method, path, status)
        elif path.startswith("/login"):
            assert status == 401 and content_type.startswith("text/html"), (path, status)
        else:
            assert status == 303 and location.startswith("/login"), (method, path, status)
    after = lab.query("select count(*) from task"), lab.query("select count(*) from run")
    assert after == before and task.id
    assert result["readable"] == []      # the token is in no file that account can read
    assert not os.path.exists("/tmp/pwned")
    # and the owner of the database is served
    assert served.request("GET", "/api/tasks")[0] == 200
    figure(f"{len(result['answers'])} routes as nobody: all 401 or the login page; "
           f"nothing created or run; token readable in {len(result['readable'])} files")


# -- S12 -----------------------------------------------------------------------------

FLOOD = 300
FLOOD_SECONDS = scale(6, 60)
# The flood runs in its own process, so that its work never delays the measured client.
_FLOOD = r"""
import select, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
conns, opened, deadline = [], 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    while len(conns) < count:
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                  source_address=("127.0.4.1", 0)))
            opened += 1
        except OSError:
            time.sleep(0.01)
    readable, _, _ = select.select(conns, [], [], 0.05)
    for sock in readable:  # closed (or answered) by the server: open another
        conns.remove(sock)
        sock.close()
print(opened)
"""


def test_s12_one_address_cannot_starve_the_others(serve, figure):
    served = serve()
    flood = subprocess.Popen([sys.executable, "-c", _FLOOD, str(served.port), str(FLOOD),
                              str(FLOOD_SECONDS)], stdout=subprocess.PIPE, text=True)
    latencies, errors = [], []
    while flood.poll() is None:
        started = time.monotonic()
        try:
            status, _, _ = served.request("GET", "/api/tasks", timeout=30)
            latencies.append(time.monotonic() - started)
            if status != 200:
                errors.append(status)
        except OSError as error:
            errors.append(repr(error))
        time.sleep(0.05)
    opened = int(flood.communicate(timeout=60)[0] or 0)
    p99 = percentile(latencies, 99)
    assert errors == [] and latencies            # the normal client: 100 % served
    assert opened > FLOOD                        # the flood did re-open what was closed
    assert p99 <= 0.5
    figure(f"{opened} connections opened by one address; the normal client "
           f"{len(latencies)}/{len(latencies)} served, p99 {p99 * 1000:.0f} ms")


# -- S13 -----------------------------------------------------------------------------


def test_s13_guessing_from_many_addresses_is_limited_without_lockout(lab, serve, figure):
    served = serve(password=PASSWORD)
    answers: list[tuple[float, int]] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        status = get(served.port, "/api/tasks", extra=_basic("admin", f"wrong{i}"),
                     source=f"127.0.1.{i % 30 + 1}", timeout=120)[0]
        with lock:
            answers.append((time.monotonic(), status))

    started = time.monotonic()
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(120)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    wrong = sorted(at for at, status in answers if status == 401)
    busiest = max(sum(1 for other in wrong if at <= other < at + 60) for at in wrong)
    assert len(answers) == 120 and {status for _, status in answers} <= {401, 429}
    assert busiest <= 30                     # wrong guesses answered in any minute
    status = get(served.port, "/api/tasks", extra=_basic("admin", PASSWORD),
                 source="127.0.1.200")[0]
    assert status == 200                     # the right password from a fresh address
    figure(f"120 wrong logins from 30 addresses in {time.monotonic() - started:.1f} s: "
           f"{len(wrong)} answered 401 (at most {busiest} in a minute), the rest 429; "
           f"the correct password from a fresh address: {status}")


# -- S14 -----------------------------------------------------------------------------


def _modes_while_written(path: str, write) -> set[int]:
    """Every mode ``path`` had while ``write()`` ran (polled as fast as possible)."""
    modes, done = set(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                modes.add(stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write()
    finally:
        done.set()
        watcher.join()
    modes.add(stat.S_IMODE(os.stat(path).st_mode))
    return modes


def test_s14_the_token_is_only_in_the_0600_database(lab, figure):
    old = os.umask(0o022)
    try:
        token = api_token(lab)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(lab.db).st_mode) == 0o600
    for name in os.listdir(lab.tmp):         # no other file of picron's holds it
        path = os.path.join(lab.tmp, name)
        if os.path.isfile(path) and not path.startswith(lab.db):
            with open(path, "rb") as file:
                assert token.encode() not in file.read(), name
    figure("the API token lives only in the database, mode 0600")


@pytest.mark.parametrize("command", ["backup", "export"])
def test_s14_backup_and_export_are_0600_from_creation(lab, command):
    lab.add_tasks(*({"name": f"t{i}", "interval": "@daily", "taskmodule": "record",
                     "options": {"log": "x" * 1000}} for i in range(200)))
    target = str(lab.tmp / f"{command}.out")
    old = os.umask(0o022)
    try:
        modes = _modes_while_written(target, lambda: lab.run(command, target))
    finally:
        os.umask(old)
    assert modes == {0o600}, sorted(oct(m) for m in modes)


# -- S15 -----------------------------------------------------------------------------


def test_s15_secret_options_are_never_shown_back(lab, serve, figure):
    import http.server
    import re

    seen = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            seen.append((self.headers.get("X-Api-Key"), self.headers.get("Authorization")))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(500)  # a failure: the run's message shows the most
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"nope")

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    secrets = ("hunter2-key", "pa55word")
    url = f"http://ada:pa55word@127.0.0.1:{hook.server_address[1]}/hook"
    served = serve()
    try:
        status, _, data = served.request("POST", "/api/tasks", body={
            "name": "hook", "interval": "@daily", "taskmodule": "http",
            "options": {"url": url, "method": "POST", "body": "{}",
                        "headers": "X-Api-Key: hunter2-key"}})
        assert status == 201, data
        task = json.loads(data)
        status, _, data = served.request("POST", f"/api/tasks/{task['id']}/run", body={})
        run_id = json.loads(data)["id"]
        deadline = time.monotonic() + 60
        while json.loads(served.request("GET", f"/api/runs/{run_id}")[2])["status"] == "running":
            assert time.monotonic() < deadline, "the run never finished"
            time.sleep(0.1)
        assert seen and seen[0][0] == "hunter2-key"        # it was sent
        shown = {"API list": served.request("GET", "/api/tasks")[2],
                 "API task": served.request("GET", f"/api/tasks/{task['id']}")[2],
                 "API runs": served.request("GET", "/api/runs")[2],
                 "page list": served.request("GET", "/")[2],
                 "page edit": served.request("GET", f"/tasks/{task['id']}/edit")[2],
                 "page history": served.request("GET", "/history")[2]}
        for argv in (["list"], ["list", "--json"], ["task", "show", "hook"], ["export"],
                     ["history"]):
            done = lab.run(*argv)
            assert done.returncode == 0, done.stderr
            shown[" ".join(argv)] = (done.stdout + done.stderr).encode()
        task_shown = json.loads(shown["API task"])
        status, _, data = served.request("PUT", f"/api/tasks/{task['id']}",
                                         body={**task_shown, "ordering": 4})
        assert status == 200
    finally:
        hook.shutdown()
        hook.server_close()
    shown["server log"] = served.log.read_bytes()
    leaks = [where for where, value in shown.items()
             if any(secret.encode() in value for secret in secrets)]
    assert leaks == []
    assert lab.run("export", "--secrets").stdout.count("hunter2-key") == 1
    options = dict(lab.query("select key, value from task_option"))
    assert options["headers"] == "X-Api-Key: hunter2-key" and options["url"] == url
    assert re.search(r"\*{8}", shown["API task"].decode())
    figure(f"secrets in 0 of {len(shown)} outputs (API, pages, CLI, export, run messages, "
           "server log); a PUT of the placeholders kept both")
