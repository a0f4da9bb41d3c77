"""Property-based fuzz of the served JSON API (RELIABILITY.md, I): 0 responses >= 500, no
traceback, and every refusal (4xx) leaves the database unchanged.

Seeded (``derandomize``); 200 bodies in the short form, 10,000 with ``PICRON_FULL=1``.
Bodies are JSON values near the task schema (right keys, wrong or random values) and
raw bytes, sent to the routes that change state (manual runs excluded: they finish in
the background and would change the database after the answer).
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import scale
from .test_bad_input_api import dump

BODIES = scale(200, 10_000)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["@daily", "*/5 * * * *", "61 * * * *", "simplestats",
                                     "node1", "a,b", "Europe/Berlin", "", " "]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=8)
KEYS = st.sampled_from(["name", "interval", "taskmodule", "nodes", "options", "active",
                        "ordering", "timezone", "retry_if_failed", "max_retries", "timeout",
                        "id", "last_runs", "by", "node"])
TASKISH = st.dictionaries(KEYS, VALUES, max_size=8)
BODY = st.one_of(TASKISH.map(lambda d: json.dumps(d, allow_nan=True).encode()),
                 VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))
ROUTE = st.sampled_from([("POST", "/api/tasks"), ("PUT", "/api/tasks/{id}"),
                         ("PATCH", "/api/tasks/{id}"), ("POST", "/api/tasks/{id}/enable"),
                         ("POST", "/api/tasks/{id}/disable"),
                         ("POST", "/api/counters/fuzz/increment"),
                         ("DELETE", "/api/tasks/999999"), ("PATCH", "/api/tasks/0")])


@settings(max_examples=BODIES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=ROUTE, body=BODY)
def test_api_never_fails_and_refusals_change_nothing(api, route, body):
    served, lab = api
    task_id = lab.query("select min(id) from task")[0][0] or 1
    method, path = route[0], route[1].format(id=task_id)
    before = dump(lab.db)
    status, headers, data = served.request(method, path, body=body,
                                           headers={"Content-Type": "application/json"})
    assert status < 500, (method, path, body[:200], status, data[:300])
    assert b"Traceback" not in data
    if status >= 400:
        assert json.loads(data)["error"]["message"]
        assert dump(lab.db) == before, (method, path, body[:200], status)
