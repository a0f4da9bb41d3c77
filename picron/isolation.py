"""Executing one task module: in-process, or in a forked child that a timeout can kill.

An in-process timeout cannot stop a task that swallows exceptions or sits in a long C
call; a child process in its own process group can always be killed, together with any
command it started. The child dies with its parent, so a killed runner leaves nothing.
"""
from __future__ import annotations

import os
import select
import signal
import time
from functools import cache

from picron.modules import TaskContext, TaskModule
from picron.records import truncate_message

_PR_SET_PDEATHSIG = 1
# Children that delivered their result and may still be exiting: unmapping a copy of this
# process takes about as long as running a small task, so they are reaped before the next
# fork instead of waited for (at most one is left, as a zombie, when the process ends).
_exiting: list[int] = []


def run_module(module: type[TaskModule], options: dict, context: TaskContext) -> tuple[str, str]:
    """Run ``module.do(options)`` here; returns (status, message). Never raises."""
    instance = None
    try:
        instance = module(context)
        ok = instance.do(options)
    except Exception as error:  # a task's failure must never stop the runner
        context.logger.debug("task %s raised", context.task_name, exc_info=True)
        said = "\n".join(instance.output) + "\n" if instance and instance.output else ""
        return "failed", truncate_message(f"{said}{type(error).__name__}: {error}")
    message = "\n".join(instance.output)
    if ok is True:
        return "success", truncate_message(message)
    return "failed", truncate_message(message or f"module {module.identifier} reported failure")


def run_in_child(module: type[TaskModule], options: dict, context: TaskContext,
                 timeout: float, watch=None) -> tuple[str, str]:
    """Run the module in a forked child; kill it (and its process group) after ``timeout`` s.

    ``watch`` (optional) is told the child's process group (``watch.started(pgid)``, before
    the child may start the task; False: it may not) and asked every ``watch.every``
    seconds to renew the run's lease (``watch.renew()``); when that returns False the child
    and its group are stopped (status ``interrupted``).
    """
    _reap_exited()
    pdeathsig = _pdeathsig_setter()
    parent = os.getpid()
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe() if watch else (None, None)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            os.setpgid(0, 0)
            pdeathsig()
            if os.getppid() != parent:
                os._exit(1)
            if go_read is not None:  # start only once the parent has recorded our group
                os.close(go_write)
                if os.read(go_read, 1) != b"g":
                    os._exit(1)
                os.close(go_read)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            status, message = run_module(module, options, context)
            result = f"{status}\0{message}\0".encode("utf-8", "surrogatepass")
            while result:
                result = result[os.write(write_end, result):]
            os.close(write_end)  # the parent reads to the end now, not after our exit
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        if watch is not None and not _start_watched(pid, go_read, go_write, watch):
            return "interrupted", "not started: another process recorded the run meanwhile"
        return _collect(pid, read_end, timeout, watch)
    finally:
        os.close(read_end)


def _start_watched(pid: int, go_read: int, go_write: int, watch) -> bool:
    """Let the child start once ``watch.started`` has recorded its group; False: it may not."""
    os.close(go_read)
    try:
        os.setpgid(pid, pid)  # also here: the group must exist before anyone may kill it
    except OSError:
        pass  # the child did it first (EACCES once it runs), or it died
    go = False
    try:
        go = watch.started(pid)
        if go:
            os.write(go_write, b"g")
    finally:
        os.close(go_write)  # without a "g" the child exits without running the task
        if not go:  # also when started() raised
            os.waitpid(pid, 0)
    return go


def _collect(pid: int, read_end: int, timeout: float, watch=None) -> tuple[str, str]:
    now = time.monotonic()
    deadline = now + timeout
    renew_at = now + watch.every if watch else float("inf")
    data = b""
    while True:
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            _kill_group(pid)
            os.waitpid(pid, 0)
            return "timeout", f"stopped after the timeout of {timeout:g} s"
        if now >= renew_at:
            renew_at = now + watch.every
            if not watch.renew():
                _kill_group(pid)
                os.waitpid(pid, 0)
                return "interrupted", "stopped: its lease in the database could not be renewed"
            continue
        ready, _, _ = select.select([read_end], [], [], min(remaining, renew_at - now))
        if ready:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    _kill_group(pid)  # leftovers the task started in the background
    # "status NUL message NUL": anything else (nothing, or cut short) means the child died.
    state, _, message = data.partition(b"\0")
    if state in (b"success", b"failed") and message.endswith(b"\0"):
        _exiting.append(pid)
        return state.decode(), message[:-1].decode("utf-8", "surrogatepass")
    _, status = os.waitpid(pid, 0)
    return "failed", f"the task process died ({_describe_exit(status)})"


def _reap_exited() -> None:
    while _exiting:
        try:
            os.waitpid(_exiting.pop(), 0)
        except (IndexError, ChildProcessError):  # another thread reaped it meanwhile
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


@cache
def _pdeathsig_setter():
    """A function that makes the calling (child) process die with its parent (Linux).

    Built once per process: loading libc through ctypes costs more than the fork itself.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError, ImportError):
        return lambda: None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
