"""picron beside ``privacyidea-cron``: ``python benchmarks/privacyidea.py [--quick]``.

Installs privacyIDEA from PyPI into its own venv on first use (``--venv``, default
``~/.cache/picron-bench/privacyidea-venv``; skipped with a message when it cannot be
installed), gives both programs the same tasks on SQLite, and times whole processes,
round-robin, as ``run.py`` does:

* idle ticks (``run_scheduled -c``, nothing due) with 10 and 1,000 tasks;
* a tick that runs 1,000 due tasks, per executed task: (due tick - idle tick) / 1,000.

Each program runs the cheapest task it has: picron the ``bench_noop`` entry-point module in
a forked child with a hard timeout; privacyIDEA ``SimpleStats`` with every statistic off
(it returns True at once), in-process. picron runs as cron.d/picron runs it, through the
installed ``picron`` command; privacyIDEA through its ``privacyidea-cron`` command.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from run import make_venv  # also puts the checkout on sys.path
from fixtures import NODE, build_database, write_noop_plugin  # noqa: E402
from measure import check_quiet, interleave  # noqa: E402

DEFAULT_VENV = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                            "picron-bench", "privacyidea-venv")
INSTALL_TIMEOUT = 1200
IDLE_SIZES = (10, 1_000)
DUE = 1_000

# Run by the privacyIDEA venv's python: create the tables and the tasks of one database.
_POPULATE = r"""
import sys
from datetime import datetime, timedelta, timezone
from privacyidea.app import create_app
from privacyidea.lib.periodictask import set_periodic_task, set_periodic_task_last_run
from privacyidea.models import db

