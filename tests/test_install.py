"""README's server set-up, run as written in a scratch root, then a tick as a throwaway user.

The commands come from README.md's block between the ``server-setup`` markers, so the test and
the documentation cannot drift. Only locations change: /opt, /usr/local/bin, /etc and
/var/lib move under a temporary root, the ``picron`` user becomes a throwaway one, and
``pip install .`` installs offline (croniter and its dependencies are copied from this test's
environment). Needs root (``useradd``) and Debian's ``python3`` with ``venv``.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # what README's `python3` is on Debian and Ubuntu
LOCATIONS = ("/opt/picron", "/usr/local/bin", "/etc/picron", "/etc/cron.d",
             "/etc/bash_completion.d", "/var/lib/picron")
SOURCES = ("pyproject.toml", "README.md", "picron", "scripts", "cron.d", "systemd")
# Where installed distributions are found to copy: this test's environment, then Debian's
# (python3-wheel: setuptools builds the wheel of `pip install .` with it).
SEARCH_PATH = [*sys.path, "/usr/lib/python3/dist-packages"]

def find_distribution(name: str):
    return next(importlib.metadata.distributions(name=name, path=SEARCH_PATH), None)


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="the set-up test needs root (it creates a user with useradd)"),
    pytest.mark.skipif(not all(map(shutil.which, ("useradd", "userdel", "runuser", "bash"))),
                       reason="useradd, userdel, runuser and bash are needed"),
    pytest.mark.skipif(find_distribution("wheel") is None,
                       reason="the offline install needs wheel: apt-get install python3-wheel"),
    pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-c", "import venv, ensurepip"],
                                      capture_output=True).returncode != 0
                       if os.path.exists(SYSTEM_PYTHON) else True,
                       reason=f"{SYSTEM_PYTHON} with venv is needed: apt-get install python3-venv"),
]


def setup_commands() -> list[str]:
    """The command lines of README's server set-up block."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- server-setup:start.*?-->\s*```sh\n(.*?)```\s*<!-- server-setup:end",
                      readme, re.S)
    assert block, "README.md lost its server-setup block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def localise(line: str, root: Path, user: str) -> str:
    """The same command, with the scratch root's locations and the throwaway user."""
    for location in LOCATIONS:
        line = line.replace(location, f"{root}{location}")
    line = re.sub(r"(?<=-[ugo] )picron\b", user, line)
    line = re.sub(r"^(useradd .*) picron$", rf"\1 {user}", line)
    return line.replace("pip install .", "pip install --no-deps --no-build-isolation --no-index .")


def copy_distribution(name: str, site_packages: Path, done: set) -> None:
    """Install an already installed distribution and its requirements by copying its files."""
    dist = find_distribution(name)
    if dist.metadata["Name"].lower() in done:
        return
    done.add(dist.metadata["Name"].lower())
    base = Path(dist.locate_file(""))
    if dist.files is None:  # an egg-info without a file list (Debian's): its top level
        names = (dist.read_text("top_level.txt") or "").split()
        info = f"{dist.metadata['Name']}-{dist.version}*info"
        for source in [*base.glob(info), *(base / name for name in names),
                       *(base / f"{name}.py" for name in names)]:
            if source.is_dir():
                shutil.copytree(source, site_packages / source.name, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy(source, site_packages / source.name)
    for file in dist.files or ():
        source = base / file
        if source.is_file() and ".." not in file.parts and file.suffix != ".pyc":
            (site_packages / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, site_packages / file)
    for requirement in dist.requires or ():
        if "extra ==" not in requirement:
            copy_distribution(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0],
                              site_packages, done)


@pytest.fixture
def scratch():
    """(root, user): a world-traversable temporary root and a throwaway system user."""
    root = Path(tempfile.mkdtemp(prefix="picron-setup-", dir="/tmp"))
    root.chmod(0o755)
    user = f"pcrtest{os.getpid()}"[:32]
    for location in ("/opt", "/usr/local/bin", "/etc/cron.d", "/etc/bash_completion.d",
                     "/var/lib", "/src"):
        (root / location.lstrip("/")).mkdir(parents=True)
    for name in SOURCES:  # a clean copy: `pip install .` writes build files into the tree
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, root / "src" / name)
    yield root, user
    subprocess.run(["userdel", user], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_readme_server_setup_then_a_tick_as_the_picron_user(scratch):
    root, user = scratch
    config = root / "etc/picron/picron.toml"
    env = {"PATH": f"{root}/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           # stands in for /etc/picron/picron.toml, the default a real install relies on
           "PICRON_CONFIG": str(config)}
    lines = [localise(line, root, user) for line in setup_commands()]
    assert sum(user in line for line in lines) >= 4, "the set-up no longer names its user"
    assert not any(re.search(r"(?<![/\w.-])picron\b(?=[:\s]*$)|-[ugo] picron\b", line)
                   for line in lines), lines

    def shell(line: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=root / "src",
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 or not check, f"{line}\n{done.stdout}\n{done.stderr}"
        return done

    for line in lines:
        done = shell(line)
        if re.match(r"\S*python3 -m venv ", line):  # offline: croniter & co. from here
            (site_packages,) = (root / "opt/picron/lib").glob("python3*/site-packages")
            for name in ("croniter", "wheel"):
                copy_distribution(name, site_packages, set())
    doctor = done.stdout  # the block ends with `picron doctor` as the user
    completion = (root / "etc/bash_completion.d/picron").read_text()
    assert "complete -F" in completion and "run_scheduled" in completion
    database = root / "var/lib/picron/picron.db"
    assert f"database:  {database}  <- database in {config}" in doctor
    assert f"user:      {user}" in doctor and "ok:" in doctor

    # the database is the user's own, and the tick recorded itself there
    assert database.stat().st_uid == int(shell(f"id -u {user}").stdout)
    assert oct(database.stat().st_mode & 0o777) == "0o600"
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        assert conn.execute("select count(*) from tick").fetchone()[0] == 1
    finally:
        conn.close()
    assert (root / "etc/cron.d/picron").read_text() == (ROOT / "cron.d/picron").read_text()

    # the administrator (root) adds a task; the user's commands see it and run it as the user
    shell("picron task add --name whoami --interval @daily --module command "
          "--option 'command=id -un'")
    shell(f"runuser -u {user} -- picron run_manually -t whoami")
    history = json.loads(shell(f"runuser -u {user} -- picron history --json").stdout)
    assert [(run["task"], run["status"], run["message"].strip()) for run in history] == [
        ("whoami", "success", user)]
    assert shell(f"runuser -u {user} -- picron run_scheduled -c").stdout == ""
    assert shell(f"runuser -u {user} -- picron check").returncode == 0
    for suffix in ("", "-wal", "-shm"):  # root's command left nothing the user cannot write
        if Path(f"{database}{suffix}").exists():
            assert Path(f"{database}{suffix}").stat().st_uid == database.stat().st_uid
