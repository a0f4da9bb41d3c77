"""The command line (SPEC §4) through main(argv): output, exit codes, nothing changed on error."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from picron.cli import build_parser, main
from tests.conftest import dump as dump_database


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dump(path):
    """The database without its audit log (a refused command may still be audited)."""
    return [line for line in dump_database(path) if not line.startswith('INSERT INTO "audit"')]


def add(capsys, name="hello", *extra):
    code, out, err = run(capsys, "task", "add", "--name", name, "--interval", "*/5 * * * *",
                         "--module", "command", "--option", "command=echo hi", *extra)
    assert code == 0, err
    return json.loads(out)


def test_task_add_prints_the_task_as_json(db_path, capsys):
    task = add(capsys, "hello", "--nodes", "node1, node2", "--ordering", "3", "--inactive",
               "--no-retry", "--max-retries", "2", "--timezone", "Europe/Berlin",
               "--timeout", "60")
    assert task["name"] == "hello" and task["nodes"] == ["node1", "node2"]
    assert (task["ordering"], task["active"], task["retry_if_failed"], task["max_retries"],
            task["timezone"], task["timeout"]) == (3, False, False, 2, "Europe/Berlin", 60)
    assert task["options"] == {"command": "echo hi"}
    assert set(task["next_runs"]) == {"node1", "node2"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", task["last_update"])


def test_list_table_and_json(db_path, capsys):
    add(capsys, "b-task", "--ordering", "2")
    add(capsys, "a-task", "--ordering", "1", "--nodes", "other")
    code, out, _ = run(capsys, "list")
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split()[:4] == ["ACTIVE", "ID", "NAME", "INTERVAL"]
    assert "a-task" in first and "b-task" in second
    code, out, _ = run(capsys, "list", "--json", "-n", "node1")
    tasks = json.loads(out)
    assert [t["name"] for t in tasks] == ["b-task"]
    assert {"next_runs", "last_status", "failure_streak", "last_runs"} <= set(tasks[0])


def test_run_manually_and_history(db_path, capsys):
    add(capsys)
    code, out, _ = run(capsys, "run_manually", "-t", "hello")
    assert code == 0 and "hello on node1: success" in out
    code, out, _ = run(capsys, "run-manually", "--task", "hello", "-n", "node9")
    assert code == 0
    code, out, _ = run(capsys, "task", "show", "hello")  # SPEC §2 rule 7
    shown = json.loads(out)
    assert set(shown["last_runs"]) == {"node1", "node9"} and shown["nodes"] == ["node1"]
    code, out, _ = run(capsys, "history", "--json")
    runs = json.loads(out)
    assert [(r["node"], r["trigger"], r["status"], r["message"]) for r in runs] == [
        ("node9", "manual", "success", "hi"), ("node1", "manual", "success", "hi")]
    code, out, _ = run(capsys, "history", "--task", "hello", "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 2


def test_failing_task_exits_1_and_cron_mode_is_quiet(db_path, capsys):
    run(capsys, "task", "add", "--name", "bad", "--interval", "* * * * *", "--module",
        "command", "--option", "command=false")
    code, out, err = run(capsys, "run_manually", "-t", "bad")
    assert code == 1 and "failed" in out
    conn = sqlite3.connect(db_path)
    conn.execute("update task_node set due_at = '2000-01-01T00:00:00+00:00'")
    conn.commit()
    code, out, err = run(capsys, "run_scheduled", "-c")
    assert code == 1 and out == "" and "bad on node1: failed" in err
    conn.execute("update task_node set due_at = '2000-01-01T00:00:00+00:00'")
    conn.commit()
    code, out, err = run(capsys, "run-scheduled")
    assert code == 1 and "running bad" in out and "bad on node1: failed" in out


def test_dry_run_runs_nothing(db_path, capsys):
    add(capsys)
    code, out, _ = run(capsys, "run_scheduled", "-d", "--at", "2099-01-01T00:00")
    assert code == 0 and "would run hello" in out
    code, out, _ = run(capsys, "run_scheduled", "-d", "--at", "2000-01-01T00:00")
    assert code == 0 and "nothing would run" in out  # before the task existed
    run(capsys, "task", "disable", "hello")
    code, out, _ = run(capsys, "run_scheduled", "--dryrun")  # now: inactive never runs
    assert code == 0 and "nothing would run" in out
    assert run(capsys, "history", "--json")[1].strip() == "[]"
    code, _, err = run(capsys, "run_scheduled", "--at", "2099-01-01T00:00")
    assert code == 2 and "--at" in err


def test_global_options_before_or_after_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PICRON_DB", raising=False)
    monkeypatch.setenv("PICRON_NODE", "node1")
    first, second = str(tmp_path / "x.db"), str(tmp_path / "y.db")
    assert main(["--db", first, "task", "add", "--name", "one", "--interval", "@daily",
                 "--module", "command", "--option", "command=true"]) == 0
    assert main(["task", "add", "--name", "two", "--interval", "@daily", "--module",
                 "command", "--option", "command=true", "--db", second]) == 0
    capsys.readouterr()
    assert [t["name"] for t in json.loads(run(capsys, "list", "--json", "--db", first)[1])] \
        == ["one"]
    assert [t["name"] for t in json.loads(run(capsys, "--db", second, "list", "--json")[1])] \
        == ["two"]


def test_edit_show_enable_disable_delete(db_path, capsys):
    add(capsys)
    code, out, _ = run(capsys, "task", "edit", "hello", "--rename", "greet", "--ordering", "5",
                       "--option", "command=echo bye", "--timezone", "none")
    task = json.loads(out)
    assert (task["name"], task["ordering"], task["options"]) == \
        ("greet", 5, {"command": "echo bye"})
    assert run(capsys, "task", "disable", "greet")[0] == 0
    assert json.loads(run(capsys, "task", "show", "greet")[1])["active"] is False
    assert run(capsys, "task", "enable", "greet")[0] == 0
    assert json.loads(run(capsys, "task", "show", "greet")[1])["active"] is True
    assert run(capsys, "task", "delete", "greet")[0] == 0
    code, _, err = run(capsys, "task", "show", "greet")
    assert code == 2 and err.strip() == "picron: error: task 'greet' not found"


@pytest.mark.parametrize("argv, field", [
    (["task", "add", "--name", "", "--interval", "@daily", "--module", "command",
      "--option", "command=true"], "name"),
    (["task", "add", "--name", "x", "--interval", "61 * * * *", "--module", "command",
      "--option", "command=true"], "interval"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "os"], "taskmodule"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command"], "options"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command",
      "--option", "command=true", "--ordering", "-1"], "ordering"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command",
      "--option", "command=true", "--nodes", "a b"], "nodes"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command",
      "--option", "command=true", "--timezone", "Nowhere/City"], "timezone"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command",
      "--option", "command=true", "--timeout", "0"], "timeout"),
    (["task", "add", "--name", "hello", "--interval", "@daily", "--module", "command",
      "--option", "command=true"], "name"),
    (["task", "add", "--name", "x", "--interval", "@daily", "--module", "command",
      "--option", "nonsense"], "option"),
    (["task", "edit", "nobody", "--ordering", "1"], "nobody"),
    (["run_manually", "-t", "nobody"], "nobody"),
    (["run_scheduled", "-n", ""], "node"),
    (["run_scheduled", "-n", "a/b"], "node"),
    (["frobnicate"], "frobnicate"),
    (["task", "add", "--name", "x"], "required"),
    (["list", "--bogus"], "--bogus"),
])
def test_invalid_input_exits_2_with_one_line_and_changes_nothing(db_path, capsys, argv, field):
    add(capsys)
    before = dump(db_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and field in err
    assert "Traceback" not in err and "usage:" not in err
    assert dump(db_path) == before


@pytest.mark.parametrize("kind", ["directory", "garbage", "text", "empty", "readonly"])
def test_unusable_database_exits_3_and_is_left_untouched(tmp_path, capsys, kind, monkeypatch):
    path = tmp_path / "db"
    if kind == "directory":
        path.mkdir()
    else:
        content = {"garbage": os.urandom(4096), "text": b"hello\n", "empty": b""}.get(kind)
        if kind == "readonly":
            assert main(["--db", str(path), "list"]) == 0
            content = path.read_bytes()
            path.chmod(0o400)
        path.write_bytes(content) if kind != "readonly" else None
    before = None if kind == "directory" else path.read_bytes()
    capsys.readouterr()
    # A read-only file can be read (tests/reliability/test_database.py); writing it cannot.
    argv = ["counter", "incr", "c"] if kind == "readonly" else ["list"]
    code, out, err = run(capsys, "--db", str(path), *argv)
    assert code == 3 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and ("read-only" in err or kind != "readonly")
    if before is not None:
        assert path.read_bytes() == before


def test_bad_config_file_exits_3(tmp_path, capsys):
    bad = tmp_path / "picron.toml"
    bad.write_text("node = [unclosed\n")
    code, _, err = run(capsys, "--config", str(bad), "list")
    assert code == 3 and "not valid TOML" in err
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "list")
    assert code == 3 and "cannot read" in err
    bad.write_text('colour = "red"\n')
    code, _, err = run(capsys, "--config", str(bad), "list")
    assert code == 3 and "unknown key 'colour'" in err


def test_config_file_sets_database_node_and_timezone(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PICRON_DB", raising=False)
    monkeypatch.delenv("PICRON_NODE", raising=False)
    config = tmp_path / "picron.toml"
    config.write_text(f'database = "{tmp_path / "c.db"}"\nnode = "web1"\n'
                      'timezone = "Europe/Berlin"\n')
    code, out, err = run(capsys, "--config", str(config), "task", "add", "--name", "t",
                         "--interval", "0 3 * * *", "--module", "command",
                         "--option", "command=true")
    assert code == 0, err
    task = json.loads(out)
    assert task["nodes"] == ["web1"]
    assert task["next_runs"]["web1"].endswith(("T02:00:00+00:00", "T01:00:00+00:00"))
    assert (tmp_path / "c.db").exists()


def test_export_import_round_trip_is_all_or_nothing(db_path, capsys, tmp_path):
    add(capsys, "one")
    add(capsys, "two", "--ordering", "4")
    export = tmp_path / "tasks.json"
    assert run(capsys, "export", str(export))[0] == 0
    exported = json.loads(export.read_text())
    assert [t["name"] for t in exported] == ["one", "two"]
    run(capsys, "task", "delete", "one")
    run(capsys, "task", "edit", "two", "--ordering", "9")
    code, out, _ = run(capsys, "import", str(export))
    assert code == 0 and "1 created, 1 updated" in out
    tasks = {t["name"]: t for t in json.loads(run(capsys, "list", "--json")[1])}
    assert tasks["two"]["ordering"] == 4 and "one" in tasks
    bad = exported + [{"name": "three", "interval": "nonsense", "taskmodule": "command",
                       "options": {"command": "true"}}]
    bad[0] = {**bad[0], "ordering": 7}
    export.write_text(json.dumps(bad))
    before = dump(db_path)
    code, _, err = run(capsys, "import", str(export))
    assert code == 2 and "task #3" in err and "interval" in err
    assert dump(db_path) == before


def test_import_accepts_privacyidea_module_names(db_path, capsys, tmp_path):
    file = tmp_path / "in.json"
    file.write_text(json.dumps([{"name": "x", "interval": "@daily", "taskmodule": "COMMAND",
                                 "options": {"command": "true"}}]))
    assert run(capsys, "import", str(file))[0] == 0
    assert json.loads(run(capsys, "task", "show", "x")[1])["taskmodule"] == "command"


def test_next_check_and_backup(db_path, capsys, tmp_path):
    add(capsys)
    code, out, _ = run(capsys, "next", "hello", "--count", "3")
    assert code == 0 and len(out.strip().splitlines()) == 4
    code, _, err = run(capsys, "check")
    assert code == 1 and "never been invoked" in err
    run(capsys, "run_scheduled", "-c")
    code, out, _ = run(capsys, "check", "--max-age", "15")
    assert code == 0 and out.startswith("ok")
    target = tmp_path / "copy.db"
    assert run(capsys, "backup", str(target))[0] == 0
    copy = sqlite3.connect(target)
    assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert copy.execute("select name from task").fetchall() == [("hello",)]


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotdot", "hardlink", "wal", "shm"])
def test_backup_refuses_the_live_database(db_path, capsys, tmp_path, spelling):
    add(capsys)
    run(capsys, "list")
    link = tmp_path / "link.db"
    if spelling == "symlink":
        link.symlink_to(db_path)
    elif spelling == "hardlink":
        os.link(db_path, link)
    target = {"same": db_path, "symlink": str(link), "hardlink": str(link),
              "dotdot": str(tmp_path / ".." / tmp_path.name / "picron.db"),
              "wal": db_path + "-wal", "shm": db_path + "-shm"}[spelling]
    before, names = dump_database(db_path), _files(tmp_path)
    for force in ([], ["--force"]):
        code, out, err = run(capsys, "backup", target, *force)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "is the live database" in err and "backup written" not in err
    assert dump_database(db_path) == before and _files(tmp_path) == names


def _files(directory) -> list[str]:
    """The files in ``directory``, without SQLite's -wal/-shm (open connections keep them)."""
    return sorted(name for name in os.listdir(directory) if not name.endswith(("-wal", "-shm")))


