"""The web page's second edition (issue 11): each item users saw, and what they expected.

Through the whole site (``Site.handle``) without sockets, with an injected clock.
"""
from __future__ import annotations

import html
import json
import os
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from picron.liveness import this_process

from picron.records import TaskSpec
from picron.webapp.base import Request
from picron.webapp.charts import distinct_points, line_chart, time_ticks
from tests.test_pages import create, db, task_form, web  # noqa: F401 - fixtures

UTC = timezone.utc


def fail_twice_on_schedule(web, db, clock, **changes) -> int:
    """A failing task that is due and failed at two cron calls: it is being retried."""
    task_id = create(web, taskmodule="fail", **{"option.note": ""}, **changes)
    runner = web.site.app.runner(db)
    clock.advance(minutes=10)
    runner.run_scheduled()
    clock.advance(minutes=1)
    runner.run_scheduled()
    assert db.get_task(task_id).failure_streak == {"node1": 2}
    return task_id


def claim(db, task_id: int, node: str, clock):
    """A manual run owned by this (live) process, as a runner on this host records it."""
    me = this_process()
    return db.claim_run(task_id, node, "manual", clock(), pid=me.pid, host=me.host, timeout=60,
                        boot_id=me.boot_id, pidns=me.pidns, proc_start=str(me.proc_start),
                        db_now=db.now())


# -- 1. a task being retried says so in words; an inactive one shows no stale next time ---


def test_a_retried_task_says_retrying_with_its_failures_and_last_attempt(web, db, clock):
    task_id = fail_twice_on_schedule(web, db, clock)
    clock.advance(minutes=5)
    page = web.get("/").text
    row = page[page.index(f'id="task-{task_id}"'):]
    assert "retrying at every cron call: 2 failures since" in row
    assert re.search(r"last attempt <time [^>]*>5 min ago</time>", row)
    assert "last never" not in row
    assert "retrying at every cron call" in web.get(f"/tasks/{task_id}").text


def test_an_inactive_task_shows_no_next_time(web, db):
    task_id = create(web, active="false")
    page = web.get("/").text
    row = page[page.index(f'id="task-{task_id}"'):page.index("</tr>",
                                                            page.index(f'id="task-{task_id}"'))]
    assert "inactive" in row and "next run" not in row
    assert "none: the task is inactive" in web.get(f"/tasks/{task_id}").text


# -- 3. every invalid field at once, at its field, described for assistive technology ---


def test_one_submit_reports_every_invalid_field_at_its_field(web, db):
    response = web.post("/tasks", task_form(interval="61 * * * *", timeout="0", name=" ",
                                            taskmodule="sleep", **{"option.seconds": "soon"}))
    assert response.status == 400
    for field in ("name", "interval", "timeout", "option-seconds"):
        assert f'<p class="field-error" id="error-{field}">' in response.text, field
        assert re.search(rf'id="f-{field}" aria-invalid="true" '
                         rf'aria-describedby="error-{field}"', response.text), field
    assert "fix the 4 marked fields" in response.text
    assert db.list_tasks() == []


# -- 4. the login page ------------------------------------------------------------------


def test_login_page_has_no_navigation_and_its_error_looks_like_one(web):
    web.session = ""
    page = web.get("/login").text
    assert 'aria-label="Sections"' not in page and 'href="/history"' not in page
    wrong = web.get("/login", "token=nope")
    assert wrong.status == 401
    assert '<p class="form-error" role="alert">wrong API token</p>' in wrong.text


# -- 5. times: one zone (the viewer's choice), named, relative with the exact on hover ----


def test_times_are_relative_with_the_exact_time_in_the_viewers_zone(web, db, clock):
    create(web, timezone="America/New_York", interval="0 8 * * *")
    page = web.get("/").text
    assert 'title="2026-01-01 14:00 CET">in 13 h</time>' in page  # server zone by default
    assert "EST" not in page.split("<main", 1)[1].split("</main>")[0]
    answer = web.post("/zone", {"zone": "Asia/Tokyo", "next": "/"})
    assert answer.status == 303 and answer.headers["Location"] == "/?done=zone"
    assert answer.cookies[-1].startswith("picron_zone=Asia/Tokyo;")
    web.cookies["picron_zone"] = "Asia/Tokyo"
    page = web.get("/").text
    assert 'title="2026-01-01 22:00 JST">in 13 h</time>' in page
    assert "Times are shown in Asia/Tokyo" in page
    assert web.post("/zone", {"zone": "Mars/Base", "next": "/"}).status == 400


