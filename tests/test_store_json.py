"""The SQL-built task JSON (Store.list_tasks_json) equals Task.to_json in every state."""
from __future__ import annotations

import json
from datetime import timedelta

from picron.records import TaskSpec
from picron.runner import Runner


def test_sql_json_equals_python_json(store, registry, clock):
    store.add_task(TaskSpec("plain", "*/5 * * * *", "succeed", ("node1",)), clock())
    store.add_task(TaskSpec('quote " \\ </script> ünï\u2028', "@daily", "sleep",
                            ("b", "a", "node1"), options={"seconds": "3", "loud": "true"},
                            active=False, ordering=2, timezone="Europe/Berlin",
                            retry_if_failed=False, max_retries=3, timeout=60), clock())
    failing = store.add_task(TaskSpec("fails", "0 * * * *", "fail", ("node1", "z")), clock())
    clock.advance(hours=1)
    Runner(store, registry, node="node1", clock=clock).run_scheduled()
    store.set_last_run(failing.id, "z", clock() - timedelta(minutes=3))
    python = [task.to_json() for task in store.list_tasks()]
    sql = [json.loads(text) for text in store.list_tasks_json()]
    assert sql == python
    assert [json.loads(t) for t in store.list_tasks_json("z")] == \
        [t.to_json() for t in store.list_tasks("z")]
    assert store.list_tasks_json("nowhere") == []
