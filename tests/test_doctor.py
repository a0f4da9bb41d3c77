"""``picron doctor`` and the "why" of the configuration (SPEC §3 resolution order)."""
from __future__ import annotations

import os

import pytest

from picron import config as config_module
from picron.cli import main
from picron.config import explain_config


@pytest.fixture
def no_default_config(tmp_path, monkeypatch):
    """/etc/picron/picron.toml as this test wants it: absent unless the test writes it."""
    path = tmp_path / "etc-picron.toml"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", str(path))
    return path


def test_each_source_is_named_in_spec_order(tmp_path, no_default_config):
    toml = tmp_path / "picron.toml"
    toml.write_text('database = "/srv/from-config.db"\nnode = "cfgnode"\n')
    env = {"PICRON_CONFIG": str(toml), "PICRON_DB": "/srv/from-env.db", "PICRON_NODE": "envnode",
           "XDG_DATA_HOME": str(tmp_path)}
    config, why = explain_config(None, "/srv/from-option.db", env)
    assert (config.database, why["database"]) == ("/srv/from-option.db", "option --db")
    assert why["config"] == "environment variable PICRON_CONFIG" and config.path == toml
    assert (config.node, why["node"]) == ("envnode", "environment variable PICRON_NODE")
    config, why = explain_config(None, None, env)
    assert why["database"] == "environment variable PICRON_DB"
    del env["PICRON_DB"], env["PICRON_NODE"]
    config, why = explain_config(None, None, env)
    assert (config.database, why["database"]) == ("/srv/from-config.db", f"database in {toml}")
    assert (config.node, why["node"]) == ("cfgnode", f"node in {toml}")
    other = tmp_path / "other.toml"
    other.write_text("")
    config, why = explain_config(str(other), None, env)
    assert why["config"] == "option --config" and why["database"].startswith("the default")
    assert config.database == str(tmp_path / "picron" / "picron.db")
    assert why["node"] == "the short host name"
    config, why = explain_config(None, None, {})
    assert config.path is None and why["config"].startswith("none:")
    no_default_config.write_text('database = "/srv/etc.db"\n')
    config, why = explain_config(None, None, {})
    assert why["config"] == "the default file, which exists"
    assert why["database"] == f"database in {no_default_config}"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_doctor_explains_a_working_database(db_path, capsys, no_default_config):
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert f"database:  {db_path}  <- environment variable PICRON_DB" in out
    assert "node:      node1  <- environment variable PICRON_NODE" in out
    assert "does not exist yet" in out and not os.path.exists(db_path)  # doctor only looks
    assert run(capsys, "task", "add", "--name", "a", "--interval", "@daily", "--module",
               "command", "--option", "command=true", "--nodes", "node1,web2")[0] == 0
    assert run(capsys, "run_scheduled", "-c")[0] == 0
    code, out, _ = run(capsys, "--db", db_path, "doctor")
    assert code == 0, out
    assert "<- option --db" in out and "writable yes" in out and "mode 0600" in out
    assert "last tick: 20" in out and "on node node1" in out
    assert "1 in all, 1 active on node node1; other nodes: web2" in out
    assert out.rstrip().endswith("can use this database")


def test_doctor_exits_1_when_a_tick_would_fail(db_path, capsys, tmp_path, no_default_config):
    assert run(capsys, "list")[0] == 0  # creates the database
    os.chmod(db_path, 0o444)
    code, out, _ = run(capsys, "doctor")
    assert code == 1 and "problem:" in out and "not writable" in out
    assert "last tick: never on node node1:" in out  # still read what it could
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, _ = run(capsys, "--db", str(blocker / "sub" / "x.db"), "doctor")
    assert code == 1 and f"{blocker} is not a directory" in out
    assert not (blocker.parent / "sub").exists()


def test_a_database_in_a_config_file_expands_home_and_is_relative_to_the_file(
        tmp_path, monkeypatch, no_default_config):
    """cron's working directory is not a shell's: the file's own directory is the base."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    etc = tmp_path / "etc"
    etc.mkdir()
    toml = etc / "picron.toml"
    toml.write_text('database = "~/picron.db"\n')
    monkeypatch.chdir(tmp_path)
    config, why = explain_config(str(toml), None, {})
    assert config.database == str(tmp_path / "home" / "picron.db")
    assert why["database"] == f"database in {toml} ('~/picron.db', ~ expanded)"
    toml.write_text('database = "data/picron.db"\n')
    config, why = explain_config("etc/picron.toml", None, {})
    assert config.database == str(etc / "data" / "picron.db")
    assert why["database"].endswith("('data/picron.db', relative to that file's directory)")
    toml.write_text('database = "/srv/picron.db"\n')
    assert explain_config(str(toml), None, {})[0].database == "/srv/picron.db"
    for location in (":memory:", "postgresql://u@h/db"):
        toml.write_text(f'database = "{location}"\n')
        assert explain_config(str(toml), None, {})[0].database == location
    config, why = explain_config(None, "~/other.db", {"PICRON_CONFIG": str(toml)})
    assert config.database == str(tmp_path / "home" / "other.db")  # ~ of --db / PICRON_DB too
    # picron doctor shows the same resolution, and a command creates no directory "~".
    toml.write_text('database = "~/picron.db"\n')
    assert main(["--config", str(toml), "list"]) == 0
    assert (tmp_path / "home" / "picron.db").exists() and not (tmp_path / "~").exists()


def test_doctor_reports_foreign_and_damaged_files_without_writing(db_path, capsys, tmp_path,
                                                                   no_default_config):
    import sqlite3

    foreign = sqlite3.connect(db_path)
    foreign.executescript("create table notes (body text); pragma user_version = 1;")
    foreign.close()
    before = open(db_path, "rb").read()
    code, out, _ = run(capsys, "doctor")
    assert code == 1 and "not a picron database (it holds other tables: notes)" in out
    assert open(db_path, "rb").read() == before and os.listdir(tmp_path) == ["picron.db"]
