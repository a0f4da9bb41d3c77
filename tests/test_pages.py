"""The HTML pages, through the whole site (``Site.handle``) without sockets."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlencode

import pytest

from picron.app import App
from picron.webapp.login import api_token
from picron.config import Config
from picron.webapp.layout import layout
from picron.webapp.login import CSRF_COOKIE, SESSION_COOKIE, new_token
from picron.webapp.site import Site
from picron.webapp.base import Raw, Request

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Client:
    """Sends requests to a ``Site`` as a same-origin browser with the CSRF cookie would."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.token = new_token()
        self.session = ""
        self.cookies: dict[str, str] = {}  # more cookies the browser sends

    def log_in(self) -> "Client":
        """Open the login link that ``picron serve`` prints, as a browser would."""
        link = self.get("/login", urlencode({"token": api_token(self.site.app.store)}))
        assert link.status == 303, link.text
        self.session = link.cookies[0].split(";")[0].split("=", 1)[1]
        page = self.get("/").text
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return self

    def get(self, path: str, query: str = ""):
        return self._send("GET", path, query, None)

    def post(self, path: str, form=(), token: bool = True):
        pairs = list(form.items()) if isinstance(form, dict) else list(form)
        if token:
            pairs.append(("csrf_token", self.token))
        return self._send("POST", path, "", urlencode(pairs).encode())

    def _send(self, method, path, query, body):
        headers = {"host": "127.0.0.1:8080", "cookie": f"{CSRF_COOKIE}={self.token}"
                   + (f"; {SESSION_COOKIE}={self.session}" if self.session else "")
                   + "".join(f"; {name}={value}" for name, value in self.cookies.items())}
        if body is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        response = self.site.handle(Request(
            method=method, path=path, query=parse_qs(query, keep_blank_values=True),
            headers=headers, body=body or b"", client="127.0.0.1"))
        response.text = response.body.decode("utf-8")
        return response


@pytest.fixture
def web(tmp_path, clock, registry):
    config = Config(database=str(tmp_path / "picron.db"), node="node1",
                    nodes=("node1", "node2"), timezone="Europe/Berlin")
    app = App(config, clock=clock, registry=registry)
    site = Site(app, failed_login_delay=0)
    yield Client(site).log_in()
    site.background.join(10)


@pytest.fixture
def db(web):
    return web.site.app.open_store()


def task_form(**changes) -> dict:
    form = {"name": "nightly", "taskmodule": "succeed", "interval": "*/5 * * * *",
            "timezone": "", "nodes": "node1", "ordering": "0", "active": "true",
            "retry_if_failed": "true", "max_retries": "", "timeout": "",
            "option.note": "hello"}
    form.update(changes)
    return form


def create(web, **changes) -> int:
    response = web.post("/tasks", task_form(**changes))
    assert response.status == 303, response.text
    return int(re.search(r"/tasks/([0-9]+)", response.headers["Location"])[1])


# -- every page renders ------------------------------------------------------------


def test_empty_pages_render(web):
    for path, expected in (("/", "No tasks yet"), ("/tasks/new", "New task"),
                           ("/history", "No runs recorded yet"),
                           ("/audit", "No changes recorded yet"),
                           ("/stats", "No stats recorded yet")):
        response = web.get(path)
        assert response.status == 200, path
        assert response.content_type.startswith("text/html")
        assert expected in response.text, path


def test_every_page_renders_with_data(web, db, clock):
    task_id = create(web)
    db.add_stat("total_tasks", clock(), 3)
    db.add_stat("total_tasks", clock.advance(hours=1), 5)
    web.log_in()  # an hour later the session has expired
    db.change_counter("logins", 2)
    web.post(f"/tasks/{task_id}/run")
    web.site.background.join(10)
    pages = {"/": "every 5 minutes", f"/tasks/{task_id}/edit": "Save changes",
             f"/tasks/{task_id}/delete": "Delete", "/history": "fine",
             "/audit": "create", "/stats": "logins", "/stats/total_tasks": "<svg"}
    for path, expected in pages.items():
        response = web.get(path)
        assert response.status == 200, path
        assert expected in response.text, path
        assert '<link rel="stylesheet" href="/static/style.css">' in response.text
        check_page(response.text, "")  # no inline script or style, no event handlers


