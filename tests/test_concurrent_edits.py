"""Concurrent edits of one task lose nothing (issue 10): ``task edit`` reads, changes and
writes the task in one transaction, so two writers of different fields never revert each
other; an edit that changes nothing writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from picron.records import TaskSpec
from picron.storage import open_store
from tests.conftest import START

EDITS = 40
WORKER = r"""
import contextlib, io, json, os, sys, time
from picron.cli import main
from picron.storage import open_store

location, field, flag, go = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.001)
store = open_store(location)
reverted = 0
for value in range(1, EDITS + 1):
    seen = getattr(store.get_task(1), field)
    reverted += seen != value - 1  # what this writer wrote last is still there
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["task", "edit", "t", flag, str(value)]) == 0
    assert json.loads(out.getvalue())[field] == value
store.close()
print(reverted)
""".replace("EDITS", str(EDITS))


def test_two_writers_of_different_fields_lose_no_acknowledged_edit(location, tmp_path):
    with open_store(location) as store:
        store.add_task(TaskSpec("t", "@hourly", "simplestats", ("node1",), max_retries=0,
                                timeout=1), START)
    go = str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PICRON_DB": location,
           "PICRON_NODE": "node1"}
    env.pop("PICRON_CONFIG", None)
    writers = [subprocess.Popen([sys.executable, "-c", WORKER, location, field, flag, go],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for field, flag in (("ordering", "--ordering"), ("max_retries", "--max-retries"))]
    open(go, "w").close()
    results = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], results
    assert [int(out) for out, _ in results] == [0, 0]  # no acknowledged edit reverted
    with open_store(location) as store:
        task = store.get_task(1)
        edits = [entry for entry in store.list_audit(limit=1000) if entry.action == "edit"]
    assert (task.ordering, task.max_retries, task.timeout) == (EDITS, EDITS, 1)
    assert len(edits) == 2 * EDITS


def test_an_edit_that_changes_nothing_writes_nothing(store, clock):
    task = store.add_task(TaskSpec("t", "@hourly", "succeed", ("node1",)), START)
    later = START + timedelta(minutes=10)
    assert store.edit_task(task.id, lambda spec: spec, later) == task
    assert store.update_task(task.id, task.spec, later) == task
    assert store.set_active(task.id, True, later) == task
    assert [entry.action for entry in store.list_audit()] == ["create"]
    assert store.get_task(task.id).last_update == START


def test_a_failing_change_writes_nothing(store):
    from picron.errors import ValidationError

    task = store.add_task(TaskSpec("t", "@hourly", "succeed", ("node1",)), START)

    def change(spec):
        raise ValidationError("ordering: no", field="ordering")

    try:
        store.edit_task(task.id, change, START + timedelta(minutes=1))
    except ValidationError:
        pass
    else:
        raise AssertionError("the change's error must reach the caller")
    assert store.get_task(task.id) == task