config, tasks, due, node = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
app = create_app("production", config_file=config, silent=True)
now = datetime.now(timezone.utc)
with app.app_context():
    db.create_all()
    for number in range(1, tasks + 1):
        is_due = number <= due
        task_id = set_periodic_task(
            name=f"task-{number:06d}", interval="*/5 * * * *" if is_due else "@yearly",
            nodes=[node], taskmodule="SimpleStats", ordering=number % 10, options={},
            retry_if_failed=True)
        set_periodic_task_last_run(task_id, node, now - (timedelta(days=1) if is_due
                                                         else timedelta(minutes=1)))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--venv", default=DEFAULT_VENV,
                        help=f"privacyIDEA's venv, made if missing (default {DEFAULT_VENV})")
    args = parser.parse_args(argv)
    problem = ensure_privacyidea(args.venv)
    if problem:
        print(f"privacyIDEA comparison skipped: {problem}")
        return 0
    runs = 7 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="picron-vs-privacyidea-") as work:
        picron, pi = Picron(work), PrivacyIdea(args.venv, work)
        for side in (picron, pi):
            side.prepare()
        idle = {"baseline": [picron.python, "-c", "import sqlite3"]}
        envs = {}
        for n in IDLE_SIZES:
            idle[f"picron {n}"] = picron.tick(n)
            idle[f"privacyidea {n}"] = pi.tick()
            envs[f"privacyidea {n}"] = pi.env(n)
        samples = interleave(idle, picron.env, runs, 2, envs=envs)
        restore = {"picron due": picron.restore, "privacyidea due": pi.restore}
        due = interleave({"picron idle": picron.tick(DUE), "picron due": picron.tick(DUE, DUE),
                          "privacyidea idle": pi.tick(), "privacyidea due": pi.tick()},
                         picron.env, max(3, runs // 3), 1,
                         before=lambda name: restore[name]() if name in restore else None,
                         envs={"privacyidea idle": pi.env(DUE), "privacyidea due": pi.env(DUE, DUE)})
    print_report(samples, due, picron.python, args.venv)
    return 0


def ensure_privacyidea(venv: str) -> str | None:
    """Install privacyIDEA into ``venv`` unless it is there; a reason when it cannot be."""
    if os.path.exists(os.path.join(venv, "bin", "privacyidea-cron")):
        return None
    print(f"installing privacyIDEA into {venv} (pip, from PyPI; a few minutes) ...",
          flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True,
                       capture_output=True, text=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
                        "privacyidea"], check=True, capture_output=True, text=True,
                       timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"pip install privacyidea took more than {INSTALL_TIMEOUT} s"
    except (OSError, subprocess.CalledProcessError) as error:
        output = (getattr(error, "stderr", "") or str(error)).strip().splitlines()
        return f"pip install privacyidea failed: {output[-1] if output else error}"
    if not os.path.exists(os.path.join(venv, "bin", "privacyidea-cron")):
        return "the privacyidea package installed no privacyidea-cron command"
    return None


class Picron:
    """picron's databases and cron line, in a fresh venv as ``run.py`` makes it."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.python = make_venv(os.path.join(work, "picron-venv"))
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PICRON_", "PYTHON"))}
        plugin = write_noop_plugin(os.path.join(work, "plugin"))
        env.update(PICRON_NODE=NODE, PYTHONPATH=plugin)
        self.env = env

    def db(self, tasks: int, due: int = 0) -> str:
        return os.path.join(self.work, f"picron-{tasks}-due-{due}.db")

    def prepare(self) -> None:
        for n in IDLE_SIZES:
            build_database(self.db(n), n)
        build_database(self.db(DUE, DUE) + ".template", DUE, DUE)
        self.restore()
        check_quiet(self.tick(IDLE_SIZES[-1]), self.env)

    def tick(self, tasks: int, due: int = 0) -> list[str]:
        command = os.path.join(os.path.dirname(self.python), "picron")
        return [command, "--db", self.db(tasks, due), "run_scheduled", "-c"]

    def restore(self) -> None:
        _restore(self.db(DUE, DUE))


class PrivacyIdea:
    """privacyIDEA's configurations (one pi.cfg per database) and its cron line."""

    def __init__(self, venv: str, work: str) -> None:
        self.venv, self.work = venv, os.path.join(work, "privacyidea")
        os.makedirs(self.work)

    def config(self, tasks: int, due: int = 0) -> str:
        return os.path.join(self.work, f"pi-{tasks}-due-{due}.cfg")

    def db(self, tasks: int, due: int = 0) -> str:
        return os.path.join(self.work, f"pi-{tasks}-due-{due}.sqlite")

    def prepare(self) -> None:
        encfile = os.path.join(self.work, "enckey")
        with open(encfile, "wb") as file:
            file.write(os.urandom(96))
        for tasks, due in [(n, 0) for n in IDLE_SIZES] + [(DUE, DUE)]:
            path = self.db(tasks, due) + (".template" if due else "")
            with open(self.config(tasks, due), "w") as file:
                file.write(f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{self.db(tasks, due)}'\n"
                           f"SECRET_KEY = '{os.urandom(16).hex()}'\n"
                           f"PI_PEPPER = '{os.urandom(16).hex()}'\n"
                           f"PI_ENCFILE = '{encfile}'\n"
                           f"PI_NODE = '{NODE}'\n"
                           "PI_AUDIT_NO_SIGN = True\n"
                           f"PI_LOGFILE = '{os.path.join(self.work, 'privacyidea.log')}'\n"
                           "PI_LOGLEVEL = 40\n")
            subprocess.run([self.python, "-c", _POPULATE, self.config(tasks, due), str(tasks),
                            str(due), NODE], env=self.env(tasks, due), check=True,
                           capture_output=True, text=True)
            if due:
                os.rename(self.db(tasks, due), path)
        self.restore()
        check_quiet(self.tick(), self.env(IDLE_SIZES[-1]))

    @property
    def python(self) -> str:
        return os.path.join(self.venv, "bin", "python")

    def env(self, tasks: int, due: int = 0) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PICRON_", "PYTHON", "PRIVACYIDEA"))}
        env["PRIVACYIDEA_CONFIGFILE"] = self.config(tasks, due)
        return env

    def tick(self) -> list[str]:
        """The cron line; the database is chosen by ``env``'s configuration file."""
        return [os.path.join(self.venv, "bin", "privacyidea-cron"), "run_scheduled", "-c"]

    def restore(self) -> None:
        _restore(self.db(DUE, DUE))


def _restore(path: str) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.copyfile(path + ".template", path)


def print_report(idle: dict, due: dict, python: str, venv: str) -> None:
    print(f"picron vs privacyidea-cron — {python} (picron command) and "
          f"{venv}/bin/privacyidea-cron, round-robin; median (min–max)\n")
    base = idle["baseline"].median
    print(f"python -c 'import sqlite3' (picron's interpreter): {_ms(idle['baseline'])}")
    for n in IDLE_SIZES:
        ours, theirs = idle[f"picron {n}"], idle[f"privacyidea {n}"]
        print(f"idle tick, {n:,} tasks: picron {_ms(ours)} ({ours.median / base:.2f}× "
              f"baseline), privacyidea-cron {_ms(theirs)}: picron {theirs.median / ours.median:.0f}× "
              f"faster (target ≥ 100×: {'yes' if theirs.median >= 100 * ours.median else 'NO'}); "
              f"CPU {ours.cpu_median * 1000:.1f} ms vs {theirs.cpu_median * 1000:.0f} ms: "
              f"{theirs.cpu_median / ours.cpu_median:.0f}×")
    per_task = {}
    for side in ("picron", "privacyidea"):
        costs = sorted((d - i) / DUE for d, i in zip(due[f"{side} due"].seconds,
                                                     due[f"{side} idle"].seconds))
        cpu = sorted((d - i) / DUE for d, i in zip(due[f"{side} due"].cpu,
                                                   due[f"{side} idle"].cpu))
        per_task[side] = costs[len(costs) // 2]
        print(f"per executed task, {DUE:,} due: {side} {per_task[side] * 1000:.2f} ms "
              f"({costs[0] * 1000:.2f}–{costs[-1] * 1000:.2f}), CPU "
              f"{cpu[len(cpu) // 2] * 1000:.2f} ms (children included); whole due tick "
              f"{_ms(due[f'{side} due'])}")
    ratio = per_task["privacyidea"] / per_task["picron"]
    print(f"picron is {ratio:.2f}× cheaper per executed task "
          f"(target ≥ 3×: {'yes' if ratio >= 3 else 'NO'})")


def _ms(sample) -> str:
    return (f"{sample.median * 1000:.1f} ms "
            f"({sample.low * 1000:.1f}–{sample.high * 1000:.1f})")


if __name__ == "__main__":
    raise SystemExit(main())
