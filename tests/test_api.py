"""The JSON API of SPEC §6, called in-process through ``Site.handle``."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picron.schedule import to_db
from tests.webclient import TASK, body, call, snapshot, text
from tests.webfixtures import db, site, web_app  # noqa: F401 - fixtures


@pytest.fixture
def task(site):
    return body(call(site, "POST", "/api/tasks", TASK))


def test_create_answers_201_with_location_and_the_task(site):
    response = call(site, "POST", "/api/tasks", {**TASK, "options": {"note": "hi"}})
    created = body(response)
    assert response.status == 201
    assert response.headers["Location"] == f"/api/tasks/{created['id']}"
    assert response.content_type == "application/json"
    assert created["name"] == "ping" and created["nodes"] == ["node1"]
    assert created["options"] == {"note": "hi"}
    assert created["next_runs"] == {"node1": "2026-01-01T00:05:00+00:00"}


def test_list_is_in_run_order(site):
    for name, ordering in (("b", 2), ("a", 1), ("c", 1)):
        call(site, "POST", "/api/tasks", {**TASK, "name": name, "ordering": ordering})
    response = call(site, "GET", "/api/tasks")
    assert response.status == 200
    assert [t["name"] for t in body(response)] == ["a", "c", "b"]


def test_get_one_task(site, task):
    response = call(site, "GET", f"/api/tasks/{task['id']}")
    assert response.status == 200 and body(response) == task


def test_put_replaces_everything_and_omitted_fields_take_defaults(site, task, clock):
    call(site, "PATCH", f"/api/tasks/{task['id']}", {"ordering": 7, "nodes": ["node2"]})
    clock.advance(minutes=1)
    response = call(site, "PUT", f"/api/tasks/{task['id']}",
                    {"name": "pong", "interval": "@hourly", "taskmodule": "succeed"})
    replaced = body(response)
    assert response.status == 200
    assert (replaced["name"], replaced["interval"], replaced["ordering"], replaced["nodes"]) == \
        ("pong", "@hourly", 0, ["node1"])
    assert replaced["last_update"] == to_db(clock())


def test_put_needs_the_required_fields(site, task, db):
    before = snapshot(db)
    response = call(site, "PUT", f"/api/tasks/{task['id']}", {"name": "x"})
    assert response.status == 400 and body(response)["error"]["field"] == "interval"
    assert snapshot(db) == before


def test_patch_changes_only_the_given_fields(site, task):
    response = call(site, "PATCH", f"/api/tasks/{task['id']}", {"ordering": 3, "active": False})
    patched = body(response)
    assert response.status == 200
    assert (patched["ordering"], patched["active"], patched["interval"], patched["name"]) == \
        (3, False, TASK["interval"], "ping")


def test_patch_accepts_a_get_result_sent_back(site, task):
    response = call(site, "PATCH", f"/api/tasks/{task['id']}", {**task, "ordering": 4})
    assert response.status == 200 and body(response)["ordering"] == 4


def test_delete_answers_204_then_404(site, task):
    response = call(site, "DELETE", f"/api/tasks/{task['id']}")
    assert response.status == 204 and response.body == b""
    assert call(site, "GET", f"/api/tasks/{task['id']}").status == 404
    assert call(site, "DELETE", f"/api/tasks/{task['id']}").status == 404


def test_enable_and_disable(site, task, clock):
    clock.advance(minutes=2)
    disabled = call(site, "POST", f"/api/tasks/{task['id']}/disable")
    assert disabled.status == 200 and body(disabled)["active"] is False
    assert body(disabled)["last_update"] == to_db(clock())
    enabled = call(site, "POST", f"/api/tasks/{task['id']}/enable", b"",
                   headers={"content-type": "application/json"})
    assert enabled.status == 200 and body(enabled)["active"] is True


def test_every_change_is_in_the_audit_log_with_who(site, task, web_app):
    call(site, "PATCH", f"/api/tasks/{task['id']}", {"ordering": 1})
    call(site, "DELETE", f"/api/tasks/{task['id']}")
    entries = web_app.open_store().list_audit()
    assert [(e.action, e.actor) for e in entries] == \
        [("delete", "web:local"), ("edit", "web:local"), ("create", "web:local")]


def test_run_answers_202_and_runs_in_the_background(site, task):
    response = call(site, "POST", f"/api/tasks/{task['id']}/run", {})
    run = body(response)
    assert response.status == 202
    assert (run["task_id"], run["trigger"], run["status"], run["node"]) == \
        (task["id"], "manual", "running", "node1")
    assert response.headers["Location"] == f"/api/runs/{run['id']}"
    assert site.background.join(30)
    finished = body(call(site, "GET", f"/api/runs/{run['id']}"))
    assert finished["status"] == "success" and finished["message"] == "fine"


def test_run_on_another_node(site, task):
    run = body(call(site, "POST", f"/api/tasks/{task['id']}/run", {"node": "node2"}))
    assert run["node"] == "node2"


def test_run_refuses_a_bad_node(site, task, db):
    before = snapshot(db)
    response = call(site, "POST", f"/api/tasks/{task['id']}/run", {"node": "a/b"})
    assert response.status == 400 and body(response)["error"]["field"] == "node"
    assert snapshot(db) == before


def test_run_while_running_is_409(site, task, web_app, db):
    web_app.runner(store=web_app.open_store()).claim_manual(task["id"])
    before = snapshot(db)
    response = call(site, "POST", f"/api/tasks/{task['id']}/run")
    assert response.status == 409
    assert body(response)["error"]["code"] == "already_running"
    assert snapshot(db) == before


def test_runs_list_filters_and_limits(site, task):
    other = body(call(site, "POST", "/api/tasks", {**TASK, "name": "other"}))
    for task_id in (task["id"], other["id"], task["id"]):
        call(site, "POST", f"/api/tasks/{task_id}/run")
        assert site.background.join(30)
    everything = body(call(site, "GET", "/api/runs"))
    assert [r["task_id"] for r in everything] == [task["id"], other["id"], task["id"]]
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    assert len(body(call(site, "GET", f"/api/runs?task={task['id']}"))) == 2
    assert len(body(call(site, "GET", "/api/runs?limit=1"))) == 1
    assert body(call(site, "GET", "/api/runs?task=99")) == []


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=abc", "limit"),
                                          ("limit=100000", "limit"), ("task=x", "task"),
                                          ("task=-1", "task")])
def test_runs_list_rejects_bad_parameters(site, query, field):
    response = call(site, "GET", f"/api/runs?{query}")
    assert response.status == 400 and body(response)["error"]["field"] == field


def test_modules_list_identifiers_and_schemas(site):
    modules = body(call(site, "GET", "/api/modules"))
    assert [m["identifier"] for m in modules] == ["boom", "fail", "sleep", "succeed"]
    sleep = modules[2]
    assert sleep["options"]["seconds"] == {"type": "int", "description": "how long",
                                           "required": True, "default": None}


def test_nodes(site):
    assert body(call(site, "GET", "/api/nodes")) == {"local": "node1", "known": ["node1", "node2"]}


def test_counters_increment_and_list(site):
    first = call(site, "POST", "/api/counters/logins/increment", {})
    assert first.status == 200 and body(first) == {"name": "logins", "value": 1}
    assert body(call(site, "POST", "/api/counters/logins/increment", {"by": 5}))["value"] == 6
    assert body(call(site, "POST", "/api/counters/logins/increment", {"by": -2}))["value"] == 4
    call(site, "POST", "/api/counters/a%20b/increment", {"by": 1})
    assert body(call(site, "GET", "/api/counters")) == [{"name": "a b", "value": 1},
                                                        {"name": "logins", "value": 4}]


@pytest.mark.parametrize("by", ["x", 1.5, True, None, 2**53, -(2**53), [1]])
def test_counter_increment_rejects_bad_amounts(site, db, by):
    before = snapshot(db)
    response = call(site, "POST", "/api/counters/c/increment", {"by": by})
    assert response.status == 400 and body(response)["error"]["field"] == "by"
    assert snapshot(db) == before


def test_stats_keys_and_series(site, web_app, clock):
    store = web_app.open_store()
    for minutes, value in ((0, 1), (10, 2), (20, 3)):
        store.add_stat("total_tasks", clock() + __import__("datetime").timedelta(minutes=minutes),
                       value)
    assert body(call(site, "GET", "/api/stats")) == ["total_tasks"]
    series = body(call(site, "GET", "/api/stats/total_tasks"))
    assert series == [["2026-01-01T00:00:00+00:00", 1], ["2026-01-01T00:10:00+00:00", 2],
                      ["2026-01-01T00:20:00+00:00", 3]]
    window = call(site, "GET", "/api/stats/total_tasks?start=2026-01-01T00:05:00Z"
                               "&end=2026-01-01T00:15:00%2B00:00")
    assert body(window) == [["2026-01-01T00:10:00+00:00", 2]]


def test_stats_errors(site, web_app, clock):
    web_app.open_store().add_stat("k", clock(), 1)
    assert call(site, "GET", "/api/stats/nope").status == 404
    response = call(site, "GET", "/api/stats/k?start=yesterday")
    assert response.status == 400 and body(response)["error"]["field"] == "start"


def test_health_follows_the_ticks(site, web_app, clock):
    sick = call(site, "GET", "/api/health")
    assert sick.status == 503
    assert body(sick)["ok"] is False and body(sick)["last_tick"] is None
    web_app.open_store().record_tick("node1", clock())
    clock.advance(minutes=3)
    healthy = body(call(site, "GET", "/api/health"))
    assert healthy["ok"] is True and healthy["node"] == "node1"
    assert healthy["last_tick"] == "2026-01-01T00:00:00+00:00"
    clock.advance(minutes=20)
    assert call(site, "GET", "/api/health").status == 503


def test_metrics_in_prometheus_format(site, web_app, clock, task):
    store = web_app.open_store()
    call(site, "POST", "/api/tasks", {**TASK, "name": 'say "hi" \\ there', "active": False})
    store.record_tick("node1", clock())
    store.change_counter("logins", 3)
    store.add_stat("total_tasks", clock(), 2)
    call(site, "POST", f"/api/tasks/{task['id']}/run")
    assert site.background.join(30)
    clock.advance(seconds=90)
    response = call(site, "GET", "/metrics")
    assert response.status == 200 and response.content_type.startswith("text/plain")
    lines = text(response).splitlines()
    for line in ("picron_tasks 2", "picron_tasks_active 1", 'picron_runs{status="success"} 1',
                 'picron_last_tick_age_seconds{node="node1"} 90.0',
                 'picron_counter{name="logins"} 3', 'picron_stat{key="total_tasks"} 2',
                 'picron_task_failure_streak{task="say \\"hi\\" \\\\ there",node="node1"} 0',
                 "# TYPE picron_runs gauge"):
        assert line in lines


def test_preview_lists_the_next_runs_in_the_zone(site, clock):
    clock.set(__import__("datetime").datetime.fromisoformat("2026-03-29T00:10:00+00:00"))
    response = call(site, "GET", "/api/preview?interval=30+2+*+*+*&timezone=Europe/Berlin&count=2")
    preview = body(response)
    assert response.status == 200
    assert preview["next"] == ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
    assert preview["local"] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


@pytest.mark.parametrize("query, field", [("interval=every+two+days", "interval"),
                                          ("", "interval"),
                                          ("interval=@daily&timezone=Mars/Base", "timezone"),
                                          ("interval=@daily&count=0", "count")])
def test_preview_names_the_bad_field(site, query, field):
    response = call(site, "GET", f"/api/preview?{query}")
    assert response.status == 400 and body(response)["error"]["field"] == field


# -- errors -------------------------------------------------------------------------------


def test_unknown_path_is_a_json_404(site):
    response = call(site, "GET", "/api/nothing")
    assert response.status == 404
    assert body(response)["error"]["code"] == "not_found"


def test_wrong_method_is_405_with_allow(site, task):
    response = call(site, "POST", f"/api/tasks/{task['id']}", {})
    assert response.status == 405
    assert response.headers["Allow"] == "GET, PUT, PATCH, DELETE, HEAD"
    assert body(response)["error"]["code"] == "method_not_allowed"


def test_head_is_answered_like_get(site):
    assert call(site, "HEAD", "/api/tasks").status == 200


@pytest.mark.parametrize("task_id", ["999", "0", "-1", "1%20OR%201=1", "%00", str(2**64),
                                     str(2**63), "1.0", "abc"])
def test_bad_path_ids_are_404(site, task, db, task_id):
    before = snapshot(db)
    for method, suffix in (("GET", ""), ("PATCH", ""), ("PUT", ""), ("DELETE", ""),
                           ("POST", "/enable"), ("POST", "/disable"), ("POST", "/run")):
        response = call(site, method, f"/api/tasks/{task_id}{suffix}", {**TASK, "name": "new"})
        assert response.status == 404, (method, suffix, text(response))
        assert body(response)["error"]["code"] == "not_found"
    assert snapshot(db) == before


@pytest.mark.parametrize("run_id", ["999", "0", "-1", "%00", str(2**64)])
def test_bad_run_ids_are_404(site, run_id):
    assert call(site, "GET", f"/api/runs/{run_id}").status == 404


@pytest.mark.parametrize("change, field", [
    ({"interval": "every two days"}, "interval"), ({"interval": "* * *"}, "interval"),
    ({"interval": "60 * * * *"}, "interval"), ({"interval": "0 0 31 2 *"}, "interval"),
    ({"interval": "x" * 1_000_000}, "interval"), ({"name": ""}, "name"),
    ({"name": " "}, "name"), ({"name": "x" * 65}, "name"), ({"name": "a\nb"}, "name"),
    ({"name": "a\x00b"}, "name"), ({"ordering": -1}, "ordering"), ({"ordering": "abc"}, "ordering"),
    ({"ordering": 1.5}, "ordering"), ({"ordering": 2**63}, "ordering"),
    ({"ordering": True}, "ordering"), ({"timeout": 0}, "timeout"),
    ({"max_retries": -1}, "max_retries"), ({"nodes": []}, "nodes"), ({"nodes": [""]}, "nodes"),
    ({"nodes": "a b"}, "nodes"), ({"nodes": [1]}, "nodes"),
    ({"nodes": [f"n{i}" for i in range(1000)]}, "nodes"), ({"options": "x"}, "options"),
    ({"options": {"note": {"a": 1}}}, "options"), ({"options": {"nope": "1"}}, "options"),
    ({"options": {"note": "x" * 5000}}, "options"), ({"active": "yes"}, "active"),
    ({"active": 2}, "active"), ({"active": None}, "active"),
    ({"retry_if_failed": "yes"}, "retry_if_failed"), ({"taskmodule": "os"}, "taskmodule"),
    ({"taskmodule": "../../x"}, "taskmodule"), ({"taskmodule": "os.path"}, "taskmodule"),
    ({"timezone": "Mars/Base"}, "timezone"), ({"bogus": 1}, "bogus"),
])
def test_invalid_fields_are_400_naming_the_field_and_change_nothing(site, task, db, change,
                                                                    field):
    before = snapshot(db)
    for method, path in (("POST", "/api/tasks"), ("PATCH", f"/api/tasks/{task['id']}"),
                         ("PUT", f"/api/tasks/{task['id']}")):
        response = call(site, method, path, {**TASK, "name": "new", **change})
        assert response.status == 400, (method, text(response))
        assert body(response)["error"]["field"] == field
        assert body(response)["error"]["code"] == "invalid"
    assert snapshot(db) == before


def test_missing_sleep_option_is_rejected(site):
    response = call(site, "POST", "/api/tasks", {**TASK, "taskmodule": "sleep"})
    assert response.status == 400 and "seconds" in body(response)["error"]["message"]


def test_duplicate_name_is_409(site, task, db):
    before = snapshot(db)
    response = call(site, "POST", "/api/tasks", TASK)
    assert response.status == 409 and body(response)["error"]["field"] == "name"
    other = body(call(site, "POST", "/api/tasks", {**TASK, "name": "other"}))
    before = snapshot(db)
    assert call(site, "PATCH", f"/api/tasks/{other['id']}", {"name": "ping"}).status == 409
    assert snapshot(db) == before


@pytest.mark.parametrize("raw, content_type, status", [
    (b'{"name": ', "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'"text"', "application/json", 400),
    (b"\xff\xfe{}", "application/json", 400),
    (b'{"name": "\\ud800", "interval": "@daily", "taskmodule": "succeed"}', "application/json",
     400),
    (b'{"name": "x", "ordering": NaN}', "application/json", 400),
    (b'{"ordering": 1e309}', "application/json", 400),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    (b"name=x&interval=%40daily", "application/x-www-form-urlencoded", 403),
    (b"name=x", "text/plain", 403),
    (b"{}", None, 403),
])
def test_bad_bodies_are_refused_without_change(site, db, raw, content_type, status):
    before = snapshot(db)
    response = call(site, "POST", "/api/tasks", raw, headers={"content-type": content_type})
    assert response.status == status, text(response)
    assert "error" in body(response)
    assert snapshot(db) == before


def test_a_body_that_is_not_json_is_415_when_the_csrf_token_is_there(site, db):
    first = call(site, "GET", "/api/tasks")
    token = first.cookies[0].split(";")[0].split("=", 1)[1]
    before = snapshot(db)
    response = call(site, "POST", "/api/tasks", b"name=x", cookies={"picron_csrf": token},
                    headers={"content-type": "text/plain", "x-csrf-token": token})
    assert response.status == 415 and body(response)["error"]["code"] == "unsupported_media_type"
    assert snapshot(db) == before


def test_storage_errors_are_503(tmp_path, clock, registry):
    from picron.app import App
    from picron.config import Config
    from picron.site import Site

    bad = tmp_path / "not-a-db"
    bad.write_text("hello, I am text")
    site = Site(App(Config(database=str(bad), node="node1", nodes=("node1",)), clock=clock,
                    registry=registry))
    response = call(site, "GET", "/api/tasks")
    assert response.status == 503 and body(response)["error"]["code"] == "unavailable"
    assert bad.read_text() == "hello, I am text"


def test_page_errors_are_html_and_api_errors_json(site):
    page = call(site, "GET", "/no/such/page")
    assert page.status == 404 and page.content_type.startswith("text/html")
    assert "<html" in text(page)
    assert call(site, "OPTIONS", "/api/tasks").headers["Allow"] == "GET, POST, HEAD"


def test_metric_labels_are_escaped():
    from picron.metrics import escape_label

    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12),
                                                                      children, max_size=4),
    max_leaves=12)
_FIELDS = st.sampled_from(["name", "interval", "taskmodule", "nodes", "options", "active",
                           "ordering", "timezone", "retry_if_failed", "max_retries", "timeout",
                           "id", "by", "node"])
_BODIES = _JSON | st.dictionaries(_FIELDS, _JSON, max_size=8) | st.fixed_dictionaries(
    {"name": st.text(max_size=70), "interval": st.sampled_from(["@daily", "*/5 * * * *", "x"]),
     "taskmodule": st.sampled_from(["succeed", "sleep", "os"])},
    optional={"options": _JSON, "nodes": _JSON, "ordering": _JSON})


@settings(max_examples=200, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_BODIES, target=st.sampled_from([
    ("POST", "/api/tasks"), ("PUT", "/api/tasks/1"), ("PATCH", "/api/tasks/1"),
    ("POST", "/api/counters/c/increment"), ("POST", "/api/preview")]))
def test_fuzzed_bodies_never_cause_a_server_error(site, data, target):
    if call(site, "GET", "/api/tasks/1").status == 404:
        call(site, "POST", "/api/tasks", {**TASK, "taskmodule": "fail"})
    response = call(site, *target, data)
    assert response.status < 500, text(response)
    assert "error" in body(response) or response.status in (200, 201, 202)