def test_the_preview_names_zones_as_the_server_does(web):
    answer = web.get("/api/preview", "interval=0+8+*+*+*&timezone=America/New_York&count=1")
    assert json.loads(answer.text)["display"] == ["2026-01-01 08:00 EST"]


def test_the_banner_says_how_long_ago_in_words(web, db, clock):
    db.record_tick("node1", clock())
    clock.advance(hours=3)
    page = web.log_in().get("/").text
    assert "Tasks are not running" in page and "last ran on node node1 3 h ago" in page
    assert "T" not in re.search(r"last ran on node node1 ([^<]*)", page)[1]  # no raw ISO


# -- 6/7. run now on the task's nodes, a node choice, a running state, a second run now ---


def test_run_now_runs_on_the_tasks_own_node_by_default(web, db):
    task_id = create(web, nodes="node2")
    response = web.post(f"/tasks/{task_id}/run")
    assert web.site.background.join(10)
    [run] = db.list_runs(task_id)
    assert run.node == "node2" and response.headers["Location"] == f"/runs/{run.id}?done=started"
    page = html.unescape(web.get(f"/tasks/{task_id}").text)
    assert "The default is node2: the task's first node" in page
    assert 'aria-label="Run now: nightly on node2"' in web.get("/").text


def test_the_api_runs_on_the_tasks_own_node_by_default(web, db):
    task_id = create(web, nodes="node2")
    answer = web.site.handle(Request(
        "POST", f"/api/tasks/{task_id}/run", {}, {
            "host": "127.0.0.1:8080", "content-type": "application/json",
            "authorization": "Bearer " + web.site.app.store.get_setting("api_token")}, b"{}"))
    assert answer.status == 202 and json.loads(answer.body)["node"] == "node2"


def test_run_now_on_a_chosen_node(web, db):
    task_id = create(web, nodes="node1, node2")
    page = html.unescape(web.get(f"/tasks/{task_id}").text)
    assert '<option value="node1" selected>node1</option>' in page
    assert "The default is node1: this server's node" in page
    web.post(f"/tasks/{task_id}/run", {"node": "node2"})
    assert web.site.background.join(10)
    assert [run.node for run in db.list_runs(task_id)] == ["node2"]


def test_a_running_task_shows_running_and_a_second_run_now_links_the_run(web, db, clock):
    task_id = create(web)
    running = claim(db, task_id, "node1", clock)
    page = web.get("/").text
    row = page[page.index(f'id="task-{task_id}"'):]
    assert row.startswith(f'id="task-{task_id}" class="running" data-refresh>')
    assert f'running since <time' in row and f'href="/runs/{running.run_id}"' in row
    assert web.get("/api/tasks", "state=running").text.count('"id":') == 1
    second = web.post(f"/tasks/{task_id}/run")
    assert second.status == 409
    assert "is already running on node1" in second.text
    assert f'href="/runs/{running.run_id}"' in second.text
    assert "running" in web.get("/", "state=running").text and \
        f'id="task-{task_id}"' in web.get("/", "state=running").text


# -- 8. a page past the end ---------------------------------------------------------------


def test_a_page_past_the_end_says_so_and_links_the_last_page(web, db, clock):
    for number in range(150):
        db.add_task(TaskSpec(f"task {number:03d}", "@daily", "succeed", ("node1",)), clock())
    page = web.get("/", "page=11").text
    assert "No tasks yet" not in page
    assert "Page 11 of 2: no tasks here (150 in all)" in page
    assert 'href="/?page=2">Go to the last page' in page
    assert 'href="/?page=2" rel="prev"' in page


# -- 9. labels on phones ------------------------------------------------------------------


def test_every_table_cell_has_a_label_for_phones(web, db, clock):
    db.change_counter("logins", 2)
    db.add_stat("k", clock(), 3)
    for path in ("/stats", "/stats/k", "/history", "/audit"):
        for cell in re.findall(r"<td[^>]*>", web.get(path).text):
            assert "data-label=" in cell, (path, cell)


# -- 10. a notice after every change ------------------------------------------------------


@pytest.mark.parametrize("action, notice", [("disable", "Task disabled."),
                                            ("enable", "Task enabled.")])
