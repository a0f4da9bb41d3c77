"""Executing one task module: in-process, or in a forked child that a timeout can kill.

An in-process timeout cannot stop a task that swallows exceptions or sits in a long C
call; a child process in its own process group can always be killed, together with any
command it started. The child dies with its parent, so a killed runner leaves nothing.

Inside a ``fork_server()`` block (a tick's run loop), ``run_in_child`` does not fork the
caller: a helper process, forked when the first task runs (after its claim: starting it
earlier would delay the claim, and a slow tick would claim a run that a quicker one had
just finished), forks each child and hands back its pid. A fork write-protects every page
of the forking process, and the tick then faults on each page it writes (the store, the
claim, the next run's time): about 600 page faults per task in a 21 MB tick, which the
helper, doing little between forks, does not pay. The caller still owns the child's fate: it reads the result from a
pipe, kills the child's process group at the timeout, and asks the helper for the exit
status. The helper dies with the tick, and the children with the helper. A request the
helper cannot take (a context that cannot be pickled, such as a lambda clock; a class
the helper cannot import) forks the caller as before, and so does every other thread.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import threading
import time
from contextlib import contextmanager
from functools import cache

from picron.modules import TaskContext, TaskModule
from picron.records import truncate_message

_PR_SET_PDEATHSIG = 1
# Children that delivered their result and may still be exiting: unmapping a copy of this
# process takes about as long as running a small task, so they are reaped before the next
# fork instead of waited for (at most one is left, as a zombie, when the process ends).
_exiting: list[int] = []
# The helper of the fork_server() block running in this thread, if any.
_local = threading.local()


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
    server = getattr(_local, "server", None)
    if server is not None:
        go_read, go_write = os.pipe() if watch else (None, None)
        started = server.start_child(module, options, context, go_read)
        if go_read is not None:
            os.close(go_read)  # the helper passed it on to the child
        if started is not None:
            pid, read_end = started
            try:
                return _watch_and_collect(pid, read_end, go_write, timeout, watch,
                                          server.wait, lambda pid: None)
            finally:
                os.close(read_end)
        if go_write is not None:
            os.close(go_write)
    _reap_exited()
    pdeathsig = _pdeathsig_setter()
    parent = os.getpid()
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe() if watch else (None, None)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            if go_read is not None:
                os.close(go_write)
            _run_child(write_end, parent, pdeathsig, module, options, context, go_read)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        if go_read is not None:
            os.close(go_read)
        return _watch_and_collect(pid, read_end, go_write, timeout, watch, _wait,
                                  _exiting.append)
    finally:
        os.close(read_end)


def _run_child(write_end: int, parent: int, pdeathsig, module: type[TaskModule],
               options: dict, context: TaskContext, go_read: int | None = None) -> None:
    """The forked child: its own process group, dies with ``parent``, result to the pipe;
    with ``go_read``, it starts the task only once the tick has recorded its group."""
    os.setpgid(0, 0)
    pdeathsig()
    if os.getppid() != parent:
        os._exit(1)
    if go_read is not None:
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


@contextmanager
def fork_server(enabled: bool = True):
    """Within this block, this thread's ``run_in_child`` children come from a helper process.

    The helper is forked when the first child is needed and stopped at the end of the
    block. Nothing happens unless ``enabled``.
    """
    if not enabled or getattr(_local, "server", None) is not None:  # nested: the outer one's
        yield
        return
    _local.server = server = _ForkServer()
    try:
        yield
    finally:
        _local.server = None
        server.stop()


class _ForkServer:
    """The caller's side of the helper: a socket to it, and its pid once it runs."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self.broken = False

    def start_child(self, module: type[TaskModule], options: dict, context: TaskContext,
                    go_read: int | None = None) -> tuple[int, int] | None:
        """(pid, read end of its result pipe) of a child the helper forked, or None;
        ``go_read`` is passed on to the child (see ``_run_child``)."""
        if self.broken or os.getpid() != self.owner:
            return None
        try:
            request = pickle.dumps((module, options, context))
        except Exception:  # noqa: BLE001 - e.g. a lambda clock: the caller forks itself
            return None
        if self.pid is None:
            self._start()
            if self.broken:
                return None
        read_end, write_end = os.pipe()
        try:
            socket.send_fds(self.sock, [request],
                            [write_end] if go_read is None else [write_end, go_read])
            pid = int(self.sock.recv(32))
        except (OSError, ValueError):  # the helper is gone: fork directly from now on
            self.broken = True
            pid = -1
        finally:
            os.close(write_end)
        if pid < 0:  # the helper could not unpickle the request (an import failed)
            os.close(read_end)
            return None
        return pid, read_end

    def wait(self, pid: int) -> int:
        """The exit status of a child of the helper (waits for its end)."""
        try:
            self.sock.send(pickle.dumps(pid))
            return int(self.sock.recv(32))
        except (OSError, ValueError):
            self.broken = True
            return 0

    def _start(self) -> None:
        pdeathsig = _pdeathsig_setter()
        parent = os.getpid()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
        except OSError:  # no helper (out of processes or memory): the caller forks
            self.broken = True
            return
        if pid == 0:  # the helper: never returns
            try:
                ours.close()
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tick handles Ctrl-C
                pdeathsig()
                if os.getppid() == parent:
                    _serve(theirs, pdeathsig)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self.sock = pid, ours

    def stop(self) -> None:
        if self.pid is None or os.getpid() != self.owner:
            return
        try:
            self.sock.send(b"")  # an empty message: stop
        except OSError:
            pass
        self.sock.close()
        os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, pdeathsig) -> None:
    """The helper's loop: a pickled (module, options, context) with a pipe -> fork a child.

    A pickled int asks for that child's exit status; an empty message ends the loop.
    """
    helper = os.getpid()
    exited: dict[int, int] = {}
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if not data:
            return
        try:
            request = pickle.loads(data)
        except Exception:  # noqa: BLE001 - e.g. a module the helper cannot import
            request = None
        if isinstance(request, int):
            status = exited.pop(request, None)
            if status is None:
                _, status = os.waitpid(request, 0)
            sock.send(str(status).encode())
            continue
        while True:  # reap the children that ended since the last request
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            exited[pid] = status
        pid = -1
        if request is not None:
            pid = os.fork()
            if pid == 0:  # the task's child: never returns
                try:
                    sock.close()
                    _run_child(fds[0], helper, pdeathsig, *request,
                               go_read=fds[1] if len(fds) > 1 else None)
                finally:
                    os._exit(0)
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())


