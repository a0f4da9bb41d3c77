"""D3, D4, D5: unusable database files, a database locked by another process, permissions."""
from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest

from tests.reliability.conftest import T0, one_line, scale
from picron.storage.sqlitedb import BUSY_TIMEOUT_SECONDS

# -- D3 ------------------------------------------------------------------------------


def _fingerprint(path: str):
    """Content hash, mode and mtime of a file or directory, and what lies beside it."""
    info = os.stat(path)
    content = "dir" if os.path.isdir(path) else hashlib.sha256(open(path, "rb").read()).hexdigest()
    return content, info.st_mode, info.st_mtime_ns, sorted(os.listdir(os.path.dirname(path)))


@contextmanager
def read_only(path: str):
    """Make ``path`` read-only, also for root (immutable flag), and undo it afterwards."""
    os.chmod(path, 0o444)
    immutable = os.geteuid() == 0
    if immutable:
        done = subprocess.run(["chattr", "+i", path], capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"running as root, a read-only file needs chattr +i: {done.stderr}")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", path], check=True)
        os.chmod(path, 0o600)


def _make(kind: str, path: str) -> None:
    if kind == "directory":
        os.mkdir(path)
        return
    content = {"random-bytes": random.Random(3).randbytes(8192), "empty": b"",
               "text": b"database = here\nthis is not SQLite\n"}.get(kind)
    if content is None:  # read-only: a real picron database
        from picron.storage import open_store

        open_store(path).close()
        return
    with open(path, "wb") as file:
        file.write(content)


@pytest.mark.parametrize("kind", ["random-bytes", "empty", "text", "read-only", "directory"])
@pytest.mark.parametrize("command", [["list"], ["run_scheduled", "-c"],
                                     ["task", "add", "--name", "x", "--interval", "@daily",
                                      "--module", "record", "--option", "log=/dev/null"]],
                         ids=["list", "run_scheduled", "task-add"])
def test_unusable_database_is_one_line_exit_3_and_untouched(lab, kind, command):
    path = str(lab.tmp / "sub" / "bad.db")
    os.mkdir(os.path.dirname(path))
    _make(kind, path)
    lab.db = path
    guard = read_only(path) if kind == "read-only" else _nothing()
    with guard:
        before = _fingerprint(path)
        done = lab.run(*command)
        after = _fingerprint(path)
    assert done.returncode == 3, done.stderr
    assert one_line(done.stderr) and done.stderr.startswith(f"picron: error: database {path}")
    assert done.stdout == ""
    assert after == before


@contextmanager
def _nothing():
    yield


# -- D4 ------------------------------------------------------------------------------

HOLD = scale(BUSY_TIMEOUT_SECONDS + 2, 30)
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "locking_mode":
    conn.execute("pragma locking_mode = exclusive")
conn.execute("begin exclusive")
conn.execute("insert into setting (key, value) values ('holder', 'x')")
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
conn.execute("rollback")
"""


@pytest.mark.parametrize("how", ["begin_exclusive", "locking_mode"])
def test_locked_database_gives_up_quickly_then_recovers(lab, figure, how):
    lab.add_tasks({"name": "due", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": lab.log()}})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, lab.db, how, str(HOLD)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        held_since = time.monotonic()
        started = time.monotonic()
        tick = lab.run("run_scheduled", "-c", at=T0 + timedelta(minutes=5, seconds=5))
        gave_up = time.monotonic() - started
        assert time.monotonic() - held_since < HOLD, "the lock must outlive the tick"
    finally:
        holder.wait(timeout=HOLD + 30)
    assert tick.returncode == 3
    assert one_line(tick.stderr) and "database busy" in tick.stderr
    assert gave_up <= BUSY_TIMEOUT_SECONDS + 1
    assert lab.query("select count(*) from run")[0][0] == 0        # nothing half-claimed
    normal = lab.run("run_scheduled", "-c", at=T0 + timedelta(minutes=5, seconds=50))
    assert normal.returncode == 0 and normal.stderr == ""
    assert lab.query("select status from run") == [("success",)]
    figure(f"{how}: gave up after {gave_up:.2f} s (busy timeout {BUSY_TIMEOUT_SECONDS:g} s)")


# -- D5 ------------------------------------------------------------------------------


def test_first_start_creates_private_directory_and_file(lab):
    path = lab.tmp / "fresh" / "data" / "picron.db"
    lab.db = str(path)
    done = subprocess.run(lab.argv("list"), env=lab.env(), capture_output=True, text=True,
                          umask=0)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in os.listdir(path.parent):           # the database and any -wal/-shm
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