def test_a_change_is_confirmed_on_the_next_page(web, db, action, notice):
    task_id = create(web)
    assert "Task created." in web.get(f"/tasks/{task_id}", "done=created").text
    location = web.post(f"/tasks/{task_id}/{action}").headers["Location"]
    path, _, query = location.partition("?")
    assert notice in web.get(path, query).text


def test_a_change_from_the_list_returns_to_the_list_page_it_came_from(web, db):
    from picron.webapp.login import CSRF_COOKIE, SESSION_COOKIE

    task_id = create(web)

    def disable(referer: str | None) -> str:
        headers = {"host": "127.0.0.1:8080", "content-type": "application/x-www-form-urlencoded",
                   "cookie": f"{CSRF_COOKIE}={web.token}; {SESSION_COOKIE}={web.session}"}
        if referer is not None:
            headers["referer"] = referer
        response = web.site.handle(Request("POST", f"/tasks/{task_id}/disable", {}, headers,
                                           f"csrf_token={web.token}".encode(),
                                           client="127.0.0.1"))
        assert response.status == 303
        return response.headers["Location"]

    assert disable("http://127.0.0.1:8080/?page=2&q=night&done=enabled") == \
        f"/?page=2&q=night&done=disabled#task-{task_id}"
    assert disable(None) == f"/tasks/{task_id}?done=disabled"
    assert disable("http://evil.example/?page=2") == f"/tasks/{task_id}?done=disabled"


# -- 11. the audit log says what changed and links the task ------------------------------


def test_audit_says_what_changed_and_links_the_task(web, db):
    task_id = create(web)
    web.post(f"/tasks/{task_id}", task_form(interval="*/10 * * * *"))
    page = web.get("/audit").text
    assert f'<a href="/tasks/{task_id}">#{task_id}</a> nightly: interval */5 * * * * → ' \
           "*/10 * * * *" in html.unescape(page)
    web.post(f"/tasks/{task_id}/disable")
    assert "active true → false" in web.get(f"/tasks/{task_id}").text


def test_audit_names_changed_secret_options_without_their_values(make_store, clock):
    from picron.records import TaskSpec as Spec

    store = make_store()
    task = store.add_task(Spec("s", "@daily", "http", ("n",), {"url": "a", "password": "x1"}),
                          clock())
    store.update_task(task.id, Spec("s", "@daily", "http", ("n",),
                                    {"url": "a", "password": "hunter2"}), clock())
    detail = store.list_audit(1, task_id=task.id)[0].detail
    assert detail == "s: options password changed" and "hunter2" not in detail


# -- 12. accessibility: heading order, keyboard-reachable output, named buttons ----------


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[int] = []

    def handle_starttag(self, tag, attrs):
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))


def test_headings_never_skip_a_level(web, db, clock):
    task_id = create(web)
    web.post(f"/tasks/{task_id}/run")
    web.site.background.join(10)
    for path in ("/", "/tasks/new", f"/tasks/{task_id}", f"/tasks/{task_id}/edit",
                 f"/tasks/{task_id}/clone", "/history", "/audit", "/stats", "/zone",
                 f"/runs/{db.list_runs(task_id)[0].id}"):
        parser = _Headings()
        parser.feed(web.get(path).text)
        levels = parser.levels
        assert levels and levels[0] == 1, path
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), (path, levels)


def test_output_is_reachable_by_keyboard_and_buttons_name_their_task(web, db):
    task_id = create(web)
    web.post(f"/tasks/{task_id}/run")
    web.site.background.join(10)
    assert re.search(r'<pre tabindex="0" aria-label="Output of run [0-9]+">fine</pre>',
                     web.get("/history").text)
    page = web.get("/").text
    for label in ("Edit nightly", "Run now: nightly on node1", "Clone nightly",
                  "Delete nightly", "Choose nightly", "On: nightly is active, press to disable"):
        assert f'aria-label="{label}"' in page, label


def test_pages_have_a_skip_link_and_a_dark_scheme(web):
    page = web.get("/").text
    assert '<a class="skip" href="#main">' in page and '<main id="main"' in page
    assert "@media (prefers-color-scheme: dark)" in web.get("/static/style.css").text


# -- 13. charts ---------------------------------------------------------------------------


