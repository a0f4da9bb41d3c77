"""S1-S10: the served web page against hostile hosts, logins, sessions, forgeries and payloads.

Everything goes over real sockets to a ``picron serve`` subprocess, except the session
idle timeout, which needs 30 minutes to pass: it uses the in-process ``Site`` with an
injected clock (tests/webfixtures.py).
"""
from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import threading
import time
from urllib.parse import urlencode

import pytest

from tests.conftest import dump
from tests.webclient import call, cookie_value
from tests.webfixtures import db, site, web_app  # noqa: F401 - fixtures

from .conftest import T0, api_token, one_line

PASSWORD = "correct horse battery"


def raw(port: int, data: bytes, timeout: float = 15,
        source: str | None = None) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the whole answer (the server closes or we parse one response).

    ``source`` is the client's loopback address (127.0.0.0/8: each a separate client).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        sock.sendall(data)
        chunks = b""
        while b"\r\n\r\n" not in chunks:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks += chunk
        head, _, rest = chunks.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers.get("content-length", ["0"])[0])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(lines[0].split()[1]), headers, rest


def get(port: int, path: str, host: str | None = "", extra: str = "",
        method: str = "GET", body: bytes = b"", source: str | None = None,
        timeout: float = 15) -> tuple[int, dict, bytes]:
    host = host if host != "" else f"127.0.0.1:{port}"
    host_line = f"Host: {host}\r\n" if host is not None else ""
    length = f"Content-Length: {len(body)}\r\n" if method != "GET" else ""
    return raw(port, f"{method} {path} HTTP/1.1\r\n{host_line}{length}{extra}"
                     f"Connection: close\r\n\r\n".encode() + body, timeout, source)


# -- S1 ------------------------------------------------------------------------------


def _listening(pid: int) -> list[str]:
    """Local addresses of the LISTEN sockets of process ``pid`` (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as file:
            for line in list(file)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    found.append(fields[1])
    return found


def test_s1_loopback_only_without_password(lab, serve):
    from picron.config import load_config

    assert load_config(env={"PICRON_NODE": "n"}).listen == "127.0.0.1:8080"
    served = serve()
    addresses = _listening(served.proc.pid)
    assert addresses and all(a.startswith(("0100007F:", "00000000000000000000000001000000:"))
                             for a in addresses), addresses
    for listen in ("0.0.0.0:18999", "[::]:18999", "example.com:18999"):
        refused = lab.run("serve", "--listen", listen, timeout=30)
        assert refused.returncode == 2
        assert one_line(refused.stderr) and "refusing to listen" in refused.stderr


# -- S2 ------------------------------------------------------------------------------

ROUTES = [("GET", "/"), ("GET", "/api/tasks"), ("GET", "/login"), ("GET", "/api/health"),
          ("GET", "/static/app.css"), ("POST", "/api/tasks"), ("GET", "/nowhere")]


def test_s2_host_header_allowlist(serve):
    served = serve()
    for method, path in ROUTES:
        for host in ("evil.example", "127.0.0.1.nip.io", None, f"evil.example:{served.port}"):
            status, _, _ = get(served.port, path, host, method=method,
                               extra="Content-Type: application/json\r\n", body=b"{}")
            assert status == 400, (method, path, host, status)
    for host in ("localhost", "127.0.0.1", "[::1]"):
        for value in (host, f"{host}:{served.port}"):
            assert get(served.port, "/api/tasks", value, extra=_auth(served))[0] == 200, value


def _auth(served) -> str:
    """The header line of the server's credential (the API token, or Basic)."""
    return f"Authorization: {served.auth}\r\n"


# -- S3 ------------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    import base64

    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() \
        + "\r\n"


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as file:
        return int(next(line.split()[1] for line in file if line.startswith("VmRSS:")))


