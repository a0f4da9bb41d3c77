"""Monitoring stats: the (key, timestamp, value) series in the store and on the CLI."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from picron.cli import main
from picron.storage import open_store

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(minutes: int):
    return START + timedelta(minutes=minutes)


@pytest.fixture
def series(store):
    for minute, value in ((0, 5), (5, 7), (10, 9)):
        store.add_stat("logins", at(minute), value)
    store.add_stat("errors", at(3), 1)
    return store


def test_keys_series_and_ranges(series):
    assert series.stat_keys() == ["errors", "logins"]
    assert series.get_stats("logins") == [(at(0), 5), (at(5), 7), (at(10), 9)]
    assert series.get_stats("logins", start=at(5)) == [(at(5), 7), (at(10), 9)]
    assert series.get_stats("logins", end=at(5)) == [(at(0), 5), (at(5), 7)]
    assert series.get_stats("logins", at(1), at(9)) == [(at(5), 7)]
    assert series.get_stats("nothing") == []
    assert series.latest_stats() == {"errors": 1, "logins": 9}


def test_same_timestamp_keeps_insertion_order(store):
    store.add_stat("k", at(0), 2)
    store.add_stat("k", at(0), 1)
    assert [value for _, value in store.get_stats("k")] == [2, 1]


def test_delete_by_key_and_by_age(series):
    assert series.delete_stats(before=at(5)) == 2          # logins@0, errors@3
    assert series.get_stats("logins") == [(at(5), 7), (at(10), 9)]
    assert series.delete_stats("logins", before=at(10)) == 1
    assert series.delete_stats("logins") == 1
    assert series.stat_keys() == []


def test_the_series_is_indexed(tmp_path):
    path = str(tmp_path / "picron.db")
    open_store(path).close()
    conn = sqlite3.connect(path)
    plan = conn.execute("explain query plan select at, value from stat where key = ? and"
                        " at >= ? and at <= ? order by at", ("k", "", "~")).fetchall()
    assert "stat_key_at" in " ".join(row[-1] for row in plan)


@pytest.fixture
def cli_series(db_path):
    store = open_store(db_path, default_zone=timezone.utc)
    for minute, value in ((0, 5), (5, 7), (10, 9)):
        store.add_stat("logins", at(minute), value)
    store.add_stat("errors", at(3), 1)
    store.close()
    return db_path


def test_cli_keys(cli_series, capsys):
    assert main(["stats", "keys"]) == 0
    assert capsys.readouterr().out == "errors\nlogins\n"


def test_cli_show_json_with_range(cli_series, capsys):
    assert main(["stats", "show", "logins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        ["2026-01-01T00:00:00+00:00", 5], ["2026-01-01T00:05:00+00:00", 7],
        ["2026-01-01T00:10:00+00:00", 9]]
    assert main(["stats", "show", "logins", "--json", "--start", "2026-01-01T00:01Z",
                 "--end", "2026-01-01T00:05:00+00:00"]) == 0
    assert json.loads(capsys.readouterr().out) == [["2026-01-01T00:05:00+00:00", 7]]


def test_cli_show_table(cli_series, capsys, tmp_path):
    config = tmp_path / "picron.toml"
    config.write_text('timezone = "UTC"\n')
    assert main(["stats", "show", "errors", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "2026-01-01 00:03 UTC  1\n"


def test_cli_delete(cli_series, capsys):
    assert main(["stats", "delete", "logins"]) == 0
    assert capsys.readouterr().out == "deleted 3 values of 'logins'\n"
    assert main(["stats", "keys"]) == 0
    assert capsys.readouterr().out == "errors\n"


@pytest.mark.parametrize("argv, message", [
    (["stats", "show", "nope"], "no stats under key 'nope'"),
    (["stats", "delete", "nope"], "no stats under key 'nope'"),
    (["stats", "show", "logins", "--start", "yesterday"], "start: not an ISO 8601 time"),
    (["stats"], "the following arguments are required"),
])
def test_cli_errors(cli_series, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