def test_backup_replaces_an_existing_file_only_with_force(db_path, capsys, tmp_path):
    add(capsys)
    target = tmp_path / "copy.db"
    target.write_text("an older file\n")
    target.chmod(0o644)
    code, out, err = run(capsys, "backup", str(target))
    assert code == 2 and out == "" and f"{target} exists; use --force" in err
    assert target.read_text() == "an older file\n"
    code, out, _ = run(capsys, "backup", "--force", str(target))
    assert code == 0 and out == f"backup written to {target}\n"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert sqlite3.connect(target).execute("select name from task").fetchall() == [("hello",)]
    assert _files(tmp_path) == ["copy.db", "picron.db"]  # no temporary left


def test_backup_file_is_private_from_its_creation(db_path, capsys, tmp_path, monkeypatch):
    """Every file that appears beside the backup is 0600 the moment SQLite first opens it,
    and one planted under the temporary name (with a reader holding it open) is not used."""
    add(capsys)
    backups = tmp_path / "backups"
    backups.mkdir()
    planted = backups / f".copy.db.{os.getpid()}.tmp"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    reader = open(planted, "rb")
    seen = {}
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        if str(target).startswith(str(backups)):
            seen[str(target)] = os.stat(target).st_mode & 0o777
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    old_umask = os.umask(0)
    try:
        assert run(capsys, "backup", str(backups / "copy.db"))[0] == 0
    finally:
        os.umask(old_umask)
        monkeypatch.undo()
    assert list(seen.values()) == [0o600]
    assert reader.read() == b""  # the reader of the planted file got nothing of the database
    reader.close()
    assert os.listdir(backups) == ["copy.db"]
    assert os.stat(backups / "copy.db").st_mode & 0o777 == 0o600


