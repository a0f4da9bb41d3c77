"""The ``http`` module against a local ``http.server`` on 127.0.0.1."""
from __future__ import annotations

import base64
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from picron.errors import ValidationError
from picron.isolation import run_in_child, run_module
from picron.modules import TaskContext
from picron.modules.http import Http

REDIRECTS = {"/redirect": "/echo", "/to-ftp": "ftp://127.0.0.1/x",
             "/to-file": "file:///etc/passwd", "/moved": "/ok"}


class Handler(BaseHTTPRequestHandler):
    seen: list = []
    release = threading.Event()

    def answer(self):
        Handler.seen.append((self.command, self.path, self.headers.get("Authorization"),
                             self.headers.get("User-Agent")))
        if self.path in REDIRECTS:
            self.send_response(302)
            self.send_header("Location", REDIRECTS[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/hang":
            Handler.release.wait(10)
        status = {"/missing": 404, "/error": 500, "/created": 201}.get(self.path, 200)
        body = {404: b"no such page", 500: b"database on fire\n" * 100}.get(status, b"fine")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_DELETE = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    Handler.seen = []
    Handler.release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


def context(clock, timeout=10):
    return TaskContext(node="node1", location=":memory:", now=clock, timeout=timeout,
                       task_name="ping")


def run(clock, url, timeout=10, **options):
    stored = Http.validate_options({"url": url, **options})
    return run_module(Http, Http.typed_options(stored), context(clock, timeout))


def test_200_is_success(server, clock):
    assert run(clock, f"{server}/ok") == ("success", f"GET {server}/ok: HTTP 200 OK")
    method, path, auth, agent = Handler.seen[0]
    assert (method, path, auth) == ("GET", "/ok", None)
    assert agent.startswith("picron/")


@pytest.mark.parametrize("path, status, reason, body", [
    ("/missing", 404, "Not Found", "no such page"),
    ("/error", 500, "Internal Server Error", "database on fire"),
])
def test_error_status_is_a_failure_with_the_status_in_the_message(server, clock, path, status,
                                                                   reason, body):
    result, message = run(clock, f"{server}{path}")
    assert result == "failed"
    first, excerpt = message.split("\n", 1)
    assert first == f"GET {server}{path}: HTTP {status} {reason} (expected 2xx)"
    assert excerpt.startswith(body) and len(excerpt) <= 512


def test_connection_refused_is_a_failure(clock):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run(clock, f"http://127.0.0.1:{port}/") == \
        ("failed", f"GET http://127.0.0.1:{port}/: cannot connect: Connection refused")


def test_expect_status(server, clock):
    assert run(clock, f"{server}/missing", expect_status=404)[0] == "success"
    assert run(clock, f"{server}/created", expect_status=201)[0] == "success"
    assert run(clock, f"{server}/ok", expect_status=201) == \
        ("failed", f"GET {server}/ok: HTTP 200 OK (expected 201)\nfine")


def test_any_2xx_is_success_by_default(server, clock):
    assert run(clock, f"{server}/created", method="post") == \
        ("success", f"POST {server}/created: HTTP 201 Created")
    assert Handler.seen[-1][:2] == ("POST", "/created")


def test_head_and_delete(server, clock):
    assert run(clock, f"{server}/ok", method="HEAD")[0] == "success"
    assert run(clock, f"{server}/ok", method="Delete")[0] == "success"
    assert [seen[0] for seen in Handler.seen] == ["HEAD", "DELETE"]


def test_redirects_are_followed_within_http(server, clock):
    assert run(clock, f"{server}/redirect")[0] == "success"
    assert [seen[1] for seen in Handler.seen] == ["/redirect", "/echo"]


def test_a_3xx_expected_is_checked_without_following(server, clock):
    assert run(clock, f"{server}/moved", expect_status=302) == \
        ("success", f"GET {server}/moved: HTTP 302 Found")
    assert [seen[1] for seen in Handler.seen] == ["/moved"]


@pytest.mark.parametrize("path", ["/to-ftp", "/to-file"])
def test_redirects_to_other_schemes_are_refused(server, clock, path):
    status, message = run(clock, f"{server}{path}")
    assert status == "failed"
    assert message == (f"GET {server}{path}: HTTP 302 Found - Redirection to url "
                       f"'{REDIRECTS[path]}' is not allowed (expected 2xx)")


def test_credentials_become_basic_auth_and_stay_out_of_messages(server, clock):
    url = server.replace("http://", "http://ada:p%40ss@") + "/redirect"
    status, message = run(clock, url)
    assert (status, message) == ("success", f"GET {server}/redirect: HTTP 200 OK")
    expected = "Basic " + base64.b64encode(b"ada:p@ss").decode()
    assert [seen[2] for seen in Handler.seen] == [expected, None]  # not sent on to /echo


def test_a_hanging_server_times_out(server, clock):
    assert run(clock, f"{server}/hang", timeout=1) == \
        ("failed", f"GET {server}/hang: timed out")


def test_works_in_the_runner_child_process(server, clock):
    options = Http.typed_options({"url": f"{server}/ok"})
    assert run_in_child(Http, options, context(clock), 30) == \
        ("success", f"GET {server}/ok: HTTP 200 OK")


@pytest.mark.parametrize("options, problem", [
    ({"url": "ftp://example.org/"}, "'url' must be an http:// or https:// URL"),
    ({"url": "file:///etc/passwd"}, "'url' must be an http:// or https:// URL"),
    ({"url": "javascript:alert(1)"}, "'url' must be an http:// or https:// URL"),
    ({"url": "example.org/ping"}, "'url' must be an http:// or https:// URL"),
    ({"url": "http:///path"}, "'url' must be an http:// or https:// URL"),
    ({"url": "http://host:99999/"}, "'url' has an invalid port"),
    ({"url": "http://host/a b"}, "must not contain spaces"),
    ({"url": "http://host/\r\nX: y"}, "must not contain spaces"),
    ({"url": "https://host/", "method": "BREW"}, "'method' must be one of GET"),
    ({"url": "https://host/", "expect_status": 99}, "'expect_status' must be an HTTP status"),
    ({"url": "https://host/", "expect_status": 600}, "'expect_status' must be an HTTP status"),
    ({"method": "GET"}, "requires option 'url'"),
])
def test_bad_options_are_refused_when_saved(options, problem):
    with pytest.raises(ValidationError, match=problem) as caught:
        Http.validate_options(options)
    assert caught.value.field == "options"


def test_good_urls_are_accepted():
    for url in ("https://example.org", "HTTP://EXAMPLE.ORG:8080/x?y=1#z",
                "http://[::1]:8080/", "https://user:pw@example.org/hook"):
        assert Http.validate_options({"url": url})["url"] == url