def test_list_shows_interval_reading_and_runs_per_node_in_the_task_zone(web, db):
    create(web, name="morning", interval="0 8 * * 1-5", nodes="node1, node2",
           timezone="America/New_York")
    page = web.get("/").text
    assert "at 08:00 on Monday through Friday" in page
    assert page.count('class="node-run') == 2
    # next run: relative, exact in the viewer's zone (the server's: Europe/Berlin) on hover
    assert 'title="2026-01-01 14:00 CET">in 13 h</time>' in page
    assert "no runs yet" in page


def test_list_uses_server_zone_and_shows_status_and_failure_streak(web, db, clock):
    task_id = create(web, taskmodule="fail", **{"option.note": ""})
    runner = web.site.app.runner(db)
    runner.run_manually(task_id)
    runner.run_manually(task_id)
    page = web.get("/").text
    assert '<span class="badge failed">failed</span>' in page
    assert "2 failures in a row" in page
    assert "2026-01-01 01:05 CET" in page  # server zone Europe/Berlin


def test_dead_runner_banner(web, db, clock):
    assert "Tasks are not running" in web.get("/").text
    db.record_tick("node1", clock())
    assert "Tasks are not running" not in web.get("/").text
    clock.advance(minutes=20)
    assert "last ran on node node1 20 min ago" in web.get("/history").text


def test_layout_has_logout_only_for_admin():
    admin = layout(Request("GET", "/", user="admin", csrf_token="t0k"), "x", Raw("<p>b</p>"))
    assert 'action="/logout"' in admin
    assert 'name="csrf_token" value="t0k"' in admin
    anonymous = layout(Request("GET", "/"), "x", Raw(""))
    assert "/logout" not in anonymous


def test_logged_in_admin_gets_logout_and_forms_with_the_session_token(web, db):
    from picron.webapp.login import set_password

    set_password(db, "correct horse")
    web = Client(web.site)  # a browser that has not logged in yet
    assert web.get("/").headers["Location"].startswith("/login")
    login = web.post("/login", {"user": "admin", "password": "correct horse", "next": "/"})
    web.session = login.cookies[0].split(";")[0].split("=", 1)[1]
    page = web.get("/tasks/new").text
    assert 'action="/logout"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert token != web.token  # the session's own token, not the anonymous cookie's
    web.token = token
    assert web.post("/tasks", task_form()).status == 303
    assert [t.name for t in db.list_tasks()] == ["nightly"]


def test_error_page_is_html(web):
    response = web.get("/tasks/999/edit")
    assert response.status == 404
    assert "<h1>Not found</h1>" in response.text
    assert "task 999 not found" in response.text


# -- forms -------------------------------------------------------------------------


def test_create_through_the_form(web, db):
    response = web.post("/tasks", task_form(timezone="Europe/Paris", ordering="3",
                                            max_retries="2", timeout="60"))
    assert response.status == 303
    assert response.headers["Location"] == "/tasks/1?done=created"
    task = db.get_task(1)
    assert (task.name, task.interval, task.timezone, task.ordering) == (
        "nightly", "*/5 * * * *", "Europe/Paris", 3)
    assert (task.max_retries, task.timeout, task.options) == (2, 60, {"note": "hello"})
    assert db.list_audit()[0].actor == "web:token"


