"""I (CLI): every bad value of RELIABILITY.md's table is refused with one line, exit 2
(3 for an unusable database or config), no traceback, and the database unchanged.

Values only JSON can carry (null, true, 1e309, nested objects) reach the CLI through
``picron import``; the same table is sent to the JSON API in test_bad_input_api.py.
"""
from __future__ import annotations

import json
import os

import pytest

from picron.cli import main
from tests.conftest import dump

BIG = str(2 ** 63)
ADD = ["task", "add", "--name", "new", "--interval", "@daily", "--module", "command",
       "--option", "command=true"]


@pytest.fixture
def seeded(db_path, capsys):
    assert main(["task", "add", "--name", "existing", "--interval", "*/5 * * * *",
                 "--module", "command", "--option", "command=true"]) == 0
    capsys.readouterr()
    return db_path


def refused(argv: list[str], db: str, capsys, code: int = 2) -> str:
    before = dump(db)
    assert main(argv) == code, argv[:8]
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("picron: error: ") and err.count("\n") == 1, err[:300]
    assert "Traceback" not in err
    assert dump(db) == before
    return err


def with_field(flag: str, value: str) -> list[str]:
    argv = list(ADD)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


INTERVALS = ["every two days", "* * *", "0 0 * * * * *", "60 * * * *", "*/0 * * * *",
             "5-1 * * * *", "0 0 31 2 *", "@reboot", "", "*" * 2 ** 20]
NAMES = ["", "   ", "x" * 65, "a\x00b", "a\nb", "existing"]
NUMBERS = ["-1", "abc", "1.5", "1e309", BIG, "true"]
NODES = ["", ",", "a b", ",".join(f"n{i}" for i in range(1000)), "a/b", "é"]
OPTIONS = [["--option", "novalue"], ["--option", "unknown=1"], ["--option", "workdir=/tmp"],
           ["--option", "command=" + "x" * 4097], ["--option", "command=a\x00b"]]


@pytest.mark.parametrize("value", INTERVALS, ids=range(len(INTERVALS)))
def test_interval(seeded, capsys, value):
    assert "interval" in refused(with_field("--interval", value), seeded, capsys)


@pytest.mark.parametrize("value", NAMES, ids=range(len(NAMES)))
def test_name(seeded, capsys, value):
    assert "name" in refused(with_field("--name", value), seeded, capsys)


@pytest.mark.parametrize("flag", ["--ordering", "--timeout", "--max-retries"])
@pytest.mark.parametrize("value", NUMBERS, ids=NUMBERS)
def test_numbers(seeded, capsys, flag, value):
    refused(with_field(flag, value), seeded, capsys)


def test_null_ordering(seeded, capsys):
    refused(with_field("--ordering", "none"), seeded, capsys)


@pytest.mark.parametrize("value", NODES, ids=range(len(NODES)))
def test_nodes(seeded, capsys, value):
    assert "nodes" in refused(with_field("--nodes", value), seeded, capsys)


@pytest.mark.parametrize("extra", OPTIONS, ids=range(len(OPTIONS)))
def test_options(seeded, capsys, extra):
    argv = [a for a in ADD if a not in ("--option", "command=true")] + extra
    assert "option" in refused(argv, seeded, capsys)


@pytest.mark.parametrize("argv", [
    ["task", "edit", "existing", "--interval", "61 * * * *"],
    ["task", "edit", "existing", "--rename", ""],
    ["task", "edit", "existing", "--option", "nope=1"],
    ["task", "edit", "existing", "--timezone", "Mars/Olympus"],
    ["task", "edit", "nope", "--interval", "@daily"],
    ["task", "show", "nope"], ["task", "delete", "nope"], ["task", "enable", "nope"],
    ["run_manually", "-t", "nope"], ["run_scheduled", "-n", ""],
    ["run_scheduled", "-n", "a/b"], ["list", "-n", ""], ["frobnicate"],
    ["history", "--limit", "0"], ["next", "--count", "abc"], ["run_scheduled", "--at", "x"],
    ["counter", "incr", "c", "--by", "-1"], ["task"], ["stats", "show"],
], ids=lambda argv: " ".join(argv)[:40])  # no command: the overview (test_cli_usage.py)
def test_cli_usage(seeded, capsys, argv):
    refused(argv, seeded, capsys)


def test_missing_and_unreadable_config(seeded, capsys, tmp_path):
    refused(["--config", str(tmp_path / "absent.toml"), "list"], seeded, capsys, code=3)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe not toml [")
    refused(["--config", str(bad), "list"], seeded, capsys, code=3)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    refused(["--config", str(unknown), "list"], seeded, capsys, code=3)


def test_database_path_a_directory(seeded, capsys, tmp_path):
    refused(["--db", str(tmp_path), "list"], seeded, capsys, code=3)


# -- values only JSON can carry: through ``picron import`` -----------------------------

VALID = {"name": "imported", "interval": "@daily", "taskmodule": "command",
         "options": {"command": "true"}}
JSON_CASES = [
    *({"ordering": v} for v in (-1, "abc", 1.5, 1e309, 2 ** 63, None, True)),
    *({"timeout": v} for v in (-1, 0, "abc", 1.5, 1e309, 2 ** 63, True)),
    *({"max_retries": v} for v in (-1, "abc", 1.5, 1e309, 2 ** 63, True)),
    *({"nodes": v} for v in ([], [""], "a b", [f"n{i}" for i in range(1000)], [1, 2], None,
                              {"a": 1})),
    *({"options": v} for v in ("x", [], {"command": {"a": 1}}, {"command": ["a"]},
                                {"command": "true", "nope": "1"}, {}, {"command": None},
                                {"command": "x" * 4097})),
    *({key: v} for key in ("active", "retry_if_failed") for v in ("yes", 2, None)),
    *({"interval": v} for v in (None, 5, ["* * * * *"], "@reboot")),
    *({"name": v} for v in (None, 5, "", " ", "x" * 65, "a\u2028b", "a\x00b")),
    {"taskmodule": "os"}, {"taskmodule": "../../x"}, {"taskmodule": "picron.modules.command"},
    {"timezone": "Mars/Olympus"}, {"timezone": 5}, {"timezone": "../../etc/passwd"},
]


@pytest.mark.parametrize("change", JSON_CASES, ids=range(len(JSON_CASES)))
def test_import_refuses_bad_values(seeded, capsys, tmp_path, change):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([{**VALID, **change}]))
    refused(["import", str(path)], seeded, capsys)


@pytest.mark.parametrize("text", ["[", '{"name": "x"}', "[" * 100_000, '"text"', "[1]",
                                  "\udcff"], ids=range(6))
def test_import_refuses_bad_documents(seeded, capsys, tmp_path, text):
    path = tmp_path / "tasks.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    refused(["import", str(path)], seeded, capsys)


def test_import_of_unreadable_file(seeded, capsys, tmp_path):
    refused(["import", str(tmp_path / "absent.json")], seeded, capsys)
    os.mkdir(tmp_path / "dir.json")
    refused(["import", str(tmp_path / "dir.json")], seeded, capsys)
