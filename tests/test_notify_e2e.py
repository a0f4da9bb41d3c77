"""Notifications end to end (SPEC §7): runs recorded by the runner, events in the store,
delivered to a real HTTP receiver and a real SMTP server; the API, the CLI and the page."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from picron.cli import main
from picron.errors import ValidationError
from picron.modules import Registry, TaskModule
from picron.notify import Settings
from picron.records import TaskSpec
from picron.runner import Runner
from picron.storage import open_store
from tests.conftest import FAKE_MODULES
from tests.test_notify import HttpReceiver, SmtpSink, receiver, sink  # noqa: F401 - fixtures
from tests.test_pages import Client, task_form
from tests.webclient import TASK, body, call, text
from tests.webfixtures import db, site, web_app  # noqa: F401 - fixtures


class Scripted(TaskModule):
    """Succeeds or fails as the test says: ``Scripted.outcomes`` is consumed one per run (in
    this process: its runners do not isolate, or a child would consume its own copy)."""

    identifier = "scripted"
    description = "Follows a script of outcomes."
    options = {}
    outcomes: list[bool] = []

    def do(self, options):
        ok = Scripted.outcomes.pop(0)
        self.say("ok" if ok else "it broke")
        return ok


@pytest.fixture
def scripted():
    Scripted.outcomes = []
    return Registry(modules={**FAKE_MODULES, "scripted": Scripted})


def add(store, clock, name="backup", module="scripted", nodes=("node1",), **fields):
    return store.add_task(TaskSpec(name=name, interval="*/5 * * * *", taskmodule=module,
                                   nodes=tuple(nodes), **fields), clock())


def tick(runner, clock):
    clock.advance(minutes=5)
    return runner.run_scheduled()


def test_fails_fails_succeeds_is_one_down_and_one_up(store, scripted, clock, receiver, sink):
    settings = Settings(url=receiver.url, email="ops@example.org", smtp_host=sink.host,
                        mail_from="picron@example.org")
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False, notify=settings)
    task = add(store, clock)
    Scripted.outcomes = [False, False, True, True]
    statuses = [tick(runner, clock).results[0].status for _ in range(4)]
    assert statuses == ["failed", "failed", "success", "success"]

    posted = [json.loads(data) for _, data in receiver.requests]
    assert [(p["event"], p["failure_streak"], p["run"]["status"]) for p in posted] == [
        ("down", 1, "failed"), ("up", 2, "success")]
    assert posted[0]["task"] == "backup" and posted[0]["task_id"] == task.id
    assert posted[0]["node"] == "node1" and posted[0]["run"]["message"] == "it broke"
    assert [mail["Subject"] for _, _, mail in sink.mails] == [
        "picron: backup is DOWN on node1", "picron: backup is UP again on node1"]

    events = store.list_events(10)
    assert [(e.event, e.failure_streak, e.delivered) for e in events] == [
        ("up", 2, True), ("down", 1, True)]
    runs = store.list_runs(task.id, 10)
    assert [e.run_id for e in events] == [runs[1].id, runs[3].id]
    assert all("notification" not in run.message for run in runs)


def test_a_task_failing_at_every_tick_notifies_once(store, scripted, clock, receiver):
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False,
                    notify=Settings(url=receiver.url))
    add(store, clock)
    Scripted.outcomes = [False] * 6
    for _ in range(6):
        assert tick(runner, clock).failed
    assert [json.loads(data)["event"] for _, data in receiver.requests] == ["down"]
    assert len(store.list_events(10)) == 1


@pytest.mark.parametrize("receiver", ["hang"], indirect=True)
def test_a_hanging_receiver_delays_the_next_task_only_by_the_timeout(store, scripted, clock,
                                                                     receiver):
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False,
                    notify=Settings(url=receiver.url, timeout=0.5))
    first = add(store, clock, "first", ordering=0)
    second = add(store, clock, "second", module="succeed", ordering=1)
    Scripted.outcomes = [False]
    report = tick(runner, clock)
    assert [(r.task, r.status) for r in report.results] == [("first", "failed"),
                                                            ("second", "success")]
    [event] = store.list_events(10)
    assert (event.event, event.task_id, event.delivered) == ("down", first.id, False)
    assert event.detail == f"webhook {receiver.url}: timed out after 0.5 s"
    [run] = store.list_runs(first.id, 1)
    assert run.status == "failed"  # the notification never changes the run's status
    assert run.message == (f"it broke\nnotification 'down' not delivered: webhook "
                           f"{receiver.url}: timed out after 0.5 s")
    assert report.results[0].message == run.message
    assert store.list_runs(second.id, 1)[0].status == "success"


@pytest.mark.parametrize("receiver", ["error"], indirect=True)
def test_an_undelivered_up_keeps_the_success(store, scripted, clock, receiver):
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False,
                    notify=Settings(url=receiver.url))
    task = add(store, clock)
    Scripted.outcomes = [False, True]
    tick(runner, clock)
    assert tick(runner, clock).results[0].status == "success"
    [up, down] = store.list_events(10)
    assert (up.event, up.delivered, down.delivered) == ("up", False, False)
    assert up.detail == f"webhook {receiver.url}: HTTP 500 Internal Server Error"
    run = store.list_runs(task.id, 1)[0]
    assert run.status == "success" and "not delivered: webhook" in run.message


def test_the_task_overrides_the_config(store, scripted, clock, receiver, sink):
    config_receiver = HttpReceiver()
    try:
        runner = Runner(store, scripted, node="node1", clock=clock, isolate=False,
                        notify=Settings(url=config_receiver.url, email="ops@example.org",
                                        smtp_host=sink.host))
        add(store, clock, "own", notify_url=receiver.url, notify_email="")
        add(store, clock, "silent", notify_url="", notify_email="")
        add(store, clock, "default")
        Scripted.outcomes = [False, False, False]
        tick(runner, clock)
    finally:
        config_receiver.close()
    assert [json.loads(data)["task"] for _, data in receiver.requests] == ["own"]
    assert [json.loads(data)["task"] for _, data in config_receiver.requests] == ["default"]
    assert [mail["Subject"] for _, _, mail in sink.mails] == [
        "picron: default is DOWN on node1"]
    events = {e.task_name: e for e in store.list_events(10)}
    assert (events["silent"].delivered, events["silent"].detail) == (
        False, "no destination configured")
    assert events["own"].delivered and events["default"].delivered


def test_each_node_has_its_own_state(store, scripted, clock):
    """Down on node1 says nothing about node2; a node's first failure is down there too."""
    task = add(store, clock, nodes=("node1", "node2"))
    one = Runner(store, scripted, node="node1", clock=clock, isolate=False)
    two = Runner(store, scripted, node="node2", clock=clock, isolate=False)
    Scripted.outcomes = [False, False, True, True]  # node1, node2, node1, node2
    clock.advance(minutes=5)
    one.run_scheduled()
    two.run_scheduled()
    clock.advance(minutes=5)
    one.run_scheduled()
    two.run_scheduled()
    assert [(e.event, e.node) for e in reversed(store.list_events(10))] == [
        ("down", "node1"), ("down", "node2"), ("up", "node1"), ("up", "node2")]
    assert store.get_task(task.id).failure_streak == {"node1": 0, "node2": 0}


