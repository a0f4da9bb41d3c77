"""Who owns a run, whether that owner still lives, and stopping what a dead one left behind.

A process id means something only on the host, boot and PID namespace that wrote it, and
only together with the process's start time, because pids are reused (SPEC §2 rule 6).
Elsewhere the run's lease decides. A task's child is the leader of its own process group,
so everything the task started (``sh``, ``sleep``) can be found and stopped through the
group id when the runner was killed and its programs were adopted by PID 1.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache

# How long to wait for a killed process group to disappear before giving up.
STOP_WAIT = 5.0
# ``picron check`` warns beyond this difference between the node's and the server's clock.
CLOCK_SKEW_LIMIT = 30.0


@dataclass(frozen=True)
class Owner:
    """The process that runs a task: enough to tell, later, whether it is still that one.

    ``proc_start`` is field 22 of ``/proc/PID/stat`` (clock ticks after boot); ``pgid`` is
    the process group of the task's child (its pid), None until the child exists.
    """

    host: str
    boot_id: str
    pidns: str
    pid: int
    proc_start: int | None
    pgid: int | None = None


@cache
def _machine() -> tuple[str, str]:
    return _read("/proc/sys/kernel/random/boot_id").strip(), _readlink("/proc/self/ns/pid")


def this_process(host: str | None = None) -> Owner:
    """The calling process as a run owner; ``host`` overrides the host name (tests)."""
    boot_id, pidns = _machine()
    pid = os.getpid()
    stat = _stat(pid)
    return Owner(host=host or os.uname().nodename, boot_id=boot_id, pidns=pidns, pid=pid,
                 proc_start=int(stat[19]) if stat else None)


def is_local(owner: Owner, me: Owner) -> bool:
    """Whether ``owner``'s pids mean the same here as for ``me``: same host, boot, namespace.

    An identity that could not be read (an empty boot id or namespace) is never local.
    """
    return (bool(owner.boot_id) and bool(owner.pidns) and owner.host == me.host
            and owner.boot_id == me.boot_id and owner.pidns == me.pidns)


def owner_alive(owner: Owner, me: Owner) -> bool | None:
    """Whether the owner process still runs: True/False where its pid can be trusted
    (``is_local``), None elsewhere (the caller must rely on the run's lease)."""
    if not is_local(owner, me) or owner.proc_start is None:
        return None
    stat = _stat(owner.pid)
    return stat is not None and stat[0] not in ("Z", "X") and int(stat[19]) == owner.proc_start


def stop_group(owner: Owner, wait: float = STOP_WAIT) -> bool:
    """Kill (SIGKILL) what is left of ``owner``'s task process group and wait until it is gone.

    Only on the owner's own host, boot and namespace (call it after ``owner_alive`` said
    False). Processes that started before the owner cannot belong to its task: finding one
    means the group id was reused, and that group is left alone. Returns True when nothing
    of the group runs any more (also when there was no group), False if something survived
    ``wait`` seconds or could not be signalled.
    """
    if owner.pgid is None or owner.pgid <= 1:
        return True
    members = _group(owner.pgid)
    if owner.proc_start is not None and any(start < owner.proc_start
                                            for start in members.values()):
        return True  # not the task's group: its id now belongs to older processes
    deadline = time.monotonic() + wait
    while members:
        try:
            os.killpg(owner.pgid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
        members = _group(owner.pgid)
    return True


def clock_skew_warning(node_now: datetime, db_now: datetime) -> str | None:
    """A warning when this node's clock is more than 30 s off the database server's
    (``picron check``, SPEC §4); None when they agree. On SQLite they are one clock."""
    skew = (node_now - db_now).total_seconds()
    if abs(skew) <= CLOCK_SKEW_LIMIT:
        return None
    return (f"warning: this node's clock is {abs(skew):.0f} s "
            f"{'ahead of' if skew > 0 else 'behind'} the database server's: tasks run by "
            "this node's clock, leases are measured by the server's; check its time sync")


def _group(pgid: int) -> dict[int, int]:
    """The live (not zombie) processes of a process group: {pid: start time}."""
    members = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and int(stat[2]) == pgid and stat[0] not in ("Z", "X"):
                members[int(name)] = int(stat[19])
    return members


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (index 0 = state, 2 = pgrp, 19 = starttime)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
