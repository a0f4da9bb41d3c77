"""W3: hostile request framing is refused with the right 4xx, never a 500 or a crash."""
from __future__ import annotations

import json

import pytest

from .test_security import raw

JSON = "Content-Type: application/json\r\n"


def _post(port: int, headers: str, body: bytes = b"") -> bytes:
    return (f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}"
            "Connection: close\r\n\r\n").encode() + body


def _authorized(request: bytes, auth: str) -> bytes:
    """``request`` with the server's credential (every request needs one)."""
    line, _, rest = request.partition(b"\r\n")
    return line + f"\r\nAuthorization: {auth}".encode() + b"\r\n" + rest


CASES = {
    "length-10^12": (lambda p: _post(p, JSON + "Content-Length: 1000000000000\r\n"), {413}),
    "length--1": (lambda p: _post(p, JSON + "Content-Length: -1\r\n"), {400}),
    "length-abc": (lambda p: _post(p, JSON + "Content-Length: abc\r\n"), {400}),
    "length-missing": (lambda p: _post(p, JSON), {411}),
    "body-2MiB": (lambda p: _post(p, JSON + f"Content-Length: {2 * 2 ** 20}\r\n",
                                  b"[" * (2 * 2 ** 20)), {413}),
    "chunked": (lambda p: _post(p, JSON + "Transfer-Encoding: chunked\r\n",
                                b"2\r\n{}\r\n0\r\n\r\n"), {411, 501}),
    "header-70000": (lambda p: _post(p, JSON + "X-Big: " + "a" * 70_000 + "\r\n"), {431}),
    "headers-101": (lambda p: _post(p, JSON + "".join(f"X-H{i}: {i}\r\n" for i in range(101))),
                    {431}),
    "json-nested-100000": (lambda p: _post(p, JSON + "Content-Length: 200000\r\n",
                                           b"[" * 100_000 + b"]" * 100_000), {400}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_w3_hostile_framing(served_once, case):
    served, lab = served_once
    make, expected = CASES[case]
    status, headers, body = raw(served.port, _authorized(make(served.port), served.auth))
    assert status in expected, (case, status, body[:200])
    assert json.loads(body)["error"]["message"]
    assert served.proc.poll() is None
    assert served.request("GET", "/api/tasks")[0] == 200       # still serving
    assert lab.query("select count(*) from task")[0][0] == 0