def test_chart_time_labels_are_round_and_points_are_not_doubled():
    zone = timezone.utc
    start = datetime(2026, 1, 1, 14, 11, tzinfo=UTC).timestamp()
    ticks = time_ticks(start, start + 3 * 3600, zone)
    assert [text for _, text in ticks] == ["14:30", "15:00", "15:30", "16:00", "16:30",
                                           "17:00"]
    at = datetime(2026, 1, 1, 14, 0, 5, tzinfo=UTC)
    doubled = [(at, 3), (at + timedelta(seconds=2), 3), (at + timedelta(minutes=5), 4)]
    assert distinct_points(doubled) == [doubled[0], doubled[2]]
    svg = line_chart(doubled, zone, "k")
    labels = re.findall(r'text-anchor="end">([^<]*)<', svg)
    assert labels and all(re.fullmatch(r"-?[0-9]+", label) for label in labels)


# -- the task list: search, filter, sort, bulk, clone -----------------------------------


def test_search_filter_and_sort_in_the_page_and_the_api(web, db, clock):
    for name, module, nodes in (("alpha backup", "succeed", "node1"),
                                ("beta sync", "fail", "node2"),
                                ("gamma backup", "succeed", "node1, node2")):
        create(web, name=name, taskmodule=module, nodes=nodes, **{"option.note": ""})
    page = web.get("/", "q=BACKUP&sort=-name").text
    assert page.index("gamma backup") < page.index("alpha backup") and "beta sync" not in page
    assert "Tasks 1–2 of 2" in page
    names = lambda query: [t["name"] for t in json.loads(web.get("/api/tasks", query).text)]
    assert names("node=node2") == ["beta sync", "gamma backup"]
    assert names("module=fail") == ["beta sync"]
    assert names("q=a_b") == []  # "_" is a character here, not a wildcard
    web.post(f"/tasks/{db.find_task('beta sync').id}/disable")
    assert names("state=inactive") == ["beta sync"]
    assert "No task matches" in web.get("/", "q=nothing").text
    bad = web.get("/api/tasks", "state=sleepy")
    assert bad.status == 400 and json.loads(bad.text)["error"]["field"] == "state"
    assert web.get("/", "sort=colour").status == 400


def test_bulk_enable_disable_and_delete_after_confirmation(web, db):
    ids = [create(web, name=f"t{n}") for n in range(3)]
    form = [("action", "disable"), *(("ids", str(i)) for i in ids[:2])]
    assert web.post("/tasks/bulk", form).headers["Location"] == "/?done=bulk"
    assert [t.active for t in db.list_tasks()] == [False, False, True]
    assert web.post("/tasks/bulk", form, token=False).status == 403
    ask = web.post("/tasks/bulk", [("action", "delete"), ("ids", str(ids[0]))])
    assert ask.status == 200 and "Delete 1 task?" in ask.text and len(db.list_tasks()) == 3
    web.post("/tasks/bulk", [("action", "delete"), ("ids", str(ids[0])), ("confirmed", "1")])
    assert [t.name for t in db.list_tasks()] == ["t1", "t2"]
    assert web.post("/tasks/bulk", [("action", "delete")]).status == 400
    assert web.post("/tasks/bulk", [("action", "explode"), ("ids", "1")]).status == 400


def test_clone_fills_the_form_and_leaves_secrets_empty(web, db, clock):
    task_id = create(web, name="nightly", interval="0 3 * * *")
    page = web.get(f"/tasks/{task_id}/clone").text
    assert 'value="nightly (copy)"' in page and 'value="0 3 * * *"' in page
    assert 'action="/tasks"' in page  # saving creates a new task
    assert 'value="hello"' in page  # the options come along


def test_a_clone_never_carries_a_secret(tmp_path, clock):
    from picron.app import App
    from picron.config import Config
    from picron.webapp.site import Site
    from tests.test_pages import Client

    app = App(Config(database=str(tmp_path / "p.db"), node="node1", nodes=("node1",)),
              clock=clock)  # the real modules: http has a secret option
    client = Client(Site(app, failed_login_delay=0)).log_in()
    store = app.open_store()
    task = store.add_task(TaskSpec("hook", "@daily", "http", ("node1",),
                                   {"url": "https://example.org", "headers": "X-Key: hunter2"}),
                          clock())
    page = client.get(f"/tasks/{task.id}/clone").text
    assert "hunter2" not in page and "********" not in page
    assert re.search(r'id="f-option-headers" name="option.headers" value=""', page)
    assert 'value="https://example.org"' in page


# -- history: filters, paging, one page per run -----------------------------------------


