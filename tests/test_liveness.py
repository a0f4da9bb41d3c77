"""Run owners: which pids can be trusted, and stopping what a dead runner's task left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from picron.config import load_config
from picron.errors import ConfigError
from picron.liveness import (clock_skew_warning, is_local, owner_alive, stop_group,
                             this_process)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_this_process_knows_its_host_boot_namespace_and_start_time():
    me = this_process()
    assert me.pid == os.getpid() and me.host == os.uname().nodename
    with open("/proc/sys/kernel/random/boot_id") as file:
        assert me.boot_id == file.read().strip()
    assert me.pidns == os.readlink("/proc/self/ns/pid")
    assert me.proc_start > 0
    assert this_process(host="elsewhere").host == "elsewhere"


def test_a_pid_is_trusted_only_on_the_same_host_boot_and_namespace():
    me = this_process()
    assert is_local(me, me) and owner_alive(me, me) is True
    for other in (replace(me, host="other"), replace(me, boot_id="another-boot"),
                  replace(me, pidns="pid:[1]"), replace(me, boot_id=""), replace(me, pidns="")):
        assert not is_local(other, me)
        assert owner_alive(other, me) is None  # cannot tell here: the lease decides


def test_a_reused_pid_is_not_the_owner():
    me = this_process()
    assert owner_alive(replace(me, proc_start=me.proc_start - 1), me) is False
    assert owner_alive(replace(me, proc_start=None), me) is None


def test_a_dead_or_zombie_owner_is_dead():
    me = this_process()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    with open(f"/proc/{child.pid}/stat", "rb") as file:
        start = int(file.read().rsplit(b")", 1)[1].split()[19])
    owner = replace(me, pid=child.pid, proc_start=start)
    deadline = time.monotonic() + 30
    while owner_alive(owner, me) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert owner_alive(owner, me) is False  # exited, not yet reaped: a zombie
    child.wait()
    assert owner_alive(owner, me) is False


def test_stop_group_kills_the_programs_left_in_a_dead_childs_group(tmp_path):
    me = this_process()
    # A group leader that starts a program and dies, as a task child killed with its runner.
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $! > pid; exec sleep 60"], cwd=tmp_path,
        process_group=0)
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    left = int((tmp_path / "pid").read_text())
    leader.kill()
    leader.wait()
    assert _alive(left) and os.getpgid(left) == leader.pid  # adopted, still in the group
    assert stop_group(replace(me, pgid=leader.pid)) is True
    assert not _alive(left)
    assert stop_group(replace(me, pgid=leader.pid)) is True  # nothing left: still fine


def test_stop_group_leaves_a_reused_group_of_older_processes_alone():
    me = this_process()
    older = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        # this owner started after the group's process: the group cannot be its task's
        later = replace(me, pgid=older.pid, proc_start=10 ** 12)
        assert stop_group(later) is True
        assert older.poll() is None
    finally:
        older.kill()
        older.wait()


def test_stop_group_without_a_group_does_nothing():
    assert stop_group(this_process()) is True


def test_lease_seconds_defaults_to_60_and_must_be_at_least_5(tmp_path):
    config = tmp_path / "picron.toml"
    assert load_config(env={}).lease_seconds == 60
    config.write_text("lease_seconds = 5\n")
    assert load_config(str(config), env={}).lease_seconds == 5
    for bad in ("4", "0", "-60", '"60"', "true"):
        config.write_text(f"lease_seconds = {bad}\n")
        with pytest.raises(ConfigError, match="lease_seconds") as error:
            load_config(str(config), env={})
        assert str(config) in str(error.value)


def test_check_warns_when_the_clocks_differ_by_more_than_30_seconds():
    server = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert clock_skew_warning(server + timedelta(seconds=30), server) is None
    assert clock_skew_warning(server - timedelta(seconds=30), server) is None
    ahead = clock_skew_warning(server + timedelta(minutes=10), server)
    assert "600 s ahead of the database server's" in ahead
    assert "31 s behind" in clock_skew_warning(server - timedelta(seconds=31), server)