def test_new_form_has_option_fields_from_the_schema(web):
    page = web.get("/tasks/new", "taskmodule=sleep").text
    assert re.search(r'<input type="number" id="f-option-seconds" name="option.seconds"', page)
    assert 'for="f-option-seconds">seconds <abbr class="req"' in page  # required mark
    assert '<input type="hidden" name="option.loud" value="false">' in page
    assert '<input type="checkbox" id="f-option-loud" name="option.loud" value="true">' in page
    assert "how long" in page  # the option's description


def test_bool_option_checkbox_and_blank_numbers(web, db):
    form = list(task_form(taskmodule="sleep", **{"option.seconds": "0"}).items())
    form = [pair for pair in form if pair[0] != "option.note"]
    form += [("option.loud", "false"), ("option.loud", "true")]
    create(web, taskmodule="sleep", **{"option.seconds": "0", "option.note": ""})
    response = web.post("/tasks", [(k, "other" if k == "name" else v) for k, v in form])
    assert response.status == 303
    task = db.find_task("other")
    assert task.options == {"seconds": "0", "loud": "true"}
    assert (task.max_retries, task.timeout) == (None, None)


def test_change_module_rerenders_the_form_keeping_values(web, db):
    response = web.post("/tasks", task_form(taskmodule="sleep", change_module="1",
                                            name="keep me", interval="0 3 * * *"))
    assert response.status == 200
    assert 'name="option.seconds"' in response.text
    assert 'name="option.note"' not in response.text
    assert 'value="keep me"' in response.text
    assert 'value="0 3 * * *"' in response.text
    assert db.list_tasks() == []