def test_new_database_has_private_permissions(tmp_path, capsys, monkeypatch):
    path = tmp_path / "data" / "picron" / "picron.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("PICRON_DB", raising=False)
    assert main(["list"]) == 0
    assert path.exists()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(set(action.choices))


@pytest.mark.parametrize("command", subcommands())
def test_every_command_has_help_and_is_in_the_readme(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "usage: picron" in capsys.readouterr().out
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"`{command}" in readme or f"`{command.replace('-', '_')}" in readme


def test_python_dash_m_picron_is_the_same_program(db_path):
    done = subprocess.run([sys.executable, "-m", "picron", "list", "--json"],
                          capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0 and json.loads(done.stdout) == []
    done = subprocess.run([sys.executable, "-m", "picron", "task", "show", "x"],
                          capture_output=True, text=True, env=os.environ)
    assert done.returncode == 2 and done.stderr == "picron: error: task 'x' not found\n"


@pytest.mark.parametrize("where", ["idle look", "full tick"])
@pytest.mark.parametrize("argv", [["run_scheduled", "-c"], ["run-scheduled"]])
def test_a_tick_that_cannot_complete_exits_3_never_1(db_path, capsys, monkeypatch, where, argv):
    """Exit 1 of run_scheduled means "a task failed" to cron and monitoring."""
    from picron import runner, storage

    def broken(*args, **kwargs):
        raise ValueError("unexpected")

    add(capsys)
    if where == "idle look":
        monkeypatch.setattr(storage, "tick_is_idle", broken)
    else:
        monkeypatch.setattr(storage, "tick_is_idle", lambda *args: False)
        monkeypatch.setattr(runner.Runner, "run_scheduled", broken)
    if where == "idle look" and "-c" not in argv:
        pytest.skip("only a quiet tick takes the idle look")
    code, out, err = run(capsys, *argv)
    assert code == 3 and out == "" and "internal error (ValueError: unexpected)" in err
