"""D3, D4, D5: unusable database files (not SQLite, damaged, another application's, read-only,
in a read-only directory, on a full disk), a database locked by another process, permissions."""
from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
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


DUE = T0 + timedelta(minutes=5, seconds=5)  # the task of _picron_db is due then


def _picron_db(lab, path: str) -> None:
    """A real picron database at ``path`` with one task due at ``DUE``, closed cleanly."""
    lab.db = path
    lab.add_tasks({"name": "due", "interval": "*/5 * * * *", "taskmodule": "record",
                   "options": {"log": lab.log()}})


def _damage(path: str, name: str) -> None:
    """Overwrite the cell pointers of the root page of table or index ``name`` (its 8-byte
    header and the file's header stay intact, as a bad sector or a stray write leaves them)."""
    conn = sqlite3.connect(path)
    try:
        page = conn.execute("select rootpage from sqlite_master where name = ?",
                            (name,)).fetchone()[0]
        size = conn.execute("pragma page_size").fetchone()[0]
    finally:
        conn.close()
    assert page > 1
    with open(path, "r+b") as file:
        file.seek((page - 1) * size + 8)
        file.write(b"\xde\xad\xbe\xef" * 64)


def _foreign(path: str, version: int) -> None:
    """A valid SQLite file of another application (rollback journal, like most)."""
    conn = sqlite3.connect(path)
    conn.executescript("create table notes (id integer primary key, body text);"
                       "insert into notes (body) values ('keep me');"
                       f"pragma user_version = {version:d};")
    conn.close()


def _make(kind: str, path: str, lab) -> None:
    if kind == "directory":
        os.mkdir(path)
    elif kind.startswith("damaged-"):
        _picron_db(lab, path)
        _damage(path, kind.removeprefix("damaged-"))
    elif kind.startswith("foreign"):
        _foreign(path, 1 if kind == "foreign-v1" else 0)
    elif kind == "read-only-dir":
        _picron_db(lab, path)
    else:
        content = {"random-bytes": random.Random(3).randbytes(8192), "empty": b"",
                   "text": b"database = here\nthis is not SQLite\n"}[kind]
        with open(path, "wb") as file:
            file.write(content)


# What the one line must say, beyond naming the file.
SAYS = {"random-bytes": "not a picron database", "empty": "not a picron database",
        "text": "not a picron database", "directory": "is a directory",
        "damaged-task": "is damaged", "damaged-task_node_due": "is damaged",
        "foreign": "not a picron database", "foreign-v1": "not a picron database",
        "read-only-dir": "is read-only"}


@pytest.mark.parametrize("kind", list(SAYS))
@pytest.mark.parametrize("command", [["list"], ["run_scheduled", "-c"],
                                     ["task", "add", "--name", "x", "--interval", "@daily",
                                      "--module", "record", "--option", "log=/dev/null"]],
                         ids=["list", "run_scheduled", "task-add"])
def test_unusable_database_is_one_line_exit_3_and_untouched(lab, kind, command):
    path = str(lab.tmp / "sub" / "bad.db")
    os.mkdir(os.path.dirname(path))
    _make(kind, path, lab)
    lab.db = path
    guard = read_only(os.path.dirname(path)) if kind == "read-only-dir" else _nothing()
    with guard:
        before = _fingerprint(path)
        done = lab.run(*command, at=DUE)
        after = _fingerprint(path)
    assert done.returncode == 3, done.stderr
    assert one_line(done.stderr) and done.stderr.startswith(f"picron: error: database {path}")
    assert SAYS[kind] in done.stderr
    if kind == "read-only-dir":  # names the directory, where SQLite must create -wal/-shm
        assert f"directory {os.path.dirname(path)} is read-only" in done.stderr
    assert done.stdout == ""
    assert after == before


@contextmanager
def _nothing():
    yield


def test_a_damaged_database_fails_check_saying_so(lab):
    path = str(lab.tmp / "picron.db")
    _picron_db(lab, path)
    assert lab.run("run_scheduled", "-c", at=DUE).returncode == 0  # a tick was recorded
    _damage(path, "audit")  # a page no tick reads: only a check of every page finds it
    done = lab.run("check", at=DUE)
    assert done.returncode == 1 and one_line(done.stderr)
    assert "cannot complete" in done.stderr and f"database {path}: is damaged" in done.stderr


def test_a_read_only_database_is_read_but_never_written(lab):
    path = str(lab.tmp / "sub" / "picron.db")
    os.mkdir(os.path.dirname(path))
    _picron_db(lab, path)
    assert lab.run("run_scheduled", "-c", at=DUE).returncode == 0
    with read_only(path):
        before = _fingerprint(path)
        for command in (["list"], ["list", "--json"], ["history"], ["task", "show", "due"],
                        ["export"], ["next"], ["doctor"]):
            done = lab.run(*command, at=DUE)
            assert done.stderr == "" and done.stdout, (command, done.stderr)
            assert done.returncode == (1 if command == ["doctor"] else 0), command
        done = lab.run("check", at=DUE)  # reads it, and says that ticks cannot write it
        assert done.returncode == 1 and one_line(done.stderr)
        assert f"database {path} is read-only: run_scheduled on node node1" in done.stderr
        assert "due" in lab.run("list", at=DUE).stdout
        for command in (["run_scheduled", "-c"], ["task", "disable", "due"],
                        ["counter", "incr", "c"]):
            done = lab.run(*command, at=DUE + timedelta(minutes=5))
            assert done.returncode == 3 and one_line(done.stderr), (command, done.stderr)
            assert f"database {path}: is read-only" in done.stderr
        after = _fingerprint(path)
    assert after == before  # not written, and no -wal or -shm left beside it


def test_the_web_page_reads_a_read_only_database(lab, serve):
    from tests.reliability.conftest import api_token

    path = str(lab.tmp / "sub" / "picron.db")
    os.mkdir(os.path.dirname(path))
    _picron_db(lab, path)
    api_token(lab)  # created while the file is writable
    with read_only(path):
        before = _fingerprint(path)
        served = serve()
        status, _, body = served.request("GET", "/api/tasks")
        assert status == 200 and json.loads(body)[0]["name"] == "due"
        assert served.request("GET", "/")[0] == 200
        status, _, body = served.request("POST", "/api/tasks/1/run", {})
        assert status == 503 and b"is read-only" in body
        served.stop()
        after = _fingerprint(path)
    assert after == before


@contextmanager
def small_filesystem(directory, size: str = "256k"):
    """A tmpfs of ``size`` mounted on ``directory`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem to fill needs root")
    os.mkdir(directory)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(directory)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def _fill(directory) -> None:
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


@pytest.mark.parametrize("open_while_filling", [False, True], ids=["closed", "open"])
def test_a_full_disk_is_reported_as_disk_full(lab, open_while_filling):
    with small_filesystem(lab.tmp / "small") as small:
        path = str(small / "picron.db")
        _picron_db(lab, path)
        holder = None
        if open_while_filling:  # the -wal and -shm exist: SQLite says "database or disk is full"
            holder = sqlite3.connect(path)
            holder.execute("select count(*) from task").fetchone()
        _fill(small)            # else creating the -shm fails: SQLite says "disk I/O error"
        try:
            for command in (["run_scheduled", "-c"], ["counter", "incr", "c"]):
                done = lab.run(*command, at=DUE)
                assert done.returncode == 3 and one_line(done.stderr), done.stderr
                assert f"database {path}: disk full" in done.stderr
        finally:
            if holder is not None:
                holder.close()


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
