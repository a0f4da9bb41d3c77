"""Secret options (SPEC §5): never shown back by any output; a placeholder sent back keeps
the stored value."""
from __future__ import annotations

import json

import pytest

from picron.app import App
from picron.cli import main
from picron.config import Config
from picron.modules import Registry
from picron.modules.http import Http
from picron.webapp.site import Site
from picron.tasks import PLACEHOLDER, mask_value
from tests.conftest import FAKE_MODULES
from tests.webclient import body, call, text, token_login

SECRET = "X-Api-Key: hunter2-secret"
URL = "https://ada:pa55word@example.org/hook"
TASK = {"name": "hook", "interval": "@daily", "taskmodule": "http",
        "options": {"url": URL, "headers": SECRET, "method": "POST"}}
SHOWN = {"url": "https://ada:********@example.org/hook", "headers": PLACEHOLDER,
         "method": "POST"}


@pytest.fixture
def app(tmp_path, clock):
    config = Config(database=str(tmp_path / "picron.db"), node="node1", nodes=("node1",),
                    timezone="UTC")
    return App(config, clock=clock, registry=Registry(modules={**FAKE_MODULES, "http": Http}))


@pytest.fixture
def site(app):
    return Site(app, failed_login_delay=0)


def stored_options(app) -> dict:
    return app.open_store().find_task("hook").options


def test_mask_value():
    assert mask_value("x", secret=True) == PLACEHOLDER and mask_value("", secret=True) == ""
    assert mask_value(URL, secret=False) == SHOWN["url"]
    assert mask_value("https://ada@example.org/", secret=False) == "https://ada@example.org/"
    assert mask_value("plain text", secret=False) == "plain text"


def test_the_api_never_shows_secrets_and_a_placeholder_keeps_them(site, app):
    created = call(site, "POST", "/api/tasks", TASK)
    assert created.status == 201 and body(created)["options"] == SHOWN
    task_id = body(created)["id"]
    for path in ("/api/tasks", f"/api/tasks/{task_id}"):
        answer = text(call(site, "GET", path))
        assert "hunter2" not in answer and "pa55word" not in answer, path
    fetched = body(call(site, "GET", f"/api/tasks/{task_id}"))
    put = call(site, "PUT", f"/api/tasks/{task_id}", {**fetched, "ordering": 3})
    assert put.status == 200 and body(put)["options"] == SHOWN
    patch = call(site, "PATCH", f"/api/tasks/{task_id}", {"options": SHOWN})
    assert patch.status == 200
    assert stored_options(app) == TASK["options"]            # the stored values are kept
    call(site, "PATCH", f"/api/tasks/{task_id}",
         {"options": {**SHOWN, "headers": "X-Api-Key: new"}})
    assert stored_options(app)["headers"] == "X-Api-Key: new"  # a real change is a change


def test_the_edit_form_never_shows_secrets_and_saving_it_keeps_them(site, app):
    task_id = body(call(site, "POST", "/api/tasks", TASK))["id"]
    cookies = token_login(site)
    page = text(call(site, "GET", f"/tasks/{task_id}/edit", cookies=cookies))
    assert "hunter2" not in page and "pa55word" not in page and PLACEHOLDER in page
    import re

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": csrf, "name": "hook", "interval": "@weekly", "taskmodule": "http",
            "nodes": "node1", "ordering": "0", "active": "true", "retry_if_failed": "true",
            "timezone": "", "max_retries": "", "timeout": "",
            "option.url": SHOWN["url"], "option.headers": PLACEHOLDER, "option.method": "POST"}
    saved = call(site, "POST", f"/tasks/{task_id}", form=form, cookies=cookies)
    assert saved.status == 303, text(saved)
    task = app.open_store().find_task("hook")
    assert task.interval == "@weekly" and task.options == TASK["options"]


def test_the_cli_never_shows_secrets_unless_export_secrets(site, app, tmp_path, capsys):
    call(site, "POST", "/api/tasks", TASK)
    database = app.config.database
    for argv in (["list"], ["list", "--json"], ["task", "show", "hook"], ["export"],
                 ["task", "edit", "hook", "--ordering", "2"]):
        assert main(["--db", database, *argv]) == 0, argv
        out = capsys.readouterr().out
        assert "hunter2" not in out and "pa55word" not in out, argv
    assert main(["--db", database, "export"]) == 0
    masked = capsys.readouterr().out
    assert main(["--db", database, "export", "--secrets"]) == 0
    full = capsys.readouterr().out
    assert "hunter2" in full and "pa55word" in full
    # importing the masked export keeps the stored secrets
    path = tmp_path / "masked.json"
    path.write_text(masked)
    assert main(["--db", database, "import", str(path)]) == 0
    assert stored_options(app) == TASK["options"]
    edited = tmp_path / "edited.json"
    data = json.loads(masked)
    data[0]["options"]["headers"] = "X-Api-Key: other"
    edited.write_text(json.dumps(data))
    assert main(["--db", database, "import", str(edited)]) == 0
    assert stored_options(app)["headers"] == "X-Api-Key: other"
