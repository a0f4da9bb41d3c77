"""The ``command`` module: exit codes, output capture, the 4 KiB cap, option checks."""
from __future__ import annotations

import sys

import pytest

from picron.errors import ValidationError
from picron.isolation import run_in_child, run_module
from picron.modules import TaskContext
from picron.modules.command import Command

PY = sys.executable


@pytest.fixture
def run(tmp_path, clock):
    def run(command: str, **options):
        context = TaskContext(node="node1", location=str(tmp_path / "picron.db"), now=clock,
                              timeout=30, task_name="cmd")
        stored = Command.validate_options({"command": command, **options})
        return run_module(Command, Command.typed_options(stored), context)
    return run


def test_exit_zero_is_success_and_output_is_kept(run):
    assert run(f"{PY} -c \"print('hello'); import sys; print('oops', file=sys.stderr)\"") == \
        ("success", "hello\noops")


def test_nonzero_exit_is_a_failure_with_the_status_first(run):
    status, message = run(f"{PY} -c \"print('half done'); raise SystemExit(3)\"")
    assert status == "failed"
    assert message == "exit status 3\nhalf done"


def test_silent_failure_still_says_why(run):
    assert run("false") == ("failed", "exit status 1")


def test_killed_by_a_signal(run):
    status, message = run(f"{PY} -c \"import os, signal; os.kill(os.getpid(), signal.SIGTERM)\"")
    assert (status, message) == ("failed", "killed by signal 15")


def test_no_shell_is_involved(run):
    assert run("echo $HOME | cat > /dev/null; x") == \
        ("success", "$HOME | cat > /dev/null; x")


def test_quoting_is_split_like_a_shell(run):
    assert run(f"{PY} -c 'import sys; print(sys.argv[1:])' 'a b' \"c\\\"d\"") == \
        ("success", "['a b', 'c\"d']")


def test_workdir(run, tmp_path):
    (tmp_path / "marker.txt").write_text("x")
    assert run("ls", workdir=str(tmp_path))[1].split() == ["marker.txt"]
    assert run("ls", workdir=str(tmp_path / "gone")) == \
        ("failed", f"workdir {str(tmp_path / 'gone')!r} is not a directory")


def test_missing_program(run):
    assert run("/nonexistent/program --flag") == \
        ("failed", "cannot run '/nonexistent/program': No such file or directory")


def test_huge_output_is_capped_at_4_kib_keeping_the_end(run):
    status, message = run(f"{PY} -c \"import sys; sys.stdout.write('é' * 500000 + "
                          f"'\\nthe error at the end\\n'); sys.exit(2)\"")
    assert status == "failed"
    assert len(message.encode()) <= 4096
    lines = message.splitlines()
    assert lines[0] == "exit status 2"
    assert lines[1].startswith("[... ") and lines[1].endswith(" earlier bytes of output omitted]")
    assert lines[-1] == "the error at the end"
    omitted = int(lines[1].split()[1])
    assert omitted + len("\n".join(lines[2:]).encode()) + 1 == 1_000_000 + 22


def test_invalid_utf8_output_does_not_break_the_run(run):
    status, message = run(f"{PY} -c \"import sys; sys.stdout.buffer.write(b'a\\xffb')\"")
    assert status == "success" and message == "a\ufffdb"


@pytest.mark.parametrize("command, problem", [("", "is empty"), ("   ", "is empty"),
                                              ("echo 'unclosed", "cannot be split")])
def test_bad_commands_are_refused_when_saved(command, problem):
    with pytest.raises(ValidationError, match=problem) as caught:
        Command.validate_options({"command": command})
    assert caught.value.field == "options"


def test_required_option():
    with pytest.raises(ValidationError, match="requires option 'command'"):
        Command.validate_options({"workdir": "/tmp"})


def test_runs_in_a_child_process_too(tmp_path, clock):
    context = TaskContext(node="node1", location=str(tmp_path / "picron.db"), now=clock,
                          timeout=30, task_name="cmd")
    options = Command.typed_options({"command": f"{PY} -c \"print(42)\""})
    assert run_in_child(Command, options, context, timeout=30) == ("success", "42")
