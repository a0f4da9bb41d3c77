"""Event counters: the Python API, the CLI, and atomic increments across processes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import picron
from picron.cli import main
from picron.counters import change_counter, read_counter, reset_counter
from picron.errors import NotFound, ValidationError
from picron.storage import open_store


def test_store_level_api(store):
    assert change_counter(store, "logins", 1) == 1
    assert change_counter(store, "logins", 4) == 5
    assert change_counter(store, "logins", -7) == -2
    assert read_counter(store, "logins") == -2
    reset_counter(store, "logins")
    assert read_counter(store, "logins") == 0
    assert change_counter(store, "Logins", 1) == 1  # names are case-sensitive
    assert store.list_counters() == {"Logins": 1, "logins": 0}


def test_reading_a_missing_counter_is_not_found(store):
    with pytest.raises(NotFound, match="counter 'nope' not found"):
        read_counter(store, "nope")


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "a\nb", "tab\there", None, 5])
def test_bad_names_are_refused(store, name):
    with pytest.raises(ValidationError) as caught:
        change_counter(store, name, 1)
    assert caught.value.field == "name"


@pytest.mark.parametrize("by", [1.5, "1", True, None, 2**53 + 1])
def test_bad_steps_are_refused(store, by):
    with pytest.raises(ValidationError, match="by: must be an integer"):
        change_counter(store, "c", by)
    assert store.list_counters() == {}


def test_python_api_on_a_given_database(tmp_path):
    path = str(tmp_path / "app.db")
    assert picron.increase_counter("logins_failed", database=path) == 1
    assert picron.increase_counter("logins_failed", 5, database=path) == 6
    assert picron.decrease_counter("logins_failed", 2, database=path) == 4
    with pytest.raises(ValidationError):
        picron.decrease_counter("logins_failed", "2", database=path)
    with open_store(path) as store:
        assert store.get_counter("logins_failed") == 4


def test_python_api_uses_the_configured_database(db_path):
    assert picron.increase_counter("hits") == 1
    assert main(["counter", "read", "hits"]) == 0


def test_cli(db_path, capsys):
    assert main(["counter", "incr", "jobs"]) == 0
    assert main(["counter", "incr", "jobs", "--by", "10"]) == 0
    assert main(["counter", "decr", "jobs", "--by", "3"]) == 0
    assert main(["counter", "read", "jobs"]) == 0
    assert main(["counter", "reset", "jobs"]) == 0
    assert main(["counter", "read", "jobs"]) == 0
    assert capsys.readouterr().out.split() == ["1", "11", "8", "8", "0", "0"]


@pytest.mark.parametrize("argv, message", [
    (["counter", "read", "never"], "picron: error: counter 'never' not found"),
    (["counter", "incr", "x", "--by", "0"], "'0' must be at least 1"),
    (["counter", "incr", "x", "--by", "two"], "'two' is not a whole number"),
    (["counter", "bump", "x"], "invalid choice: 'bump'"),
    (["counter", "incr", "a\tb"], "name: must not contain control characters"),
])
def test_cli_errors_exit_2_with_one_line(db_path, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


WORKER = textwrap.dedent("""
    import os, sys, time
    import picron
    path, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):   # start together, so the writers really contend
        time.sleep(0.001)
    for _ in range(500):
        picron.increase_counter("hits", database=path)
""")


def test_concurrent_increments_are_never_lost(tmp_path):
    """8 processes x 500 increments, each its own connection and transaction: 4000."""
    path, go = str(tmp_path / "picron.db"), str(tmp_path / "go")
    open_store(path).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, path, go], env=env,
                                stderr=subprocess.PIPE) for _ in range(8)]
    open(go, "w").close()
    errors = [worker.communicate(timeout=120)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, errors
    with open_store(path) as store:
        assert store.get_counter("hits") == 4000