def test_a_manual_run_counts_like_any_other(store, scripted, clock):
    task = add(store, clock)
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False)
    Scripted.outcomes = [False, True]
    runner.run_manually(task.id)
    runner.run_manually(task.id)
    assert [e.event for e in store.list_events(10)] == ["up", "down"]


def test_an_interrupted_run_is_a_failure_too(store, scripted, clock, receiver):
    """The process that finds a dead run records it, and sends its "down"."""
    task = add(store, clock)
    claim = store.claim_run(task.id, "node1", "manual", clock(), pid=os.getpid(),
                            host="elsewhere", timeout=60)
    clock.advance(days=1)  # long past its deadline
    runner = Runner(store, scripted, node="node1", clock=clock, isolate=False,
                    notify=Settings(url=receiver.url))
    assert runner.recover_interrupted(clock()) == [claim.run_id]
    [(_, data)] = receiver.requests
    payload = json.loads(data)
    assert (payload["event"], payload["run"]["id"], payload["run"]["status"]) == (
        "down", claim.run_id, "interrupted")
    assert [(e.event, e.run_id, e.delivered) for e in store.list_events()] == [
        ("down", claim.run_id, True)]


# -- the API, the page, the command line ---------------------------------------------------

def test_api_task_fields_and_events(site, web_app):
    created = call(site, "POST", "/api/tasks",
                   {**TASK, "notify_url": "https://hooks.example/x", "notify_email": ""})
    task = body(created)
    assert created.status == 201
    assert (task["notify_url"], task["notify_email"]) == ("https://hooks.example/x", "")
    patched = body(call(site, "PATCH", f"/api/tasks/{task['id']}", {"notify_url": None}))
    assert (patched["notify_url"], patched["notify_email"]) == (None, "")
    refused = call(site, "PATCH", f"/api/tasks/{task['id']}",
                   {"notify_url": "ftp://x", "notify_email": "nobody"})
    assert refused.status == 400
    assert body(refused)["error"]["field"] in ("notify_url", "notify_email")

    assert body(call(site, "GET", "/api/events")) == []
    store = web_app.open_store()
    store.add_event(web_app.clock(), "down", task["id"], "ping", "node1", None, 1)
    second = store.add_event(web_app.clock(), "up", task["id"], "ping", "node1", None, 1)
    store.mark_event_delivered(second, True, "webhook https://hooks.example: delivered")
    response = call(site, "GET", "/api/events?limit=1")
    assert response.status == 200
    assert body(response) == [{"time": "2026-01-01T00:00:00+00:00", "event": "up",
                               "task": "ping", "task_id": task["id"], "node": "node1",
                               "run_id": None, "delivered": True}]
    assert len(body(call(site, "GET", "/api/events"))) == 2
    assert call(site, "GET", "/api/events?limit=0").status == 400


