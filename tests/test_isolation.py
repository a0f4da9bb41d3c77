"""Runs in forked children: timeouts, killed runners, and concurrent run_scheduled processes."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from datetime import timedelta, timezone

import pytest

from picron.errors import StorageError
from picron.isolation import _local, fork_server, run_in_child
from picron.modules import Option, Registry, TaskContext, TaskModule, load_modules
from picron.modules.command import Command
from picron.records import TaskSpec
from picron.runner import Runner
from picron.storage import open_store
from tests.conftest import FAKE_MODULES, FakeClock

UTC = timezone.utc


class Append(TaskModule):
    """Appends one line to a file: counts executions across processes."""

    identifier = "append"
    description = "test"
    options = {"path": Option("str", "file", required=True)}

    def do(self, options):
        fd = os.open(options["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{self.context.task_name} {os.getpid()}\n".encode())
        os.close(fd)
        time.sleep(0.05)
        return True


class Spin(TaskModule):
    """Ignores every exception in a busy loop: only a kill stops it."""

    identifier = "spin"
    description = "test"
    options = {}

    def do(self, options):
        while True:
            try:
                time.sleep(0.01)
            except BaseException:  # noqa: B036 - that is the point of this module
                pass


REGISTRY = Registry(modules={**FAKE_MODULES, "append": Append, "spin": Spin})


def file_store(path):
    return open_store(path, default_zone=UTC)


def runner_for(path, clock, node="node1"):
    return Runner(file_store(path), REGISTRY, node=node, clock=clock)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "picron.db")


def test_a_hung_task_is_stopped_at_its_timeout_and_the_next_task_runs(path):
    clock = FakeClock()
    store = file_store(path)
    store.add_task(TaskSpec("hangs", "*/5 * * * *", "spin", ("node1",), timeout=1), clock())
    store.add_task(TaskSpec("after", "*/5 * * * *", "succeed", ("node1",), ordering=1), clock())
    clock.advance(minutes=5)
    report = runner_for(path, clock).run_scheduled()
    assert [(r.task, r.status) for r in report.results] == [("hangs", "timeout"),
                                                            ("after", "success")]
    assert report.results[0].duration < 10
    assert "timeout of 1 s" in store.list_runs(status="timeout")[0].message


def test_child_output_and_exceptions_reach_the_message(path):
    clock = FakeClock()
    store = file_store(path)
    task = store.add_task(TaskSpec("boom", "@hourly", "boom", ("node1",)), clock())
    result = runner_for(path, clock).run_manually(task.id)
    assert result.status == "failed" and result.message == "RuntimeError: kaboom"


def _run_and_get_killed(path, task_id):
    runner_for(path, FakeClock()).run_manually(task_id)


def test_a_killed_runner_leaves_an_interrupted_run_that_is_retried(path):
    clock = FakeClock()
    store = file_store(path)
    task = store.add_task(TaskSpec("slow", "*/5 * * * *", "sleep", ("node1",),
                                   options={"seconds": "30"}), clock())
    process = multiprocessing.get_context("fork").Process(target=_run_and_get_killed,
                                                          args=(path, task.id))
    process.start()
    deadline = time.monotonic() + 20
    while not store.running_runs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.running_runs(), "the run never started"
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert sqlite3.connect(store.location).execute("pragma integrity_check").fetchone()[0] == "ok"
    clock.advance(minutes=5)
    store.update_task(task.id, TaskSpec("slow", "*/5 * * * *", "succeed", ("node1",)),
                      clock() - timedelta(minutes=5))
    report = runner_for(path, clock).run_scheduled()
    assert len(report.interrupted) == 1
    assert [r.status for r in report.results] == ["success"]
    assert [r.status for r in store.list_runs(task.id)] == ["success", "interrupted"]
    assert store.running_runs() == []


def _tick_when_released(path, barrier, now, node):
    clock = FakeClock(now)
    barrier.wait()
    runner_for(path, clock, node).run_scheduled()


@pytest.mark.parametrize("nodes", [("node1",), ("node1", "node2")])
def test_overlapping_run_scheduled_processes_run_each_due_task_once(path, tmp_path, nodes):
    """Eight processes released together per node, three due tasks, three slots."""
    log = str(tmp_path / "executions.log")
    clock = FakeClock()
    store = file_store(path)
    for name in ("a", "b", "c"):
        store.add_task(TaskSpec(name, "*/5 * * * *", "append", nodes, options={"path": log}),
                       clock())
    context = multiprocessing.get_context("fork")
    slots = 3
    for slot in range(1, slots + 1):
        now = clock.advance(minutes=5)
        barrier = context.Barrier(8 * len(nodes))
        processes = [context.Process(target=_tick_when_released,
                                     args=(path, barrier, now, node))
                     for _ in range(8) for node in nodes]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        with open(log) as file:
            lines = file.read().splitlines()
        assert len(lines) == 3 * slot * len(nodes)
    runs = store.list_runs(limit=1000)
    assert len(runs) == 3 * slots * len(nodes)
    assert {r.status for r in runs} == {"success"}
    assert len({(r.task, r.node, r.start) for r in runs}) == len(runs)  # no slot twice


# -- the fork helper of a tick (isolation.fork_server) -----------------------------------------

class Parent(TaskModule):
    """Says which process forked it; with ``exit`` set, dies with that exit status instead."""

    identifier = "parent"
    description = "test"
    options = {"exit": Option("int", "exit status", default=0)}

    def do(self, options):
        if options["exit"]:
            os._exit(options["exit"])
        self.say(str(os.getppid()))
        return True


def task_context(now=None):
    return TaskContext(node="node1", location="unused.db", now=now or FakeClock(), timeout=10,
                       task_name="t")


def test_in_a_tick_children_are_forked_by_a_helper_that_ends_with_the_block():
    assert run_in_child(Parent, {"exit": 0}, task_context(), 10) == ("success", str(os.getpid()))
    with fork_server():
        first = run_in_child(Parent, {"exit": 0}, task_context(), 10)
        helper = _local.server.pid
        assert first == ("success", str(helper)) and helper != os.getpid()
        assert run_in_child(Parent, {"exit": 0}, task_context(), 10) == first
        assert run_in_child(Parent, {"exit": 3}, task_context(), 10) == (
            "failed", "the task process died (exit status 3)")
        started = time.monotonic()
        assert run_in_child(Spin, {}, task_context(), 1) == (
            "timeout", "stopped after the timeout of 1 s")
        assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(helper, 0)


def test_a_request_the_helper_cannot_take_forks_the_caller():
    with fork_server():
        assert run_in_child(Parent, {"exit": 0}, task_context(now=lambda: None), 10) == (
            "success", str(os.getpid()))  # a lambda cannot be pickled


def test_a_hung_task_of_a_helper_is_stopped_with_its_process_group(path, tmp_path):
    """The timeout kills what the task started too, as when the tick forks it itself."""
    clock = FakeClock()
    store = open_store(path)
    marker = tmp_path / "grandchild.pid"
    store.add_task(TaskSpec("hangs", "*/5 * * * *", "command", ("node1",), timeout=1,
                            options={"command": f"sh -c 'echo $$ > {marker}; sleep 60'"}),
                   clock())
    clock.advance(minutes=5)
    registry = Registry(modules={"command": load_modules().get("command")})
    report = Runner(open_store(path), registry, node="node1",
                    clock=clock).run_scheduled()
    assert [r.status for r in report.results] == ["timeout"]
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _wait_until_dead(*pids, timeout=10):
    """SIGKILL takes effect asynchronously: the processes die (or become zombies) soon."""
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.01)


def _context():
    return TaskContext(node="node1", location=":memory:", now=FakeClock(), timeout=60,
                       task_name="t")


def _wait_for_file(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and open(path).read().strip()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.01)
    return open(path).read().split()


def test_a_timeout_also_stops_the_programs_the_task_started(tmp_path):
    marker = tmp_path / "pids"
    options = {"command": f"sh -c 'sleep 60 & echo $$ $! > {marker}; wait'", "workdir": ""}
    status, message = run_in_child(Command, options, _context(), 1)
    assert status == "timeout"
    _wait_until_dead(*map(int, _wait_for_file(marker)))


class _Watch:
    def __init__(self, every, renewals, marker=None):
        self.every, self.renewals, self.marker = every, list(renewals), marker
        self.groups = []

    def started(self, pgid):
        assert self.marker is None or not os.path.exists(self.marker)  # not started yet
        self.groups.append(pgid)
        return self.go

    go = True

    def renew(self):
        return self.renewals.pop(0)


def test_the_task_runs_in_the_process_group_reported_before_it_starts(tmp_path):
    marker = tmp_path / "group"
    watch = _Watch(60, [], marker=str(marker))
    options = {"command": f"sh -c 'cut -d\" \" -f5 /proc/$$/stat > {marker}'", "workdir": ""}
    assert run_in_child(Command, options, _context(), 30, watch) == ("success", "")
    assert [int(marker.read_text())] == watch.groups


def test_a_lease_that_cannot_be_renewed_stops_the_task_and_its_programs(tmp_path):
    marker = tmp_path / "pids"
    watch = _Watch(0.2, [True, True, False])
    options = {"command": f"sh -c 'sleep 60 & echo $$ $! > {marker}; wait'", "workdir": ""}
    status, message = run_in_child(Command, options, _context(), 60, watch)
    assert (status, watch.renewals) == ("interrupted", [])
    assert "lease" in message
    _wait_until_dead(*map(int, _wait_for_file(marker)))


def test_a_child_whose_run_was_recorded_meanwhile_never_starts_the_task(tmp_path):
    marker = tmp_path / "ran"
    watch = _Watch(60, [])
    watch.go = False
    options = {"command": f"touch {marker}", "workdir": ""}
    status, message = run_in_child(Command, options, _context(), 30, watch)
    assert status == "interrupted" and "not started" in message
    _wait_until_dead(watch.groups[0])
    assert not marker.exists()


def _leased_runner(path, clock):
    return Runner(file_store(path), REGISTRY, node="node1", clock=clock, lease_seconds=0.4)


def test_a_run_recorded_by_another_process_is_stopped_and_not_overwritten(path):
    """Another host found the lease expired and recorded the run interrupted: the parent
    stops its child at the next renewal and leaves that record alone (compare-and-set)."""
    clock = FakeClock()
    store = file_store(path)
    task = store.add_task(TaskSpec("slow", "*/5 * * * *", "spin", ("node1",)), clock())
    runner = _leased_runner(path, clock)
    claim = runner.claim_manual(task.id)
    other = file_store(path)

    def recover_elsewhere():
        while not [r for r in other.running_runs() if r.pgid]:  # the child is at work
            time.sleep(0.01)
        assert other.finish_run(claim.run_id, "interrupted", clock(), 1.0,
                                "interrupted: its lease expired (test)")

    recovering = threading.Thread(target=recover_elsewhere)
    recovering.start()
    result = runner.execute(claim)
    recovering.join()
    assert (result.status, result.message) == ("interrupted",
                                               "interrupted: its lease expired (test)")
    (run,) = store.list_runs(task.id)
    assert run.message == "interrupted: its lease expired (test)" and run.duration == 1.0


def test_a_parent_that_cannot_renew_its_lease_stops_its_child(path, monkeypatch):
    clock = FakeClock()
    store = file_store(path)
    task = store.add_task(TaskSpec("slow", "*/5 * * * *", "spin", ("node1",)), clock())
    runner = _leased_runner(path, clock)
    renewals = []

    def database_gone(run_id, lease_until, pgid=None):
        renewals.append(pgid)
        if pgid is None:  # the first call records the group; then the server is gone
            raise StorageError("database server 127.0.0.1 is gone")
        return True

    monkeypatch.setattr(runner.store, "renew_run", database_gone)
    result = runner.run_manually(task.id)
    assert result.status == "interrupted" and "lease" in result.message
    assert len(renewals) == 1 + 3  # started, then three failed renewals: 3/4 of the lease
    _wait_until_dead(renewals[0])


def test_a_helper_child_waits_for_its_group_to_be_recorded_and_its_lease_is_renewed():
    """The go-pipe protocol of the lease also holds for children the fork helper makes."""
    with fork_server():
        watch = _Watch(0.05, [True] * 1000)
        status, parent = run_in_child(Sleepy, {"seconds": "0.3"}, task_context(), 10, watch)
        assert status == "success" and int(parent) == _local.server.pid
        assert len(watch.groups) == 1 and len(watch.renewals) < 1000  # renewed meanwhile
        refused = _Watch(60, [])
        refused.go = False
        assert run_in_child(Sleepy, {"seconds": "0"}, task_context(), 10, refused)[0] == \
            "interrupted"


class Sleepy(TaskModule):
    """Sleeps, then says which process forked it."""

    identifier = "sleepy"
    description = "test"
    options = {"seconds": Option("str", "how long")}

    def do(self, options):
        time.sleep(float(options["seconds"]))
        self.say(str(os.getppid()))
        return True