@pytest.mark.parametrize("changes, field, message", [
    ({"interval": "every two days"}, "interval", "is not a 5-field crontab expression"),
    ({"interval": "61 * * * *"}, "interval", "minute: 61 is out of range 0-59"),
    ({"name": "   "}, "name", "name: must not be empty"),
    ({"ordering": "abc"}, "ordering", "ordering: must be a whole number"),
    ({"ordering": "-1"}, "ordering", "ordering: must be between 0"),
    ({"timeout": "0"}, "timeout", "timeout: must be between 1"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ({"nodes": "a b"}, "nodes", "is not a valid node name"),
    ({"taskmodule": "sleep", "option.note": ""}, "options", "requires option 'seconds'"),
    ({"taskmodule": "sleep", "option.seconds": "soon"}, "option-seconds", "must be an integer"),
    ({"taskmodule": "os"}, "taskmodule", "unknown task module"),
])
def test_invalid_input_rerenders_with_400_and_the_message_at_the_field(
        web, db, changes, field, message):
    response = web.post("/tasks", task_form(**changes))
    assert response.status == 400
    error = re.search(rf'<p class="field-error" id="error-{field}">([^<]*)</p>', response.text)
    assert error and message in html.unescape(error.group(1)), response.text
    assert "The task was not saved" in response.text
    assert db.list_tasks() == []


def test_duplicate_name_is_409_at_the_name_field(web, db):
    create(web)
    response = web.post("/tasks", task_form())
    assert response.status == 409
    assert 'id="error-name"' in response.text
    assert len(db.list_tasks()) == 1


def test_edit_form_shows_values_and_next_runs_with_dst_note(web, db):
    task_id = create(web, interval="0 12 1 * *", timezone="Europe/Berlin")
    page = web.get(f"/tasks/{task_id}/edit").text
    assert 'value="0 12 1 * *"' in page
    assert 'value="hello"' in page
    assert "at noon on day 1 of the month" in page
    times = re.findall(r"<li><time[^>]*>([^<]*)</time>", page)
    assert times == ["2026-01-01 12:00 CET", "2026-02-01 12:00 CET", "2026-03-01 12:00 CET",
                     "2026-04-01 12:00 CEST", "2026-05-01 12:00 CEST"]
    assert "clocks change: CET → CEST" in page


def test_edit_through_the_form(web, db, clock):
    task_id = create(web)
    clock.advance(minutes=1)
    response = web.post(f"/tasks/{task_id}", task_form(name="renamed", interval="@daily",
                                                       nodes="node2"))
    assert response.status == 303
    task = db.get_task(task_id)
    assert (task.name, task.interval, task.nodes) == ("renamed", "@daily", ("node2",))
    assert db.list_audit()[0].action == "edit"
    invalid = web.post(f"/tasks/{task_id}", task_form(interval="* * *", nodes=""))
    assert invalid.status == 400
    assert db.get_task(task_id).interval == "@daily"


def test_delete_with_confirmation(web, db):
    task_id = create(web)
    page = web.get(f"/tasks/{task_id}/delete").text
    assert f'action="/tasks/{task_id}/delete"' in page
    assert db.get_task(task_id)  # asking changes nothing
    response = web.post(f"/tasks/{task_id}/delete")
    assert (response.status, response.headers["Location"]) == (303, "/?done=deleted")
    assert db.list_tasks() == []


def test_enable_and_disable(web, db):
    task_id = create(web)
    response = web.post(f"/tasks/{task_id}/disable")
    assert response.status == 303
    assert db.get_task(task_id).active is False
    assert f'action="/tasks/{task_id}/enable"' in web.get("/").text
    web.post(f"/tasks/{task_id}/enable")
    assert db.get_task(task_id).active is True


def test_run_now_runs_in_the_background_and_shows_in_history(web, db):
    task_id = create(web)
    response = web.post(f"/tasks/{task_id}/run")
    assert web.site.background.join(10)
    [run] = db.list_runs(task_id)
    assert (response.status, response.headers["Location"]) == \
        (303, f"/runs/{run.id}?done=started")
    assert (run.status, run.trigger, run.message) == ("success", "manual", "fine")
    page = web.get("/history", f"task_id={task_id}").text
    assert '<span class="badge success">success</span>' in page
    assert f'<a href="/tasks/{task_id}">nightly</a>' in web.get("/history").text


def test_history_filter_must_be_an_id(web):
    assert web.get("/history", "task_id=1%20OR%201=1").status == 400


def test_state_changes_need_the_csrf_token(web, db):
    task_id = create(web)
    for path in ("/tasks", f"/tasks/{task_id}", f"/tasks/{task_id}/disable",
                 f"/tasks/{task_id}/run", f"/tasks/{task_id}/delete"):
        assert web.post(path, task_form(name="x"), token=False).status == 403
    assert [t.name for t in db.list_tasks()] == ["nightly"]
    assert db.list_runs() == []


# -- stats -------------------------------------------------------------------------


def test_stats_chart_is_inline_svg_with_axis_labels(web, db, clock):
    for value in (3, 7, 5):
        db.add_stat("failed/runs", clock.advance(hours=1), value)
    web.log_in()  # hours later the session has expired
    response = web.get("/stats/failed/runs")  # the server decodes %2F before routing
    assert response.status == 200
    points = re.search(r'<polyline class="line" points="([^"]*)"', response.text).group(1)
    assert len(points.split()) == 3
    assert ">value</text>" in response.text and "time (CET)" in response.text
    assert "2026-01-01 02:00 CET" in response.text  # the first x label
    index = web.get("/stats").text
    assert f'href="/stats/{quote("failed/runs", safe="")}"' in index
    assert web.get("/stats/nothing").status == 404


# -- escaping ----------------------------------------------------------------------

PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
            "'><svg onload=alert(1)>", "</textarea><script>x</script>", "javascript:alert(1)",
            "{{7*7}}${7*7}", "a\u2028b"]