def test_events_page_is_escaped(site, web_app):
    assert "No events yet" in text(call(site, "GET", "/events"))
    store = web_app.open_store()
    store.add_event(web_app.clock(), "down", None, '<b>"x"&', "node1", None, 1)
    page = text(call(site, "GET", "/events"))
    assert "&lt;b&gt;&quot;x&quot;&amp;" in page and '<b>"x"&' not in page
    assert '<a href="/events" aria-current="page">Events</a>' in page


@pytest.fixture
def cli_env(db_path, tmp_path, monkeypatch):
    config = tmp_path / "picron.toml"
    config.write_text('notify_email = "ops@example.org"\n')
    monkeypatch.setenv("PICRON_CONFIG", str(config))
    return db_path


def test_cli_task_flags(cli_env, capsys):
    assert main(["task", "add", "--name", "t", "--interval", "@daily", "--module", "command",
                 "--option", "command=true", "--notify-url", "https://hooks.example/x",
                 "--notify-email", ""]) == 0
    task = json.loads(capsys.readouterr().out)
    assert (task["notify_url"], task["notify_email"]) == ("https://hooks.example/x", "")
    assert main(["task", "edit", "t", "--notify-url", "none"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert (task["notify_url"], task["notify_email"]) == (None, "")
    assert main(["task", "edit", "t", "--notify-email", "not-an-address"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("picron: error: notify_email") and error.count("\n") == 1


def test_cli_events(cli_env, capsys):
    assert main(["events"]) == 0
    assert "no events recorded" in capsys.readouterr().out
    assert main(["task", "add", "--name", "failing", "--interval", "@daily", "--module",
                 "command", "--option", "command=false"]) == 0
    assert main(["run_manually", "-t", "failing"]) == 1
    capsys.readouterr()
    assert main(["events", "--json"]) == 0
    [event] = json.loads(capsys.readouterr().out)
    assert sorted(event) == ["delivered", "event", "node", "run_id", "task", "task_id", "time"]
    assert (event["event"], event["task"], event["delivered"]) == ("down", "failing", False)
    assert main(["events", "--limit", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["TIME", "EVENT", "TASK", "NODE"]
    assert "down" in table[1] and "failing" in table[1]


def test_export_import_keeps_the_destinations(cli_env, tmp_path, capsys):
    assert main(["task", "add", "--name", "t", "--interval", "@daily", "--module", "command",
                 "--option", "command=true", "--notify-url", "https://hooks.example/x",
                 "--notify-email", ""]) == 0
    exported = tmp_path / "tasks.json"
    assert main(["export", str(exported)]) == 0
    assert main(["task", "edit", "t", "--notify-url", "none", "--notify-email", "a@b.org"]) == 0
    assert main(["import", str(exported)]) == 0
    capsys.readouterr()
    assert main(["task", "show", "t"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert (task["notify_url"], task["notify_email"]) == ("https://hooks.example/x", "")


@pytest.mark.parametrize("receiver", ["error"], indirect=True)
def test_cron_tick_reports_an_undelivered_notification_on_stderr_only(db_path, tmp_path,
                                                                      receiver):
    """``run_scheduled -c`` in its own process, the task in a forked child: stdout stays
    empty, stderr says what was not delivered, and the run's message says it too."""
    store = open_store(db_path, default_zone=timezone.utc)
    store.add_task(TaskSpec(name="failing", interval="*/5 * * * *", taskmodule="command",
                            nodes=("node1",), options={"command": "false"}),
                   datetime(2020, 1, 1, tzinfo=timezone.utc))
    config = tmp_path / "picron.toml"
    config.write_text(f'notify_url = "{receiver.url}/hook"\n')
    env = {**os.environ, "PICRON_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "picron", "run_scheduled", "-c"], env=env,
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert f"webhook {receiver.url}: HTTP 500 Internal Server Error" in done.stderr
    [(_, data)] = receiver.requests
    assert json.loads(data)["event"] == "down"
    [run] = store.list_runs()
    assert run.status == "failed"
    assert run.message.endswith(f"notification 'down' not delivered: webhook "
                                f"{receiver.url}: HTTP 500 Internal Server Error")
    [event] = store.list_events()
    assert (event.run_id, event.delivered) == (run.id, False)
    store.close()


def test_task_fields_are_validated(app):
    base = {"name": "t", "interval": "@daily", "taskmodule": "succeed"}
    spec = app.parse_task({**base, "notify_url": "https://u:p@hooks.example:8443/x?y=1",
                           "notify_email": "ops@example.org"})
    assert (spec.notify_url, spec.notify_email) == ("https://u:p@hooks.example:8443/x?y=1",
                                                    "ops@example.org")
    spec = app.parse_task({**base, "notify_url": "", "notify_email": None})
    assert (spec.notify_url, spec.notify_email) == ("", None)
    assert app.parse_task(base).notify_url is None
    for field, value in (("notify_url", "ftp://hooks.example/"), ("notify_url", "hooks.example"),
                         ("notify_url", "http://exa mple/"), ("notify_url", 5),
                         ("notify_email", "ops"), ("notify_email", "a@b@c"),
                         ("notify_email", "Ops <ops@example.org>"), ("notify_email", ["x"])):
        with pytest.raises(ValidationError) as error:
            app.parse_task({**base, field: value})
        assert error.value.field == field and error.value.message.startswith(field)


def test_finish_run_returns_the_state_it_replaced(store, clock):
    task = add(store, clock, module="succeed")

    def claim():
        return store.claim_run(task.id, "node1", "manual", clock(), pid=1, host="h",
                               timeout=60).run_id

    def finish(status, run_id=None):
        return store.finish_run(run_id or claim(), status, clock(), 0.1)

    assert finish("failed").before == (None, 0)
    assert finish("timeout").before == ("failed", 1)
    finished = finish("success")
    assert (finished.status, finished.before) == ("success", ("timeout", 2))
    run_id = claim()
    assert finish("failed", run_id).run_id == run_id
    assert finish("failed", run_id) is None  # finished once only
    run_id = claim()
    store.delete_task(task.id, clock())
    assert finish("failed", run_id).before is None


def test_a_note_added_to_a_full_message_is_kept_whole(store, clock):
    task = add(store, clock, module="succeed")
    claim = store.claim_run(task.id, "node1", "manual", clock(), pid=1, host="h", timeout=60)
    store.finish_run(claim.run_id, "failed", clock(), 1.0, "x" * 5000)
    store.append_run_message(claim.run_id, "notification 'down' not delivered: timed out")
    message = store.get_run(claim.run_id).message
    assert len(message.encode()) <= 4096
    assert message.startswith("xxx") and message.endswith("\nnotification 'down' not "
                                                          "delivered: timed out")


@pytest.fixture
def browser(site):
    return Client(site).log_in()


def test_form_has_a_notifications_fieldset(browser, web_app):
    assert "<legend>Notifications</legend>" in browser.get("/tasks/new").text
    response = browser.post("/tasks", task_form(notify_url="https://hooks.example/x",
                                                notify_email="", notify_email_off="true"))
    assert response.status == 303, response.text
    [task] = web_app.open_store().list_tasks()
    assert (task.notify_url, task.notify_email) == ("https://hooks.example/x", "")
    form = browser.get(f"/tasks/{task.id}/edit").text
    assert 'value="https://hooks.example/x"' in form
    assert re.search(r'name="notify_email_off" value="true" checked', form)
    assert not re.search(r'name="notify_url_off" value="true" checked', form)

    refused = browser.post(f"/tasks/{task.id}", task_form(notify_url="ftp://x",
                                                          notify_email=""))
    assert refused.status == 400 and 'id="error-notify_url"' in refused.text
    saved = browser.post(f"/tasks/{task.id}", task_form(notify_url="", notify_email=""))
    assert saved.status == 303
    task = web_app.open_store().get_task(task.id)
    assert (task.notify_url, task.notify_email) == (None, None)  # empty: the config's
