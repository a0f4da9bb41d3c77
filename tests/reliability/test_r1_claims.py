"""R1 and M1: one start per (task, node, slot) with many ``run_scheduled`` processes released
together - on SQLite (R1: 16 processes) and on PostgreSQL (M1: 3 nodes x 8 processes)."""
from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest

from tests.reliability.conftest import T0, read_events, scale, slot_of

SLOTS = scale(3, 50)


@pytest.mark.parametrize("lab, nodes, processes, tasks", [
    ("sqlite", ("node1",), 16, 3), ("sqlite", ("a", "b"), 16, 3),
    ("postgres", ("a", "b", "c"), 24, 5)], indirect=["lab"],
    ids=["R1-one-node", "R1-two-nodes", "M1-postgres-three-nodes"])
def test_overlapping_ticks_start_each_due_task_once_per_slot(lab, figure, nodes, processes,
                                                             tasks):
    log = lab.log()
    lab.add_tasks(*({"name": f"t{i}", "interval": "*/5 * * * *", "taskmodule": "record",
                     "nodes": list(nodes), "options": {"log": log}} for i in range(tasks)))
    codes = Counter()
    for slot in range(1, SLOTS + 1):
        at = T0 + timedelta(minutes=5 * slot, seconds=20)
        ready = [str(lab.tmp / f"ready-{slot}-{i}") for i in range(processes)]
        go = str(lab.tmp / f"go-{slot}")
        procs = [lab.spawn("run_scheduled", "-c", node=nodes[i % len(nodes)], at=at,
                           barrier=(ready[i], go)) for i in range(processes)]
        while not all(os.path.exists(path) for path in ready):
            if any(proc.poll() is not None for proc in procs):
                break
        open(go, "w").close()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            codes[proc.returncode] += 1
            assert out == "" and err == "", err
    starts = [e for e in read_events(log) if e["event"] == "start"]
    slots = Counter((e["task"], e["node"], slot_of(e["at"])) for e in starts)
    expected = {(f"t{i}", node, (T0 + timedelta(minutes=5 * s)).isoformat())
                for i in range(tasks) for node in nodes for s in range(1, SLOTS + 1)}
    assert codes == {0: processes * SLOTS}
    assert len(starts) == tasks * SLOTS * len(nodes)  # 150, 300 (R1) and 750 (M1) in full
    assert [key for key, n in slots.items() if n > 1] == []  # 0 duplicates
    assert expected - set(slots) == set()                    # 0 missing
    assert lab.query("select count(*) from run where status = 'success'")[0][0] == len(starts)
    figure(f"{processes} processes x {SLOTS} slots, {len(nodes)} node(s): {len(starts)} "
           f"executions, 0 duplicates, 0 missing")