class PageChecker(HTMLParser):
    """Collects what would make a page execute something it should not."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("img", "svg", "iframe", "style", "object", "embed") and tag != "svg" or \
                tag == "svg" and dict(attrs).get("role") != "img":
            self.problems.append(f"<{tag}>")
        if tag == "script" and attrs != [("src", "/static/app.js"), ("defer", None)]:
            self.problems.append(f"script {attrs}")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"attribute {name}")
            if name in ("href", "src", "action") and value and \
                    value.strip().lower().startswith("javascript:"):
                self.problems.append(f"{name}={value}")

    def handle_data(self, data):
        if "49" in data and "7*7" not in data:
            self.problems.append("template evaluated")


def check_page(text: str, payload: str) -> None:
    checker = PageChecker()
    checker.feed(text)
    assert checker.problems == []
    if any(ch in payload for ch in "<>\"'&"):
        assert payload not in text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_never_appear_unescaped(web, db, clock, payload):
    name_ok = "\u2028" not in payload
    task_id = create(web, name=payload if name_ok else "safe name",
                     **{"option.note": payload})
    db.add_stat(payload, clock(), 1)
    db.change_counter(payload, 1)
    claim = db.claim_run(task_id, "node1", "manual", clock(), pid=1, host="h", timeout=9)
    db.finish_run(claim.run_id, "failed", clock(), 0.1, payload)
    pages = ["/", f"/tasks/{task_id}/edit", f"/tasks/{task_id}/delete", "/history",
             f"/history?task={task_id}", "/audit", "/stats", "/stats/" + payload]
    for path in pages:
        path, _, query = path.partition("?")
        response = web.get(path, query)
        assert response.status == 200, path
        check_page(response.text, payload)
    shown = web.get("/history").text
    assert html.escape(payload) in shown  # the run message, escaped, is really there
    assert html.escape(payload) in web.get("/stats").text
    # rejected values come back escaped in the re-rendered form
    for changes in ({"nodes": payload}, {"name": payload + "\x00"}, {"interval": payload},
                    {"timezone": payload}, {"taskmodule": payload}):
        response = web.post("/tasks", task_form(**changes))
        assert response.status == 400, changes
        check_page(response.text, payload)


def test_chart_scale_and_thinning(clock):
    from picron.webapp.charts import MAX_POINTS, line_chart, nice_scale

    assert nice_scale(3, 7) == (3, 7, 1)
    assert nice_scale(0, 93) == (0, 100, 50)
    assert nice_scale(5, 5) == (4, 6, 1)  # counts: never a fractional step (issue 11, 13)
    series = [(clock.advance(minutes=5), i % 7) for i in range(MAX_POINTS * 3 + 1)]
    svg = line_chart(series, timezone.utc, "k")
    points = re.search(r'points="([^"]*)"', svg).group(1).split()
    assert len(points) <= MAX_POINTS + 1
    assert f"{len(series)} values of k" in svg  # the caption counts every value
    assert points[-1].startswith(f"{720 - 20}.0,")  # the latest value is still drawn


# -- the task list in pages --------------------------------------------------------------


def test_the_task_list_shows_100_tasks_a_page(web, db, clock):
    from picron.records import TaskSpec

    for number in range(150):
        db.add_task(TaskSpec(f"task {number:03d}", "@daily", "succeed", ("node1",)), clock())
    first, second = web.get("/"), web.get("/", "page=2")
    assert first.text.count('<tr id="task-') == 100
    assert "Tasks 1–100 of 150" in first.text and 'href="/?page=2"' in first.text
    assert "task 000" in first.text and "task 100" not in first.text
    assert second.text.count('<tr id="task-') == 50
    assert "Tasks 101–150 of 150 · page 2 of 2" in second.text
    assert 'href="/" rel="prev"' in second.text
    assert "task 149" in second.text
    for bad in ("page=0", "page=-1", "page=abc", "page=99999999999"):
        assert "Tasks 1–100 of 150" in web.get("/", bad).text
    late = db.find_task("task 120").id
    assert web.post(f"/tasks/{late}/disable").headers["Location"] == \
        f"/tasks/{late}?done=disabled"


def test_a_short_list_has_no_page_links(web):
    create(web)
    page = web.get("/").text
    assert "Tasks 1–1 of 1" in page and 'rel="next"' not in page and 'rel="prev"' not in page
