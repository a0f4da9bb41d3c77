"""Runs in forked children: timeouts, killed runners, and concurrent run_scheduled processes."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from datetime import timedelta, timezone

import pytest

from picron.modules import Option, Registry, TaskModule
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