def test_s3_password_storage_and_guessing(lab, serve, figure):
    served = serve(password=PASSWORD)
    assert get(served.port, "/api/tasks", extra=_basic("admin", PASSWORD))[0] == 200
    stored = lab.query("select value from setting")
    database = "\n".join(dump(lab.db))
    assert PASSWORD not in database and "scrypt" in database
    assert any(re.search(r"scrypt", value) for (value,) in stored)
    answers, durations = set(), []
    for user, password in [("admin", "wrong"), ("root", PASSWORD), ("admin", ""),
                           ("nobody", "x")]:
        started = time.monotonic()
        status, headers, body = get(served.port, "/api/tasks", extra=_basic(user, password))
        durations.append(time.monotonic() - started)
        answers.add((status, body))
    assert len(answers) == 1 and next(iter(answers))[0] == 401   # the same answer for all
    assert min(durations) >= 0.3                                 # slowed down
    statuses = [get(served.port, "/api/tasks", extra=_basic("admin", f"guess{i}"))[0]
                for i in range(6)]
    assert statuses[-1] == 429 and set(statuses) <= {401, 429}
    other = serve(password=PASSWORD)                  # a fresh limiter: parallel guessing
    rss = [_rss_kb(other.proc.pid)]
    for _ in range(2):
        results = []
        # from 40 addresses: one address may hold only 32 connections (S12)
        threads = [threading.Thread(target=lambda i=i: results.append(
            get(other.port, "/api/tasks", extra=_basic("admin", f"p{i}"),
                source=f"127.0.2.{i + 1}", timeout=120)[0]))  # scrypts queue: be patient
            for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert set(results) <= {401, 429} and len(results) == 40
        rss.append(_rss_kb(other.proc.pid))
    first_mb, second_mb = (rss[1] - rss[0]) / 1024, (rss[2] - rss[1]) / 1024
    assert second_mb <= 16 + first_mb / 10       # bounded: a second wave adds ~nothing
    assert first_mb < 400                        # and the first stays far from exhaustion
    logs = served.log.read_text() + other.log.read_text()
    assert PASSWORD not in logs
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert PASSWORD not in ps
    figure(f"wrong logins answered alike in >= {min(durations):.2f} s, 429 after "
           f"{statuses.index(429) + 1} more; 40 parallel guesses grew the server's RSS by "
           f"{first_mb:.0f} MB, 40 more by {second_mb:.0f} MB")


# -- S4 ------------------------------------------------------------------------------


def _login(port: int, password: str = PASSWORD, cookie: str = ""):
    status, headers, body = get(port, "/login", extra=f"Cookie: {cookie}\r\n" if cookie else "")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    csrf = [c.split(";")[0] for c in headers.get("set-cookie", []) if c.startswith("picron_csrf")]
    cookies = "; ".join(filter(None, [cookie, *csrf]))
    form = urlencode({"csrf_token": token, "user": "admin", "password": password,
                      "next": "/"}).encode()
    return get(port, "/login", method="POST", body=form,
               extra=f"Cookie: {cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     f"Origin: http://127.0.0.1:{port}\r\n")


def _session(headers: dict) -> str | None:
    for value in headers.get("set-cookie", []):
        if value.startswith("picron_session="):
            return value
    return None


def test_s4_session_cookies(serve):
    served = serve(password=PASSWORD)
    forged = "picron_session=" + "A" * 43
    status, headers, _ = _login(served.port, cookie=forged)
    assert status in (302, 303)
    cookie = _session(headers)
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert len(session_id) >= 43 and session_id != "A" * 43      # >= 256 bits, new id
    _, again, _ = _login(served.port)
    assert _session(again).split(";")[0] != cookie.split(";")[0]   # a new id at every login
    assert get(served.port, "/api/tasks", extra=f"Cookie: {forged}\r\n")[0] == 401
    assert get(served.port, "/api/tasks", extra=f"Cookie: {cookie.split(';')[0]}\r\n")[0] == 200
    page = get(served.port, "/", extra=f"Cookie: {cookie.split(';')[0]}\r\n")[2]
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
    form = urlencode({"csrf_token": token}).encode()
    get(served.port, "/logout", method="POST", body=form,
        extra=f"Cookie: {cookie.split(';')[0]}\r\nOrigin: http://127.0.0.1:{served.port}\r\n"
              "Content-Type: application/x-www-form-urlencoded\r\n")
    assert get(served.port, "/api/tasks", extra=f"Cookie: {cookie.split(';')[0]}\r\n")[0] == 401


def test_s4_idle_timeout(site, web_app, clock):
    from picron.webapp.login import set_password

    set_password(web_app.open_store(), PASSWORD)
    page = call(site, "GET", "/login", token=False)
    csrf = cookie_value(page, "picron_csrf")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.body.decode()).group(1)
    done = call(site, "POST", "/login", form={"csrf_token": token, "user": "admin",
                                              "password": PASSWORD, "next": "/"},
                cookies={"picron_csrf": csrf}, headers={"origin": "http://127.0.0.1:8080"})
    session = cookie_value(done, "picron_session")
    assert call(site, "GET", "/api/tasks", cookies={"picron_session": session}).status == 200
    clock.advance(minutes=29)
    assert call(site, "GET", "/api/tasks", cookies={"picron_session": session}).status == 200
    clock.advance(minutes=31)
    assert call(site, "GET", "/api/tasks", cookies={"picron_session": session}).status == 401


# -- S5 ------------------------------------------------------------------------------


def test_s5_csrf(lab, serve):
    (task,) = lab.add_tasks({"name": "keep", "interval": "@daily", "taskmodule": "record",
                             "options": {"log": lab.log()}})
    served = serve(password=PASSWORD)
    token = api_token(lab)
    _, headers, _ = _login(served.port)
    session = _session(headers).split(";")[0]
    before = dump(lab.db)
    changes = [("POST", "/api/tasks", b'{"name": "x"}'), ("PUT", f"/api/tasks/{task.id}", b"{}"),
               ("PATCH", f"/api/tasks/{task.id}", b'{"ordering": 5}'),
               ("DELETE", f"/api/tasks/{task.id}", b""),
               ("POST", f"/api/tasks/{task.id}/disable", b""),
               ("POST", f"/api/tasks/{task.id}/run", b""),
               ("POST", "/api/counters/c/increment", b'{"by": 1}'),
               ("POST", f"/tasks/{task.id}/delete", b""), ("POST", "/logout", b"")]
    for method, path, body in changes:
        for extra in (f"Cookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                      f"Cookie: {session}\r\nContent-Type: application/json\r\n"
                      "Origin: https://evil.example\r\n",
                      _basic("admin", PASSWORD) + "Content-Type: application/json\r\n"
                      "Origin: https://evil.example\r\n",
                      f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                      "Origin: https://evil.example\r\n"):
            status = get(served.port, path, method=method, body=body, extra=extra)[0]
            # a form body on an API route is refused as 415 before the CSRF check
            refused = 415 if "urlencoded" in extra and path.startswith("/api/") else 403
            assert status == refused, (method, path, extra[:40], status)
    for path in ("/", "/api/tasks", f"/tasks/{task.id}/delete", f"/api/tasks/{task.id}/run",
                 "/logout", f"/api/tasks/{task.id}/disable", "/history"):
        assert get(served.port, path, extra=f"Cookie: {session}\r\n")[0] in (200, 404, 405)
    assert dump(lab.db) == before


# -- S6 ------------------------------------------------------------------------------

PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
            "'><svg onload=alert(1)>", "</textarea><script>alert(1)</script>",
            "javascript:alert(1)", "{{7*7}}${7*7}", "a\u2028b", "x" * 10_000]