def test_history_pages_beyond_100_and_filters_without_loading_tasks(web, db, clock):
    task_id = create(web)
    other = create(web, name="other", nodes="node2")
    runner = web.site.app.runner(db)
    for _ in range(120):
        runner.run_manually(task_id)
    runner.run_manually(other, "node2")
    first = web.get("/history").text
    assert first.count('<tr id="run-') == 100
    older = re.search(r'href="(/history\?before=[0-9]+)" rel="next"', first)[1]
    second = web.get(*older.split("?")).text
    assert second.count('<tr id="run-') == 21 and 'rel="next"' not in second
    assert web.get("/history", "node=node2").text.count('<tr id="run-') == 1
    assert web.get("/history", "task=OTH").text.count('<tr id="run-') == 1
    assert web.get("/history", "status=failed").text.count('<tr id="run-') == 0
    assert web.get("/history", "status=nope").status == 400
    runs = json.loads(web.get("/api/runs", "node=node2&trigger=manual").text)
    assert [r["task"] for r in runs] == ["other"]
    newest = json.loads(web.get("/api/runs", "limit=1").text)[0]["id"]
    assert json.loads(web.get("/api/runs", f"limit=1&before={newest}").text)[0]["id"] \
        == newest - 1
    # the task filter is a text field, not a list of every task
    assert '<input id="h-task" name="task"' in first and "<option>other" not in first


def test_a_run_has_its_own_page_with_the_whole_output(web, db, clock):
    task_id = create(web)
    running = claim(db, task_id, "node1", clock)
    page = web.get(f"/runs/{running.run_id}").text
    assert f'id="run-{running.run_id}" data-refresh' in page  # refreshes while running
    db.finish_run(running.run_id, "failed", clock(), 1.0, "x" * 500 + "END")
    page = web.get(f"/runs/{running.run_id}").text
    assert "END" in page and "data-refresh" not in page
    assert "whole output" in web.get("/history").text
    assert web.get("/runs/999").status == 404


def test_the_task_page_has_state_next_runs_history_and_changes(web, db):
    task_id = create(web, interval="0 8 * * *")
    web.post(f"/tasks/{task_id}/run")
    web.site.background.join(10)
    page = web.get(f"/tasks/{task_id}").text
    assert "<h2>State per node</h2>" in page and "<h2>Next runs</h2>" in page
    assert page.count("<li><time") == 5
    assert '<span class="badge success">success</span>' in page and "fine" in page
    assert "create" in page.split("<h2>Changes</h2>")[1]
    assert f'href="/tasks/{task_id}/edit"' in page and f'href="/tasks/{task_id}/clone"' in page


def test_the_dashboard_line_counts_failing_retrying_running(web, db, clock):
    fail_twice_on_schedule(web, db, clock)
    claim(db, create(web, name="busy"), "node1", clock)
    line = web.get("/history").text.split('class="dashboard"')[1].split("</section>")[0]
    assert "<strong>1</strong> failing" in line and "<strong>1</strong> retrying" in line
    assert "<strong>1</strong> running" in line and "node1" in line


# -- the store's new queries, on every backend -------------------------------------------


def test_store_find_tasks_and_runs(make_store, clock):
    store = make_store()
    now = clock()
    a = store.add_task(TaskSpec("a_1", "@daily", "succeed", ("n1",)), now)
    b = store.add_task(TaskSpec("B%2", "@hourly", "fail", ("n1", "n2"), active=False), now)
    assert store.find_tasks(now, text="_")[1] == 1
    assert store.find_tasks(now, text="%")[0][0].id == b.id
    assert [t.id for t in store.find_tasks(now, sort="-name")[0]] == [a.id, b.id]
    assert [t.id for t in store.find_tasks(now, sort="next")[0]] == [b.id, a.id]
    assert store.find_tasks(now, state="inactive")[1] == 1
    assert store.find_tasks(now, node="n2")[0][0].id == b.id
    tasks, total = store.find_tasks(now, limit=1, offset=1)
    assert total == 2 and [t.id for t in tasks] == [b.id]
    assert len(store.find_tasks_json(now, module="succeed")) == 1
    run = store.claim_run(a.id, "n1", "manual", now, pid=1, host="h", timeout=5)
    assert store.find_tasks(now, state="running")[0][0].id == a.id
    assert [r.id for r in store.find_runs(text="A_", status="running")] == [run.run_id]
    assert store.find_runs(before=run.run_id) == [] and store.find_runs(node="n2") == []
