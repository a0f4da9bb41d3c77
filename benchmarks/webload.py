"""Web figures: single-request latency of the task list (API and page) and a load test.

The server is a real ``picron serve`` process on a free loopback port. Latency is measured
from the client over loopback, so it is server time plus well under a millisecond. The
load test runs 20 closed-loop clients (no pause between requests) in 4 worker processes,
so that the clients' own Python does not queue behind one interpreter lock.
"""
from __future__ import annotations

import http.client
import multiprocessing
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from measure import percentile

PATHS = ("/api/tasks", "/", "/history")
TARGET_MS = {"/api/tasks": 15, "/": 15}  # issue 11; the history has no figure of its own
CLIENTS, WORKERS = 20, 4
SEQUENTIAL_REQUESTS = 30


def measure_web(python: str, env: dict[str, str], database: str, seconds: float) -> list[tuple]:
    """Start ``picron serve`` on ``database`` and return the report rows of the web figures."""
    port = _free_port()
    token = subprocess.run([python, "-m", "picron", "--db", database, "token"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    auth = f"Bearer {token}"  # every request needs a credential (SPEC §6)
    # The server logs a line per request: a pipe nobody reads would fill up and stall it.
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([python, "-m", "picron", "--db", database, "serve",
                               "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_for(port, server, log)
        rows = _baseline(python, env, seconds)
        for path in PATHS:
            for _ in range(3):
                _get(port, path, auth)  # warm-up
            times = [_get(port, path, auth)[0] for _ in range(SEQUENTIAL_REQUESTS)]
            median = statistics.median(times)
            rows.append((f"GET {path}, 1,000 tasks (one client, includes loopback and "
                         "connection set-up)",
                         f"{median * 1000:.1f} ms ({min(times) * 1000:.1f}–"
                         f"{max(times) * 1000:.1f})", "-", median * 1000,
                         TARGET_MS.get(path), " ms"))
        latencies, errors, requests = _load(port, seconds, auth)
        p99 = percentile(latencies, 0.99) * 1000
        summary = (f"{requests} requests in {seconds:g} s, p50 "
                   f"{percentile(latencies, 0.5) * 1000:.0f} ms, p99 {p99:.0f} ms")
        rows.append((f"{CLIENTS} clients for {seconds:g} s: errors", summary, "-",
                     errors, 0, ""))
        rows.append((f"{CLIENTS} clients for {seconds:g} s: p99 latency", f"{p99:.0f} ms", "-",
                     p99, 250, " ms"))
        return rows
    finally:
        server.terminate()
        server.wait(10)


BARE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b"<!doctype html><title>static</title><p>" + b"x" * 2000

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 128
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _baseline(python: str, env: dict[str, str], seconds: float) -> list[tuple]:
    """The same client and load against a bare ``http.server`` answering a static page, in
    the same run: what the machine and Python's HTTP server cost without picron."""
    port = _free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([python, "-c", BARE_SERVER, str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_for(port, server, log)
        for _ in range(3):
            _get(port, "/", "")
        times = [_get(port, "/", "")[0] for _ in range(SEQUENTIAL_REQUESTS)]
        median = statistics.median(times)
        latencies, errors, requests = _load(port, seconds, "", ("/",))
        p99 = percentile(latencies, 0.99) * 1000
        return [("bare http.server, static page (one client)",
                 f"{median * 1000:.1f} ms ({min(times) * 1000:.1f}–{max(times) * 1000:.1f})",
                 "-", median * 1000, None, " ms"),
                (f"bare http.server, {CLIENTS} clients for {seconds:g} s",
                 f"{requests} requests, {errors} errors, p50 "
                 f"{percentile(latencies, 0.5) * 1000:.0f} ms, p99 {p99:.0f} ms", "-",
                 p99, None, " ms")]
    finally:
        server.terminate()
        server.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, server: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"picron serve exited: {log.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("picron serve did not start listening within 30 s")


def _get(port: int, path: str, auth: str) -> tuple[float, int]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Accept": "application/json, text/html"}
        if auth:
            headers["Authorization"] = auth
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - started, response.status
    finally:
        conn.close()


def _load(port: int, seconds: float, auth: str,
          paths: tuple[str, ...] = PATHS) -> tuple[list[float], int, int]:
    context = multiprocessing.get_context("fork")
    with context.Pool(WORKERS) as pool:
        parts = pool.starmap(_worker, [(port, seconds, CLIENTS // WORKERS, w, auth, paths)
                                       for w in range(WORKERS)])
    latencies = [value for part in parts for value in part[0]]
    return latencies, sum(part[1] for part in parts), len(latencies) + sum(p[1] for p in parts)


def _worker(port: int, seconds: float, clients: int, worker: int,
            auth: str, paths: tuple[str, ...]) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        index = number
        while time.monotonic() < deadline:
            path = paths[index % len(paths)]
            index += 1
            try:
                elapsed, status = _get(port, path, auth)
            except OSError:
                errors[0] += 1
                continue
            if status == 200:
                latencies.append(elapsed)
            else:
                errors[0] += 1

    threads = [threading.Thread(target=client, args=(worker * clients + n,))
               for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]