DANGEROUS = re.compile(r"<script>alert|<img src=x|<svg onload|href=\"javascript:", re.I)


def test_s6_xss(lab, serve):
    served = serve()
    for i, payload in enumerate(PAYLOADS):
        definition = {"name": f"{payload[:50]} {i}", "interval": "@daily",
                      "taskmodule": "record", "options": {"log": payload}}
        status, _, _ = served.request("POST", "/api/tasks", body=definition)
        if status == 400:          # refused as a name (U+2028): then only as an option
            definition["name"] = f"xss {i}"
            status, _, _ = served.request("POST", "/api/tasks", body=definition)
        if len(payload) > 4096:    # longer than any field may be: refused, not stored
            assert status == 400
            continue
        assert status == 201, (payload[:40], status)
        cli = lab.run("task", "add", "--name", f"cli {i}", "--interval", "@daily",
                      "--module", "record", "--option", f"log={payload}")
        assert cli.returncode == 0, cli.stderr
    lab.run("counter", "incr", "<script>alert(1)</script>")
    tasks = json.loads(served.request("GET", "/api/tasks")[2])
    pages = ["/", "/history", "/stats", "/new", *(f"/tasks/{t['id']}" for t in tasks),
             *(f"/tasks/{t['id']}/edit" for t in tasks), "/login",
             "/?q=%3Cscript%3Ealert(1)%3C/script%3E", "/nowhere<script>alert(1)</script>"]
    for page in pages:
        status, headers, body = served.request("GET", page)
        text = body.decode("utf-8", "replace")
        assert not DANGEROUS.search(text), (page, DANGEROUS.search(text))
        assert "'unsafe-inline'" not in headers.get("Content-Security-Policy", "'unsafe-inline'")
    assert html.escape("<script>") in served.request("GET", "/")[2].decode()


# -- S7 ------------------------------------------------------------------------------


