"""The systemd units of ``systemd/``: valid for ``systemd-analyze verify``, well hardened,
and calling picron commands and flags that exist, with the config the README sets up."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from picron import commands
from picron.cli import build_parser
from picron.config import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALLED_BINARY = "/usr/local/bin/picron"  # where README's set-up links the console script
MAX_EXPOSURE = 2.0  # systemd-analyze security: "OK" is below 4.0; these measure 1.2

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is missing: apt-get install systemd")


def settings(name: str) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat)."""
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify refuses an ExecStart binary that does not exist: point it at a stub here
    stub = tmp_path / "picron"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    names = ["picron.service", "picron-web.service", "picron.timer"]
    for name in names:
        text = (UNITS / name).read_text()
        (tmp_path / name).write_text(text.replace(INSTALLED_BINARY, str(stub)))
    done = subprocess.run([analyze, "verify", *(str(tmp_path / name) for name in names)],
                          capture_output=True, text=True, timeout=60)
    # unknown keys and unparsable values are only warnings (exit 0): none are allowed
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@needs_analyze
@pytest.mark.parametrize("name", ["picron.service", "picron-web.service"])
def test_services_are_hardened(name):
    done = subprocess.run([analyze, "security", "--offline=true", str(UNITS / name)],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in done.stderr and done.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot rate unit files offline: {done.stderr}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_the_units_call_commands_that_exist_with_the_readme_config():
    parser = build_parser()
    expected = {"picron.service": commands.cmd_run_scheduled,
                "picron-web.service": commands.cmd_serve}
    for name, func in expected.items():
        unit = settings(name)
        (exec_start,) = unit["ExecStart"]
        binary, *argv = shlex.split(exec_start)
        assert binary == INSTALLED_BINARY
        args = parser.parse_args(argv)
        assert args.func is func
        assert unit["User"] == ["picron"] and unit["StateDirectory"] == ["picron"]
        assert unit["Environment"] == [f"PICRON_CONFIG={DEFAULT_CONFIG_PATH}"]
    assert parser.parse_args(shlex.split(settings("picron.service")["ExecStart"][0])[1:]).cron
    assert settings("picron.service")["Type"] == ["oneshot"]
    timer = settings("picron.timer")
    assert timer["OnCalendar"] == ["*:0/5"] and timer["Persistent"] == ["true"]


def test_the_cron_file_calls_the_same_tick():
    lines = [line for line in (ROOT / "cron.d" / "picron").read_text().splitlines()
             if line and not line.startswith("#") and "=" not in line.split()[0]]
    (line,) = lines
    minute, hour, day, month, weekday, user, binary, *argv = shlex.split(line)
    assert (minute, user, binary) == ("*/5", "picron", "picron")
    assert shlex.split(settings("picron.service")["ExecStart"][0])[1:] == argv
    assert build_parser().parse_args(argv).cron
