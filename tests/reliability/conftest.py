"""The reliability battery's fixtures: scale (short/full), test modules, picron subprocesses.

Every test here runs in a short form by default (CI) and with the figures of
RELIABILITY.md when ``PICRON_FULL=1``; both forms make the same assertions.

Subprocesses are real ``python -m picron`` processes. Their clock is moved with Debian's
libfaketime (``FAKETIME="@<time>"``: the process starts at that time and its clock runs
on). Monotonic clocks are shifted too (``FAKETIME_DONT_FAKE_MONOTONIC`` would make
``time.sleep`` fail with EINVAL in libfaketime 0.9.10), so nothing in a faked process may
use a timed wait on a lock or event (they never time out there, see RELIABILITY.md);
picron's runner waits with ``select()``. Times compared across processes are read from
``/proc/uptime`` (see plugins/picron_testmods.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from picron.modules import Registry
from picron.storage import Store, open_store
from picron.tasks import parse_task

FULL = os.environ.get("PICRON_FULL") == "1"
PLUGINS = Path(__file__).parent / "plugins"
FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1")
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)

sys.path.insert(0, str(PLUGINS))
import picron_testmods  # noqa: E402  (needs the path above)


def scale(short, full):
    """The short-form value in CI, the RELIABILITY.md figure with ``PICRON_FULL=1``."""
    return full if FULL else short


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: the RELIABILITY.md battery "
                                       "(short form; PICRON_FULL=1 for the full figures)")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


def faketime_lib() -> str:
    for path in FAKETIME_LIBS:
        if os.path.exists(path):
            return path
    pytest.fail("libfaketime is not installed (apt-get install faketime)")


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory) -> str:
    """A PYTHONPATH that registers the test modules under the ``picron.modules`` group."""
    root = tmp_path_factory.mktemp("dist")
    info = root / "picron_testmods-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: picron-testmods\n"
                                   "Version: 0\n")
    entries = "".join(f"{name} = picron_testmods:{cls.__name__}\n"
                      for name, cls in picron_testmods.MODULES.items())
    (info / "entry_points.txt").write_text(f"[picron.modules]\n{entries}")
    return os.pathsep.join([str(PLUGINS), str(root)])


@dataclass
class Picron:
    """One database plus ways to run ``python -m picron`` on it at a chosen (fake) time."""

    db: str
    tmp: Path
    plugin_path: str

    def env(self, node: str = "node1", at: datetime | None = None) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PICRON_", "FAKETIME", "LD_PRELOAD"))}
        # picron itself from this checkout: barrier.py is a script, not "-m picron"
        env.update(PICRON_DB=self.db, PICRON_NODE=node, TZ="UTC",
                   PYTHONPATH=os.pathsep.join((self.plugin_path, str(PLUGINS.parents[2]))))
        if at is not None:
            env.update(LD_PRELOAD=faketime_lib(), FAKETIME=f"@{at:%Y-%m-%d %H:%M:%S}",
                       FAKETIME_NO_CACHE="1")
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "picron", *args]

    def spawn(self, *args: str, node: str = "node1", at: datetime | None = None,
              barrier: tuple[str, str] | None = None, **kwargs) -> subprocess.Popen:
        argv = self.argv(*args) if barrier is None else \
            [sys.executable, str(PLUGINS / "barrier.py"), *barrier, *args]
        return subprocess.Popen(argv, env=self.env(node, at), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def run(self, *args: str, node: str = "node1", at: datetime | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env(node, at), capture_output=True,
                              text=True, timeout=timeout)

    def store(self) -> Store:
        """A new connection (close the store when done)."""
        return open_store(self.db, default_zone=timezone.utc)

    def add_tasks(self, *definitions: dict, now: datetime = T0) -> list:
        """Create tasks as the CLI would (validated by ``parse_task``), at ``now``."""
        registry = Registry(modules=picron_testmods.MODULES)
        store = self.store()
        try:
            return [store.add_task(parse_task({"timezone": "UTC", **d}, registry, ("node1",)),
                                   now) for d in definitions]
        finally:
            store.close()

    def query(self, sql: str, params=()) -> list[tuple]:
        """Rows of a read-only query (``?`` placeholders) on either backend."""
        store = self.store()
        try:
            return [tuple(row) for row in store._all(sql, params)]
        finally:
            store.close()

    def log(self, name: str = "events") -> str:
        return str(self.tmp / f"{name}.jsonl")


# Runs a test on both backends: ``@BOTH_BACKENDS`` before a test taking ``lab``.
BOTH_BACKENDS = pytest.mark.parametrize("lab", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def lab(request, tmp_path, plugin_path) -> Picron:
    """A new database: a SQLite file, or with ``BOTH_BACKENDS`` also a fresh PostgreSQL
    schema (skipped without $PICRON_TEST_PG)."""
    if getattr(request, "param", "sqlite") == "postgres":
        db = request.getfixturevalue("pg_location")
    else:
        db = str(tmp_path / "picron.db")
    open_store(db).close()
    return Picron(db=db, tmp=tmp_path, plugin_path=plugin_path)


def read_events(path: str) -> list[dict]:
    """The JSON lines a test module logged (none if it never ran)."""
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.01):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {predicate}")


def one_line(text: str) -> bool:
    """Exactly one non-empty line and no traceback."""
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def slot_of(iso: str, minutes: int = 5) -> str:
    """The start of the ``minutes``-long slot containing an ISO time (a dedup key)."""
    at = datetime.fromisoformat(iso)
    return at.replace(minute=at.minute - at.minute % minutes, second=0,
                      microsecond=0).isoformat()


_FIGURES: list[str] = []


@pytest.fixture
def figure(request):
    """Record a measured figure; all are printed at the end of the run (for the docs)."""
    def record(text: str) -> None:
        _FIGURES.append(f"{request.node.nodeid.split('::')[-1]}: {text}")
    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section(f"reliability figures ({'full' if FULL else 'short'} form)")
        for line in _FIGURES:
            terminalreporter.write_line(line)


# -- the web server ------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A ``picron serve`` subprocess on a free loopback port."""

    proc: subprocess.Popen
    port: int
    auth: str | None = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float = 30, conn=None):
        """(status, headers, body bytes); ``body`` may be bytes or JSON-able."""
        import http.client

        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = dict(headers or {})
        if self.auth and "Authorization" not in headers:
            headers["Authorization"] = self.auth
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            if own:
                conn.close()

    def threads(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as file:
            return int(next(line.split()[1] for line in file if line.startswith("Threads:")))

    def stop(self, timeout: float = 15) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


def set_password(lab: Picron, password: str = "correct horse battery") -> str:
    import base64

    done = subprocess.run(lab.argv("passwd"), env=lab.env(), input=password + "\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()


def api_token(lab: Picron) -> str:
    """The API token, as ``picron token`` prints it (created on first use)."""
    done = lab.run("token", timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def serve(lab, tmp_path):
    """``serve(*extra_args, password=None)`` starts a server; all are stopped at the end."""
    import socket

    started: list[Served] = []

    def start(*extra: str, password: str | None = None, wait: bool = True) -> Served:
        auth = set_password(lab, password) if password else f"Bearer {api_token(lab)}"
        port = free_port()
        stderr = open(tmp_path / f"serve-{port}.log", "w")
        proc = subprocess.Popen(lab.argv("serve", "--listen", f"127.0.0.1:{port}", *extra),
                                env=lab.env(), stdout=subprocess.DEVNULL, stderr=stderr)
        served = Served(proc=proc, port=port, auth=auth)
        served.log = tmp_path / f"serve-{port}.log"
        started.append(served)
        deadline = time.monotonic() + 20
        while wait:
            assert proc.poll() is None, served.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "picron serve did not start"
                time.sleep(0.05)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def served_once(tmp_path_factory, plugin_path):
    """One server for a whole test module (W3, I API, the API fuzz) and its ``Picron``."""
    tmp = tmp_path_factory.mktemp("served")
    lab = Picron(db=str(tmp / "picron.db"), tmp=tmp, plugin_path=plugin_path)
    open_store(lab.db).close()
    port = free_port()
    proc = subprocess.Popen(lab.argv("serve", "--listen", f"127.0.0.1:{port}"), env=lab.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = Served(proc=proc, port=port, auth=f"Bearer {api_token(lab)}")
    deadline = time.monotonic() + 20
    while True:
        try:
            served.request("GET", "/api/health")
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    yield served, lab
    assert served.stop() == 0


@pytest.fixture(scope="module")
def api(served_once):
    """``served_once`` with a task named 'existing' (the I rows' duplicate name)."""
    served, lab = served_once
    status, _, _ = served.request("POST", "/api/tasks", body={
        "name": "existing", "interval": "@daily", "taskmodule": "command",
        "options": {"command": "true"}})
    assert status in (201, 409)
    return served, lab


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0
