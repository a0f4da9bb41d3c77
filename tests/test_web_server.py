"""The HTTP server on real loopback sockets: limits, timeouts, the thread cap, shutdown."""
from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from picron.webapp.login import TOKEN_SETTING
from picron.cli import main
from picron.errors import ValidationError
from picron.webapp.site import Site
from picron.web import Scheduler, Server, is_loopback, parse_listen
from tests.webclient import TASK, snapshot
from tests.webfixtures import db, web_app  # noqa: F401 - fixtures

TOKEN = "t" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEAD = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer " \
    + TOKEN.encode() + b"\r\n"


@pytest.fixture(autouse=True)
def known_token(web_app):
    """The API token the requests here send (``picron serve`` would have created one)."""
    store = web_app.open_store()
    store.set_setting(TOKEN_SETTING, TOKEN)
    store.close()


def start(site, **limits) -> Server:
    server = Server(("127.0.0.1", 0), site, **limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server(web_app):
    server = start(Site(web_app, failed_login_delay=0), request_timeout=1.0)
    yield server
    server.shutdown()
    server.server_close()


def raw(server: Server, data: bytes, wait: float = 10.0) -> tuple[int, bytes]:
    """Send bytes, read until the server closes; returns (status, whole answer)."""
    with socket.create_connection(("127.0.0.1", server.server_port)) as sock:
        sock.settimeout(wait)
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may refuse before reading everything
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return (int(match.group(1)) if match else 0), answer


def request(server: Server, method: str, path: str, body: object = None,
            headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                    **AUTH, **(headers or {})})
    return conn.getresponse()


def test_serves_json_with_a_plain_server_header(server):
    response = request(server, "GET", "/api/tasks")
    assert response.status == 200 and json.loads(response.read()) == []
    assert response.getheader("Server") == "picron"
    assert response.getheader("X-Frame-Options") == "DENY"


