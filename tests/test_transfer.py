"""Export and import (SPEC §4): picron's own JSON, privacyIDEA's periodic tasks, unchanged
entries left alone, and an export file that nobody else can read at any moment."""
from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from picron.app import App
from picron.cli import main
from picron.config import Config
from picron.errors import ValidationError
from picron.transfer import import_tasks
from tests.conftest import FakeClock, dump

NOW = datetime(2026, 1, 1, 0, 7, tzinfo=timezone.utc)

# The shapes below are privacyIDEA's own: PeriodicTask.get() (privacyidea/models/
# periodictask.py) with its timestamps as privacyidea/api/periodictask.py writes them
# (AUTH_DATE_FORMAT "%Y-%m-%d %H:%M:%S.%f%z"), wrapped by send_result()/prepare_result().
PI_TASKS = [
    {"id": 1, "name": "count failed auths", "active": True, "interval": "*/5 * * * *",
     "nodes": ["pinode1", "pinode2"], "taskmodule": "EventCounter", "retry_if_failed": True,
     "last_update": "2025-12-31 10:00:00.000000+0000", "ordering": 0,
     "options": {"event_counter": "auth_fail", "stats_key": "failed_auths",
                 "reset_event_counter": "True"},
     "last_runs": {"pinode1": "2026-01-01 00:06:00.412345+0000"}},
    {"id": 4, "name": "nightly stats", "active": False, "interval": "0 3 * * *",
     "nodes": ["pinode1"], "taskmodule": "SimpleStats", "retry_if_failed": False,
     "last_update": "2025-12-30 08:15:02.000000+0000", "ordering": 2,
     "options": {"total_tasks": "True", "failed_runs": "False"}, "last_runs": {}},
]
PI_ANSWER = {"id": 1, "jsonrpc": "2.0",
             "result": {"status": True, "value": PI_TASKS},
             "time": 1767225900.5, "version": "privacyIDEA 3.11", "versionnumber": "3.11",
             "signature": "rsa_sha256_pss:1234"}
# pi-manage config export (privacyidea/cli/pimanage/pi_config.py): a dict of config types;
# export_periodictask() writes last_update as DATE_FORMAT "%Y-%m-%dT%H:%M%z".
PI_CONFIG_EXPORT = {
    "periodictask": [{**PI_TASKS[1], "last_update": "2025-12-30T08:15+0000"}],
    "policy": [{"name": "admin", "scope": "admin"}],
    "privacyIDEA_version": "3.11",
}


@pytest.fixture
def pi_app(tmp_path):
    """An app on node ``pinode1`` with the real task modules and a clock at 00:07."""
    config = Config(database=str(tmp_path / "picron.db"), node="pinode1",
                    nodes=("pinode1", "pinode2"), timezone="UTC")
    app = App(config, clock=FakeClock(NOW))
    yield app
    app.store.close()


def due(app, at: datetime) -> list[str]:
    return [app.store.get_task(task_id).name for task_id in app.store.due_task_ids("pinode1", at)]


@pytest.mark.parametrize("document", [PI_ANSWER, PI_TASKS], ids=["whole answer", "result.value"])
def test_privacyidea_answer_keeps_last_runs_so_nothing_runs_early(pi_app, document):
    summary = import_tasks(pi_app, json.dumps(document))
    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    task = pi_app.store.find_task("count failed auths")
    assert task.taskmodule == "eventcounter" and task.nodes == ("pinode1", "pinode2")
    assert task.options == {"event_counter": "auth_fail", "stats_key": "failed_auths",
                            "reset_event_counter": "true"}
    assert task.last_runs == {"pinode1": datetime(2026, 1, 1, 0, 6, tzinfo=timezone.utc)}
    stats = pi_app.store.find_task("nightly stats")
    assert (stats.taskmodule, stats.active, stats.retry_if_failed, stats.ordering) == (
        "simplestats", False, False, 2)
    # privacyIDEA ran it at 00:06: with */5 the next slot is 00:10, not now.
    assert due(pi_app, NOW) == []
    assert due(pi_app, datetime(2026, 1, 1, 0, 9, 59, tzinfo=timezone.utc)) == []
    pi_app.clock.set(datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc))
    assert due(pi_app, pi_app.clock()) == ["count failed auths"]
    report = pi_app.runner().run_scheduled()
    assert [result.task for result in report.results] == ["count failed auths"]
    assert pi_app.runner().run_scheduled().results == []  # once, not twice


def test_a_slot_privacyidea_missed_after_its_last_run_is_not_lost(pi_app):
    # privacyIDEA ran it at 00:06 and was switched off; imported at 00:12, the 00:10 slot
    # is due (from the kept last run), while pinode2 (no last run) waits for 00:15.
    pi_app.clock.set(datetime(2026, 1, 1, 0, 12, tzinfo=timezone.utc))
    import_tasks(pi_app, json.dumps(PI_ANSWER))
    assert due(pi_app, pi_app.clock()) == ["count failed auths"]
    task = pi_app.store.find_task("count failed auths")
    assert task.next_runs == {"pinode1": datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc),
                              "pinode2": datetime(2026, 1, 1, 0, 15, tzinfo=timezone.utc)}


def test_privacyidea_config_export_is_read(pi_app):
    summary = import_tasks(pi_app, json.dumps(PI_CONFIG_EXPORT))
    assert (summary.created, summary.updated, summary.unchanged) == (1, 0, 0)
    task = pi_app.store.find_task("nightly stats")
    assert task.last_runs == {} and task.last_update == NOW
    assert task.options == {"total_tasks": "true", "failed_runs": "false"}