def test_s7_headers_on_every_status(lab, serve):
    served = serve(password=PASSWORD)
    auth = _basic("admin", PASSWORD)
    cases = [("GET", "/api/tasks", auth, 200), ("GET", "/", "", 303),
             ("GET", "/api/tasks/999", auth, 404), ("GET", "/api/tasks", "", 401),
             ("GET", "/api/tasks", "Host-Typo: x\r\n", 401)]
    seen = set()
    for method, path, extra, _ in cases:
        status, headers, _ = get(served.port, path, extra=extra, method=method)
        seen.add(status // 100)
        assert "'unsafe-inline'" not in headers["content-security-policy"][0]
        assert headers["x-content-type-options"] == ["nosniff"]
        assert headers["x-frame-options"] == ["DENY"]
        assert headers["referrer-policy"]
        assert headers["server"] == ["picron"]
        if extra == auth:
            assert headers["cache-control"] == ["no-store"]
    status, headers, _ = get(served.port, "/api/tasks", extra=auth + "Content-Type: x\r\n",
                             method="POST", body=b"x" * 10)
    seen.add(status // 100)
    status, headers, _ = raw(served.port, b"BREW / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert headers["x-frame-options"] == ["DENY"] and status in (405, 501)
    assert {2, 3, 4} <= seen
    # a 5xx: the database vanishes under the running server
    os.rename(lab.db, lab.db + ".away")
    os.mkdir(lab.db)
    try:
        status, headers, body = get(served.port, "/api/tasks", extra=auth)
    finally:
        os.rmdir(lab.db)
        os.rename(lab.db + ".away", lab.db)
    assert status == 503 and headers["x-frame-options"] == ["DENY"]
    assert "Python" not in headers["server"][0]


# -- S8 ------------------------------------------------------------------------------


def test_s8_paths(lab, serve):
    served = serve()
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//evil.com/",
                 "/static/..%2f..%2fpicron.db", "/static/../../picron.db",
                 "/static/%2e%2e/%2e%2e/etc/passwd", "/static/.%2e/x", "/static//etc/passwd"):
        status, headers, body = get(served.port, path)
        assert status in (400, 404), (path, status)
        assert b"root:" not in body and b"SQLite format" not in body
    _check_next(served)                 # no password: /login redirects to next at once
    _check_next(serve(password=PASSWORD))   # with one: next is kept in the login form


def _check_next(server) -> None:
    for target in ("//evil.com", "https://evil.com", "/\\evil.com", "//evil.com/%2e%2e",
                   "http:evil.com", "\\\\evil.com"):
        _, headers, page = get(server.port, "/login?" + urlencode({"next": target}))
        field = re.search(r'name="next" value="([^"]*)"', page.decode())
        kept = headers["location"][0] if "location" in headers else html.unescape(field.group(1))
        assert kept.startswith("/") and not kept.startswith(("//", "/\\")), (target, kept)


# -- S9 ------------------------------------------------------------------------------


def _request_lines(served) -> list[str]:
    """The server log's request lines (not its start-up lines, which may come late)."""
    return [line for line in served.log.read_text().splitlines()
            if re.search(r" picron: 127\.0\.0\.1 ", line)]


def test_s9_crlf(lab, serve):
    served = serve()
    status, headers, _ = get(served.port, "/api/tasks/1%0d%0aSet-Cookie:%20x=1",
                             extra=_auth(served))
    assert status in (400, 404) and "x=1" not in str(headers)
    status, headers, _ = get(served.port, "/login?next=/%0d%0aLocation:%20http://evil.com")
    assert all("evil.com" not in v for v in headers.get("location", []))
    status, _, _ = served.request("POST", "/api/tasks", body={
        "name": "a\r\nb", "interval": "@daily", "taskmodule": "record", "options": {"log": "x"}})
    assert status == 400
    status, _, _ = served.request("POST", "/api/tasks", body={
        "name": "ok", "interval": "@daily", "taskmodule": "record",
        "options": {"log": "line\r\nSet-Cookie: x=1"}})
    assert status == 201
    status, headers, _ = raw(served.port, b"GET /api/tasks?\x1b[31mred HTTP/1.1\r\n"
                                          b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
    # A request's line is logged before its answer is sent: all five are there now.
    # (Counting every line of the log raced with the server's own start-up lines.)
    lines = _request_lines(served)
    assert len(lines) == 5, lines                          # one line per request
    assert all("\x1b" not in line and "\r" not in line for line in lines)


# -- S10 -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["os", "../../x", "picron.modules.command", "subprocess",
                                    "tests.reliability.plugins", "__import__('os')", "record.x"])
def test_s10_unknown_task_module(lab, serve, module):
    served = serve()
    status, _, body = served.request("POST", "/api/tasks", body={
        "name": "m", "interval": "@daily", "taskmodule": module})
    assert status == 400 and b"unknown task module" in body
    modules = served.request("GET", "/api/modules")[2].decode()
    assert f'"{module}"' not in modules
    assert T0 and lab.query("select count(*) from task")[0][0] == 0