def test_create_over_the_socket_then_keep_alive(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    conn.request("POST", "/api/tasks", body=json.dumps(TASK),
                 headers={"Content-Type": "application/json", **AUTH})
    created = conn.getresponse()
    assert created.status == 201 and json.loads(created.read())["name"] == "ping"
    conn.request("GET", "/api/tasks/1", headers=AUTH)  # the same connection
    again = conn.getresponse()
    assert again.status == 200 and json.loads(again.read())["id"] == 1


def test_head_sends_no_body(server):
    status, answer = raw(server, b"HEAD /api/tasks HTTP/1.1\r\n" + HEAD
                         + b"Connection: close\r\n\r\n")
    assert status == 200
    assert answer.endswith(b"\r\n\r\n") and b"Content-Length: 2\r\n" in answer


def test_405_with_allow_over_the_socket(server):
    status, answer = raw(server, b"DELETE /api/tasks HTTP/1.1\r\n" + HEAD
                         + b"Connection: close\r\n\r\n")
    assert status == 405 and b"Allow: GET, POST, HEAD\r\n" in answer


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("name, data, expected", [
    ("length 10^12", b"Content-Length: 1000000000000\r\n\r\n", (413,)),
    ("length -1", b"Content-Length: -1\r\n\r\n", (400,)),
    ("length abc", b"Content-Length: abc\r\n\r\n", (400,)),
    ("two lengths", b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", (400,)),
    ("missing length", b"\r\n", (411,)),
    ("2 MiB body", b"Content-Length: 2097152\r\n\r\n" + b"x" * 2097152, (413,)),
    ("chunked", b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", (411, 501)),
    ("70,000-byte header", b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", (431,)),
    ("101 headers", b"".join(b"X-H%d: 1\r\n" % i for i in range(101)) + b"\r\n", (431,)),
    ("nested 100,000 deep", b"Content-Length: %d\r\n\r\n" % len(DEEP) + DEEP, (400,)),
    ("short body", b"Content-Length: 10\r\n\r\n{}", (400, 0)),
])
def test_bad_requests_get_4xx_never_500(server, db, name, data, expected):
    before = snapshot(db)
    status, answer = raw(server, b"POST /api/tasks HTTP/1.1\r\n" + HEAD + data)
    assert status in expected, (name, answer[:300])
    assert snapshot(db) == before
    assert request(server, "GET", "/api/tasks").status == 200  # the server lives on


def test_long_request_line_and_bad_syntax(server):
    assert raw(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + HEAD + b"\r\n")[0] == 414
    assert raw(server, b"TRACE / HTTP/1.1\r\n" + HEAD + b"\r\n")[0] == 501
    assert raw(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")[0] == 400
    assert raw(server, b"GET http://evil.com/ HTTP/1.1\r\n" + HEAD + b"\r\n")[0] == 400
    status, answer = raw(server, b"GET /static/..%2f..%2fpicron.db HTTP/1.1\r\n" + HEAD
                         + b"Connection: close\r\n\r\n")
    assert status == 404 and b"SQLite" not in answer


def test_crlf_in_the_path_never_reaches_a_header(server):
    status, answer = raw(server, b"GET /login?next=/%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\n"
                         + HEAD + b"Connection: close\r\n\r\n")
    assert status == 303
    assert b"\r\nSet-Cookie: x=1" not in answer


def test_a_slow_client_is_cut_off_and_blocks_nobody(server):
    slow = socket.create_connection(("127.0.0.1", server.server_port))
    slow.settimeout(10)
    slow.sendall(b"GET /api/tasks HTTP/1.1\r\n")
    opened = time.monotonic()
    closed_after = None
    while closed_after is None and time.monotonic() - opened < 8:
        assert request(server, "GET", "/api/tasks").status == 200  # others are served
        try:
            slow.sendall(b"X")  # one header byte at a time: each read is quick
            slow.settimeout(0.2)
            if slow.recv(1024) == b"":
                closed_after = time.monotonic() - opened
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - opened
    slow.close()
    assert closed_after is not None and closed_after < 5  # request_timeout is 1 s here


def test_connection_threads_are_capped(web_app):
    server = start(Site(web_app, failed_login_delay=0), request_timeout=2.0, max_connections=2)
    idle = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(2)]
    try:
        time.sleep(0.2)  # let the server accept both
        status, answer = raw(server, b"GET /api/tasks HTTP/1.1\r\n" + HEAD + b"\r\n")
        assert status == 503 and b"X-Frame-Options: DENY" in answer
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while raw(server, b"GET /api/tasks HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n")[0] \
            != 200:
        assert time.monotonic() < deadline, "slots were never released"
        time.sleep(0.1)
    server.shutdown()
    server.server_close()


def test_ipv6_loopback(web_app):
    try:
        server = Server(("::1", 0), Site(web_app, listen_host="::1"))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("::1", server.server_port, timeout=10)
        conn.request("GET", "/api/nodes", headers=AUTH)
        assert conn.getresponse().status == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("text, expected", [("127.0.0.1:8080", ("127.0.0.1", 8080)),
                                            ("[::1]:8080", ("::1", 8080)),
                                            ("localhost:0", ("localhost", 0)),
                                            ("0.0.0.0:80", ("0.0.0.0", 80))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "127.0.0.1", ":8080", "::1:8080", "a:99999",
                                  "a b:1", "[::1]8080", ""])
def test_parse_listen_refuses_bad_addresses(text):
    with pytest.raises(ValidationError) as error:
        parse_listen(text)
    assert error.value.field == "listen"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.1.2.3", True),
                                            ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.2", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "192.0.2.1:80",
                                    "myhost.example:8080"])
def test_serve_refuses_other_addresses_without_password(db_path, capsys, listen):
    assert main(["serve", "--listen", listen]) == 2
    message = capsys.readouterr().err
    assert listen in message and "picron passwd" in message
    assert message.count("\n") == 1


def test_in_server_scheduler_runs_due_tasks_and_stops(web_app, clock):
    store = web_app.open_store()
    store.add_task(web_app.parse_task(TASK), clock())
    clock.advance(minutes=10)
    stop = threading.Event()
    scheduler = Scheduler(web_app, stop, period=0.05)
    scheduler.start()
    deadline = time.monotonic() + 20
    while not store.list_runs():
        assert time.monotonic() < deadline, "the scheduler never ran the due task"
        time.sleep(0.05)
    stop.set()
    scheduler.join(10)
    assert not scheduler.is_alive()
    runs = store.list_runs()
    assert [(r.trigger, r.status) for r in runs] == [("scheduled", "success")]
    assert store.last_tick("node1") == clock()


# -- the real command in a subprocess ------------------------------------------------------


def _serve(tmp_path, *extra: str):
    env = {**os.environ, "PICRON_DB": str(tmp_path / "picron.db"), "PICRON_NODE": "node1"}
    env.pop("PICRON_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "picron", "serve", "--listen",
                             "127.0.0.1:0", *extra], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    while True:  # the login link follows the "serving on" line
        line = lines.get(timeout=20).decode()
        match = re.search(r"log in with http://127\.0\.0\.1:(\d+)/login\?token=(\S+)", line)
        if match:
            return proc, int(match.group(1)), lines, match.group(2)


def _drain(lines: queue.Queue) -> str:
    """The rest of the server's stderr (it has exited, so the reader thread ends soon)."""
    time.sleep(0.2)
    text = []
    while not lines.empty():
        text.append(lines.get().decode())
    return "".join(text)


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(tmp_path):
    proc, port, lines, token = _serve(tmp_path)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /api/counters/c/increment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.3)  # the server is now reading the body: a request in flight
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(b'{"by": 41}')
        answer = b"".join(iter(lambda: sock.recv(65536), b""))  # until the server closes
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'{"name": "c", "value": 41}' in answer and b"Connection: close" in answer
        assert proc.wait(timeout=10) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        proc.kill()
        proc.wait()
    log = _drain(lines)
    assert "Traceback" not in log and "stopped" in log


def test_sigterm_stops_the_server_with_its_scheduler(tmp_path):
    proc, port, lines, token = _serve(tmp_path, "--scheduler")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/health", headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status in (200, 503)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    log = _drain(lines)
    assert "Traceback" not in log and re.search(r'"GET /api/health" (200|503) ', log)


def test_one_escaped_log_line_per_request(server, caplog):
    caplog.set_level("INFO", logger="picron.web")
    raw(server, b"GET /a\x1bb\x7f?x=%0d%0a HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n")
    lines = [record.getMessage() for record in caplog.records if record.name == "picron.web"]
    assert len(lines) == 1
    assert "\x1b" not in lines[0] and "\\x1b" in lines[0] and " 404 " in lines[0]
    assert "\n" not in lines[0] and "\r" not in lines[0]


def test_one_address_holds_at_most_its_share_of_connections(web_app):
    server = start(Site(web_app, failed_login_delay=0), request_timeout=5.0, max_per_client=3)
    held = [socket.create_connection(("127.0.0.1", server.server_port),
                                     source_address=("127.0.0.2", 0)) for _ in range(3)]
    try:
        extra = socket.create_connection(("127.0.0.1", server.server_port),
                                         source_address=("127.0.0.2", 0))
        extra.settimeout(5)
        assert extra.recv(100) == b""  # closed at once, not queued
        extra.close()
        # another address is served meanwhile
        assert raw(server, b"GET /api/tasks HTTP/1.1\r\n" + HEAD
                   + b"Connection: close\r\n\r\n")[0] == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # its connections closed: the address may connect again
        with socket.create_connection(("127.0.0.1", server.server_port),
                                      source_address=("127.0.0.2", 0)) as sock:
            sock.settimeout(5)
            sock.sendall(b"GET /api/tasks HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n")
            if sock.recv(100).startswith(b"HTTP/1.1 200 "):
                break
        assert time.monotonic() < deadline, "the address never got its connections back"
        time.sleep(0.1)
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("line, status", [(b"GARBAGE", 400), (b"GET / HTTP/2.0", 505),
                                          (b"GET /", 400), (b"GET / HTTP/1.1 extra", 400)])
def test_a_bad_request_line_gets_a_status_line_and_headers(server, line, status):
    code, answer = raw(server, line + b"\r\n" + HEAD + b"\r\n")
    assert code == status, answer[:200]
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert b"X-Frame-Options: DENY" in head and b"Content-Length: " in head


def test_a_too_long_api_request_line_is_414_in_json(server):
    code, answer = raw(server, b"GET /api/tasks?" + b"a" * 70_000 + b" HTTP/1.1\r\n" + HEAD
                       + b"\r\n")
    assert code == 414
    assert b"Content-Type: application/json" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"]


def test_expect_100_continue_with_an_oversized_body_is_413_without_continue(server):
    code, answer = raw(server, b"POST /api/tasks HTTP/1.1\r\n" + HEAD
                       + b"Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
    assert code == 413 and b"100 Continue" not in answer
    with socket.create_connection(("127.0.0.1", server.server_port)) as sock:  # a fitting one
        sock.settimeout(10)
        sock.sendall(b"POST /api/counters/c/increment HTTP/1.1\r\n" + HEAD
                     + b"Expect: 100-continue\r\nContent-Length: 9\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b'{"by": 2}')
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")


def test_the_login_link_token_is_masked_in_the_request_log(server, caplog):
    caplog.set_level("INFO", logger="picron.web")
    raw(server, b"GET /login?token=" + TOKEN.encode() + b"&next=/ HTTP/1.1\r\n" + HEAD
        + b"Connection: close\r\n\r\n")
    lines = [record.getMessage() for record in caplog.records if record.name == "picron.web"]
    assert len(lines) == 1 and TOKEN not in lines[0] and "token=********" in lines[0]