def test_reimporting_privacyidea_tasks_never_moves_a_last_run_back(pi_app):
    import_tasks(pi_app, json.dumps(PI_ANSWER))
    before = dump(pi_app.config.database)
    summary = import_tasks(pi_app, json.dumps(PI_ANSWER))
    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 2)
    assert dump(pi_app.config.database) == before  # no write, no last_update, no audit
    later = datetime(2026, 1, 1, 0, 11, tzinfo=timezone.utc)
    task_id = pi_app.store.find_task("count failed auths").id
    pi_app.store.set_last_run(task_id, "pinode1", later)  # picron ran it meanwhile
    older = json.loads(json.dumps(PI_ANSWER))
    older["result"]["value"][0]["last_runs"]["pinode2"] = "2026-01-01 00:12:00.000000+0000"
    summary = import_tasks(pi_app, json.dumps(older))
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 1)
    assert pi_app.store.get_task(task_id).last_runs == {
        "pinode1": later, "pinode2": datetime(2026, 1, 1, 0, 12, tzinfo=timezone.utc)}


@pytest.mark.parametrize("change, message", [
    (lambda t: t["options"].update(total_tokens="True"), "'total_tokens'"),
    (lambda t: t.update(taskmodule="MetricsCleanup"), "'MetricsCleanup'"),
    (lambda t: t.update(nodes=["pi node"]), "nodes"),
    (lambda t: t.update(last_runs={"pinode1": "yesterday"}), "last_runs"),
    (lambda t: t.update(signature="x"), "signature"),
])
def test_a_bad_privacyidea_entry_is_named_and_nothing_is_imported(pi_app, change, message):
    import_tasks(pi_app, json.dumps([PI_TASKS[0]]))
    before = dump(pi_app.config.database)
    answer = json.loads(json.dumps(PI_ANSWER))
    change(answer["result"]["value"][1])
    with pytest.raises(ValidationError) as error:
        import_tasks(pi_app, json.dumps(answer))
    assert "task #2 ('nightly stats')" in error.value.message
    assert message in error.value.message
    assert dump(pi_app.config.database) == before


def test_a_privacyidea_error_answer_is_refused(pi_app):
    answer = {"jsonrpc": "2.0", "result": {"status": False, "error": {
        "code": 303, "message": "Authentication failure. Missing Authorization header."}}}
    with pytest.raises(ValidationError, match="Missing Authorization header"):
        import_tasks(pi_app, json.dumps(answer))
    with pytest.raises(ValidationError, match="configuration export"):
        import_tasks(pi_app, json.dumps({"tasks": []}))


# -- the command line: unchanged entries, the summary, the export file ------------------


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reimporting_an_unchanged_export_changes_nothing(db_path, capsys, tmp_path):
    for name in ("one", "two"):
        assert run(capsys, "task", "add", "--name", name, "--interval", "*/5 * * * *",
                   "--module", "command", "--option", "command=true")[0] == 0
    export = tmp_path / "tasks.json"
    assert run(capsys, "export", str(export))[0] == 0
    before = dump(db_path)
    code, out, err = run(capsys, "import", str(export))
    assert code == 0, err
    assert out.strip() == "imported 2 tasks (0 created, 0 updated, 2 unchanged)"
    assert dump(db_path) == before  # audit log and last_update included
    tasks = json.loads(export.read_text())
    tasks[1]["ordering"] = 3
    export.write_text(json.dumps(tasks))
    code, out, _ = run(capsys, "import", str(export))
    assert out.strip() == "imported 2 tasks (0 created, 1 updated, 1 unchanged)"


def test_import_reads_a_privacyidea_file_from_the_command_line(db_path, capsys, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("PICRON_NODE", "pinode1")
    file = tmp_path / "periodictask.json"
    file.write_text(json.dumps(PI_ANSWER))
    code, out, err = run(capsys, "import", str(file))
    assert code == 0, err
    assert out.strip() == "imported 2 tasks (2 created, 0 updated, 0 unchanged)"
    shown = json.loads(run(capsys, "task", "show", "count failed auths")[1])
    assert shown["last_runs"] == {"pinode1": "2026-01-01T00:06:00+00:00"}
    bad = json.loads(json.dumps(PI_ANSWER))
    bad["result"]["value"][0]["options"]["hardware_tokens"] = "True"
    file.write_text(json.dumps(bad))
    before = dump(db_path)
    code, _, err = run(capsys, "import", str(file))
    assert code == 2 and "'hardware_tokens'" in err and len(err.strip().splitlines()) == 1
    assert dump(db_path) == before


def test_export_file_is_0600_from_the_moment_it_exists(db_path, capsys, tmp_path, monkeypatch):
    assert run(capsys, "task", "add", "--name", "secret url", "--interval", "@daily",
               "--module", "command", "--option", "command=true")[0] == 0
    target = tmp_path / "tasks.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    seen = []
    real_replace = os.replace

    def spy(source, destination):
        # the moment before the file appears under its name: complete, and 0600 already
        seen.append((stat.S_IMODE(os.stat(source).st_mode), open(source).read(),
                     open(destination).read()))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    old_umask = os.umask(0)
    try:
        code, _, err = run(capsys, "export", str(target))
    finally:
        os.umask(old_umask)
    assert code == 0, err
    ((mode, text, old),) = seen
    assert mode == 0o600 and json.loads(text)[0]["name"] == "secret url" and old == "old"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert target.read_text() == text
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    code, _, err = run(capsys, "export", str(tmp_path / "missing" / "x.json"))
    assert code == 2 and "cannot write" in err