def _watch_and_collect(pid: int, read_end: int, go_write: int | None, timeout: float, watch,
                       wait, later) -> tuple[str, str]:
    if watch is not None and not _start_watched(pid, go_write, watch, wait):
        return "interrupted", "not started: another process recorded the run meanwhile"
    return _collect(pid, read_end, timeout, wait, later, watch)


def _start_watched(pid: int, go_write: int, watch, wait) -> bool:
    """Let the child start once ``watch.started`` has recorded its group; False: it may not."""
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
            wait(pid)
    return go


def _collect(pid: int, read_end: int, timeout: float, wait, later,
             watch=None) -> tuple[str, str]:
    """Read the child's result until it ends or ``timeout``; ``wait(pid)`` gives its exit
    status, ``later(pid)`` takes a child that delivered its result and is still exiting;
    ``watch.renew()`` every ``watch.every`` s (False: stop the child, ``interrupted``)."""
    now = time.monotonic()
    deadline = now + timeout
    renew_at = now + watch.every if watch else float("inf")
    data = b""
    while True:
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            _kill_group(pid)
            wait(pid)
            return "timeout", f"stopped after the timeout of {timeout:g} s"
        if now >= renew_at:
            renew_at = now + watch.every
            if not watch.renew():
                _kill_group(pid)
                wait(pid)
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
        later(pid)
        return state.decode(), message[:-1].decode("utf-8", "surrogatepass")
    return "failed", f"the task process died ({_describe_exit(wait(pid))})"


def _wait(pid: int) -> int:
    return os.waitpid(pid, 0)[1]


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
