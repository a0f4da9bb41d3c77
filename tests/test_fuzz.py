"""Property-based fuzz of the command line (RELIABILITY.md, I): whatever the arguments,
``picron.cli.main`` answers with an exit code in {0, 1, 2, 3}, never a traceback, and a
refusal (exit 2 or 3) is one line on stderr and leaves the database as it was.

Seeded (``derandomize``): the same examples on every run. 150 examples by default,
10,000 with ``PICRON_FULL=1``. Commands that would block or act outside the test's
directory (``serve``, ``passwd``, ``--debug``, absolute paths) and task modules with side
effects outside the database (``command``, ``http``, ``backup``) are not generated.
"""
from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picron.cli import main
from tests.conftest import dump

EXAMPLES = 10_000 if os.environ.get("PICRON_FULL") == "1" else 150
UNSAFE = {"serve", "passwd", "--debug", "command", "http", "backup"}
WORDS = ["run_scheduled", "run-scheduled", "run_manually", "list", "task", "add", "edit",
         "show", "delete", "enable", "disable", "modules", "next", "history", "counter",
         "incr", "decr", "reset", "read", "stats", "keys", "export", "import", "check"]
FLAGS = ["--name", "--interval", "--module", "--nodes", "--ordering", "--option",
         "--inactive", "--active", "--retry", "--no-retry", "--max-retries", "--timezone",
         "--timeout", "--rename", "--json", "-n", "--node", "--count", "--limit", "--by",
         "--max-age", "--start", "--end", "--at", "-d", "--dryrun", "-c", "--cron", "-t",
         "--task", "--db", "--config", "-h", "--help", "--"]
VALUES = ["t1", "new", "@daily", "*/5 * * * *", "61 * * * *", "simplestats", "cleanup",
          "eventcounter", "a,b", "node1", "0", "1", "-1", "abc", "none", "1e309",
          str(2 ** 63), "", " ", "total_tasks=true", "runs_older_than_days=x", "k=v", "a/b",
          "Europe/Berlin", "2026-03-29T02:30", "-", ":memory:", "x.db", "tasks.json",
          "\x00", "\n", "é", "UTC"]


def _safe(token: str) -> bool:
    return (token.strip().lower() not in UNSAFE and not token.startswith("/")
            and ".." not in token)


TOKENS = st.one_of(st.sampled_from(WORDS), st.sampled_from(FLAGS), st.sampled_from(VALUES),
                   st.text(max_size=12)).filter(_safe)
ARGV = st.one_of(st.tuples(st.sampled_from(WORDS), st.lists(TOKENS, max_size=8)),
                 st.tuples(st.just("task"), st.lists(TOKENS, max_size=10)))


@pytest.fixture
def fuzz_db(db_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["task", "add", "--name", "t1", "--interval", "*/5 * * * *",
                 "--module", "simplestats", "--option", "total_tasks=true"]) == 0
    capsys.readouterr()
    return db_path


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(ARGV)
def test_cli_never_crashes_and_refusals_change_nothing(fuzz_db, capsys, argv):
    argv = [argv[0], *argv[1]]
    before = dump(fuzz_db)
    try:
        code = main(argv)
    except SystemExit as stop:  # --help and friends: argparse prints and exits
        code = stop.code or 0
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 3), (argv, code, err)
    assert "Traceback" not in out + err, argv
    if code in (2, 3):
        assert err.startswith("picron: error: ") and err.count("\n") == 1, (argv, err)
        assert dump(fuzz_db) == before, argv
