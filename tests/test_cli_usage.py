"""The command line people expect (SPEC §4): version, overview, completion, readable failures."""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

import picron
from picron.arguments import version
from picron.webapp.login import password_hash
from picron.cli import build_parser, main
from picron.completion import bash_script
from picron.storage import open_store
from picron.schedule import validate_interval
from tests.test_cli import add, run

FAILING = (f"{sys.executable} -c \"import sys; print('step 1'); print('step 2'); "
           "print('disk on fire', file=sys.stderr); sys.exit(2)\"")


def make_due(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("update task_node set due_at = '2000-01-01T00:00:00+00:00'")
    conn.commit()
    conn.close()


def picron_process(*argv, stdin=b""):
    """The real program: what cron sees on stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "picron", *argv], input=stdin,
                          capture_output=True, env=os.environ, timeout=120)


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"picron {version()}\n"
    # not installed in the test environment: the source tree's version
    assert version() == picron.__version__


@pytest.mark.parametrize("argv", [[], ["--db", "x.db"], ["--debug"]])
def test_bare_picron_prints_the_overview_and_exits_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("usage: picron") and "run_scheduled" in err and "completion" in err
    assert not (tmp_path / "x.db").exists()


def stdin_bytes(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_passwd_remove(db_path, capsys, monkeypatch):
    stdin_bytes(monkeypatch, "geheimnis-ä\n".encode())
    assert run(capsys, "passwd")[0] == 0
    store = open_store(db_path)
    assert password_hash(store) is not None
    code, out, _ = run(capsys, "passwd", "--remove")
    assert code == 0 and "removed" in out
    assert password_hash(store) is None
    code, out, _ = run(capsys, "passwd", "--remove")
    assert code == 0 and out == "no admin password was set\n"


def test_passwd_input_that_is_not_utf8_exits_2(db_path, capsys, monkeypatch):
    stdin_bytes(monkeypatch, b"caf\xe9-latin1\n")
    code, out, err = run(capsys, "passwd")
    assert code == 2 and out == ""
    assert err == "picron: error: password: not valid UTF-8 text\n"
    assert password_hash(open_store(db_path)) is None
    done = picron_process("passwd", stdin=b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\n")
    assert (done.returncode, done.stdout, done.stderr) == \
        (2, b"", b"picron: error: password: not valid UTF-8 text\n")


def test_check_tasks_names_the_failing_tasks_of_this_node(db_path, capsys):
    for name, command in (("bad", "false"), ("good", "true"), ("off", "false")):
        run(capsys, "task", "add", "--name", name, "--interval", "@daily", "--module",
            "command", "--option", f"command={command}")
        run(capsys, "run_manually", "-t", name)
    run(capsys, "task", "disable", "off")
    run(capsys, "run_scheduled", "-c")  # the tick that check looks for
    assert run(capsys, "check")[0] == 0
    code, out, err = run(capsys, "check", "--tasks")
    assert code == 1 and out.startswith("ok")
    assert err == "failing on node node1: bad\n"
    run(capsys, "task", "edit", "bad", "--option", "command=true")
    run(capsys, "run_manually", "-t", "bad")
    assert run(capsys, "check", "--tasks")[:2] == (0, run(capsys, "check")[1])


@pytest.mark.parametrize("interval, message", [
    ("61 * * * *", "interval: minute: 61 is out of range 0-59"),
    ("0 24 * * *", "interval: hour: 24 is out of range 0-23"),
    ("0 0 0 * *", "interval: day of month: 0 is out of range 1-31"),
    ("0 0 * 1,13 *", "interval: month: 13 is out of range 1-12"),
    ("0 0 * * 8", "interval: day of week: 8 is out of range 0-7"),
    ("0 0 * * funday", "interval: day of week: 'funday' is not valid"),
    ("30-10 * * * *", "interval: minute: the range '30-10' is reversed"),
    ("*/0 * * * *", "interval: minute: '*/0' is not valid"),
    ("0 0 31 2 *", "interval: '0 0 31 2 *' is not a valid crontab expression (or never fires)"),
])
def test_interval_errors_name_the_bad_field(db_path, capsys, interval, message):
    with pytest.raises(picron.errors.ValidationError) as caught:
        validate_interval(interval)
    assert caught.value.message == message and caught.value.field == "interval"
    code, out, err = run(capsys, "task", "add", "--name", "x", "--interval", interval,
                         "--module", "command", "--option", "command=true")
    assert (code, out, err) == (2, "", f"picron: error: {message}\n")


def test_unknown_module_lists_the_installed_ones(db_path, capsys):
    code, _, err = run(capsys, "task", "add", "--name", "x", "--interval", "@daily",
                       "--module", "cmd")
    assert code == 2
    assert err == ("picron: error: taskmodule: unknown task module 'cmd'; installed: backup,"
                   " cleanup, command, eventcounter, http, simplestats\n")


def test_cron_tick_with_a_module_warning_prints_nothing(db_path, capsys):
    """A real ``-c`` tick: the warning is in the run's message, not on cron's mail."""
    run(capsys, "task", "add", "--name", "count", "--interval", "* * * * *", "--module",
        "eventcounter", "--option", "event_counter=logins", "--option", "stats_key=logins")
    make_due(db_path)
    done = picron_process("run_scheduled", "-c")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [record] = json.loads(run(capsys, "history", "--json")[1])
    assert record["status"] == "success"
    assert "there is no event counter named 'logins'" in record["message"]
    # the failure of another task is still reported, and nothing else is
    run(capsys, "task", "add", "--name", "broken", "--interval", "* * * * *", "--module",
        "command", "--option", f"command={FAILING}")
    make_due(db_path)
    done = picron_process("run_scheduled", "-c")
    assert (done.returncode, done.stdout) == (1, b"")
    [line] = done.stderr.decode().splitlines()
    assert line.startswith("picron: broken on node1: failed (")
    assert line.endswith("s): exit status 2: step 1 / step 2 / disk on fire")


def test_warnings_still_reach_stderr_without_cron_mode(db_path, capsys):
    run(capsys, "task", "add", "--name", "count", "--interval", "* * * * *", "--module",
        "eventcounter", "--option", "event_counter=logins", "--option", "stats_key=logins")
    make_due(db_path)
    done = picron_process("run_scheduled")
    assert done.returncode == 0 and b"count on node1: success" in done.stdout
    assert b"no event counter named 'logins'" in done.stderr


def test_history_of_a_deleted_task_lists_its_kept_runs(db_path, capsys):
    add(capsys)
    run(capsys, "run_manually", "-t", "hello")
    run(capsys, "task", "delete", "hello")
    code, out, _ = run(capsys, "history", "--task", "hello")
    assert code == 0 and len(out.splitlines()) == 2 and "hello" in out.splitlines()[1]
    assert [r["task"] for r in json.loads(run(capsys, "history", "--task", "hello",
                                              "--json")[1])] == ["hello"]
    add(capsys, "hello")  # a new task of that name: its own (empty) history
    assert run(capsys, "history", "--task", "hello")[1] == "no runs recorded\n"
    code, _, err = run(capsys, "history", "--task", "nobody")
    assert code == 2 and err == "picron: error: task 'nobody' not found\n"


def test_failed_command_shows_the_end_of_its_output(db_path, capsys):
    run(capsys, "task", "add", "--name", "broken", "--interval", "@daily", "--module",
        "command", "--option", f"command={FAILING}")
    code, out, _ = run(capsys, "run_manually", "-t", "broken")
    assert code == 1
    assert out.endswith(": exit status 2: step 1 / step 2 / disk on fire\n")
    table = run(capsys, "history")[1]
    assert table.splitlines()[1].endswith("exit status 2: step 1 / step 2 / disk on fire")
    [record] = json.loads(run(capsys, "history", "--json")[1])
    assert record["message"] == \
        "exit status 2: step 1 / step 2 / disk on fire\nstep 1\nstep 2\ndisk on fire"


def test_long_failure_messages_are_bounded_in_tables(db_path, capsys):
    noisy = (f"{sys.executable} -c \"import sys; [print('line %d ' % i + 'x' * 60) "
             "for i in range(50)]; sys.exit(3)\"")
    run(capsys, "task", "add", "--name", "noisy", "--interval", "@daily", "--module",
        "command", "--option", f"command={noisy}")
    run(capsys, "run_manually", "-t", "noisy")
    row = run(capsys, "history")[1].splitlines()[1]
    message = row[row.index("exit status 3"):]
    assert len(message) <= 200 and message.endswith("line 49 " + "x" * 60)
    assert "line 46" not in message  # the last 3 lines at most


def test_list_shows_last_status_and_last_attempt(db_path, capsys):
    run(capsys, "task", "add", "--name", "bad", "--interval", "@daily", "--module",
        "command", "--option", "command=false")
    add(capsys, "fresh")
    run(capsys, "run_manually", "-t", "bad")
    header, bad, fresh = run(capsys, "list")[1].splitlines()
    status, attempt = header.index("LAST STATUS"), header.index("LAST ATTEMPT")
    assert header.endswith("LAST STATUS  LAST ATTEMPT")
    assert (bad[status:attempt].strip(), fresh[status:attempt].strip()) == ("failed", "-")
    assert fresh[attempt:] == "-"
    # last_attempts (SPEC §1) comes with the scheduling work; until then the column is "-"
    has_attempts = "last_attempts" in json.loads(run(capsys, "task", "show", "bad")[1])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d \S+" if has_attempts else "-",
                        bad[attempt:])


def test_list_and_next_show_the_tasks_zone_or_utc(db_path, capsys):
    run(capsys, "task", "add", "--name", "berlin", "--interval", "0 3 * * *", "--module",
        "command", "--option", "command=true", "--timezone", "Europe/Berlin")
    run(capsys, "task", "add", "--name", "tokyo", "--interval", "0 3 * * *", "--module",
        "command", "--option", "command=true", "--timezone", "Asia/Tokyo")
    listing = run(capsys, "list")[1]
    assert re.search(r"berlin .* \d{4}-\d\d-\d\d 03:00 CES?T", listing)
    assert re.search(r"tokyo .* \d{4}-\d\d-\d\d 03:00 JST", listing)
    utc = run(capsys, "list", "--utc")[1]
    assert re.search(r"berlin .* 0[12]:00 UTC", utc) and re.search(r"tokyo .* 18:00 UTC", utc)
    times = run(capsys, "next", "berlin", "--count", "2")[1].splitlines()[1:]
    assert len(times) == 2 and all(re.fullmatch(r"  \S+ 03:00 CES?T", t) for t in times)
    times = run(capsys, "next", "tokyo", "--utc")[1].splitlines()[1:]
    assert len(times) == 5 and all(t.endswith(" 18:00 UTC") for t in times)


def complete(script: str, *words: str) -> list[str]:
    """What bash offers for ``words`` (the last one being completed) with ``script``."""
    program = (f"source {script}\n"
               f"COMP_WORDS=({' '.join(repr(w) for w in words)}); "
               f"COMP_CWORD={len(words) - 1}; _picron\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture
def script(tmp_path):
    done = picron_process("completion", "bash")
    assert done.returncode == 0 and done.stderr == b""
    path = tmp_path / "picron.bash"
    path.write_bytes(done.stdout)
    return str(path)


def test_bash_completion_completes_commands_subcommands_and_options(script, tmp_path):
    registered = subprocess.run(["bash", "--norc", "-c", f"source {script}; complete -p picron"],
                                capture_output=True, text=True, check=True).stdout
    assert registered.strip() == "complete -F _picron picron"
    assert complete(script, "picron", "run_s") == ["run_scheduled"]
    assert complete(script, "picron", "run-m") == ["run-manually"]
    assert complete(script, "picron", "task", "a") == ["add"]
    assert complete(script, "picron", "--db", "/tmp/x.db", "task", "e") == ["edit", "enable"]
    assert complete(script, "picron", "--db", "task", "task", "s") == ["show"]
    assert complete(script, "picron", "task", "add", "--max") == ["--max-retries"]
    assert complete(script, "picron", "stats", "show", "KEY", "--j") == ["--json"]
    assert complete(script, "picron", "counter", "re") == ["reset", "read"]
    assert complete(script, "picron", "run_scheduled", "-") >= ["-c", "-d"]
    (tmp_path / "mine.db").touch()
    assert complete(script, "picron", "--db", str(tmp_path / "mi")) == [str(tmp_path / "mine.db")]
    assert complete(script, "picron", "list", "--node", "") == []


def test_bash_completion_is_made_from_the_parser(tmp_path):
    parser = argparse.ArgumentParser(prog="picron")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("frobnicate", aliases=["frob"]).add_argument("--loudly")
    path = tmp_path / "made.bash"
    path.write_text(bash_script(parser))
    assert complete(str(path), "picron", "fro") == ["frobnicate", "frob"]
    assert complete(str(path), "picron", "frob", "--l") == ["--loudly"]
    real = build_parser()
    path.write_text(bash_script(real))
    words = {word for action in real._actions
             for word in (action.option_strings or action.choices or ())}
    assert "run-scheduled" in words and "--version" in words
    assert sorted(complete(str(path), "picron", "")) == sorted(words)


def test_cron_mode_sends_module_warnings_to_syslog(db_path, capsys, tmp_path):
    """With a syslog socket, ``-c`` logs the warning there (and still prints nothing)."""
    import socket

    run(capsys, "task", "add", "--name", "count", "--interval", "* * * * *", "--module",
        "eventcounter", "--option", "event_counter=logins", "--option", "stats_key=logins")
    make_due(db_path)
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(path)
        syslog.settimeout(60)
        done = subprocess.run(
            [sys.executable, "-c", "import sys, picron.cli as cli; cli._SYSLOG = sys.argv[1]; "
             "raise SystemExit(cli.main(['run_scheduled', '-c']))", path],
            capture_output=True, env=os.environ, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        record = syslog.recv(4096).decode()
    assert re.fullmatch(r"<76>picron\[\d+\]: task count: there is no event counter named "
                        r"'logins'\x00", record)
