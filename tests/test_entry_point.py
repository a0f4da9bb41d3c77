"""The installed ``picron`` command (``scripts/picron``): the program cron.d/picron runs."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "picron"


def test_pip_installs_the_script_as_the_picron_command():
    """No [project.scripts] entry: pip's generated wrapper would import re at every tick."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["script-files"] == ["scripts/picron"]
    assert "picron" not in pyproject["project"].get("scripts", {})
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")  # pip rewrites it


def _imported(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set]:
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env,
                          capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    return done, names


def test_an_idle_tick_through_the_command_imports_no_more_than_python_m_picron(tmp_path):
    env = {**os.environ, "PICRON_NODE": "node1"}
    env.pop("PICRON_CONFIG", None)
    tick = [str(SCRIPT), "--db", str(tmp_path / "p.db"), "run_scheduled", "-c"]
    created, _ = _imported(tick, env)  # a new database: the full tick creates it
    assert (created.returncode, created.stdout) == (0, "")
    done, through_script = _imported(tick, env)
    assert (done.returncode, done.stdout) == (0, "")
    _, through_m = _imported(["-m", "picron", *tick[1:]], env)
    _, baseline = _imported(["-c", "import sqlite3"], env)
    assert "picron.storage.sqlitedb" in through_script  # the idle look ran
    assert "re" not in through_script - baseline
    assert through_script - baseline <= through_m - baseline


def test_the_command_exits_with_main_s_code(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--db", str(tmp_path / "p.db"),
                           "task", "show", "missing"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("picron: error:")
