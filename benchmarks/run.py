"""picron's performance benchmark: ``python benchmarks/run.py [--quick] [--profile]``.

Builds task databases (0 / 1k / 10k / 100k tasks), times whole ``picron`` processes with the
same interpreter as the baseline (``python -c "import sqlite3"``), round-robin after warm-up
rounds, and prints each figure (median, min–max) beside its baseline and the target of
issue 6. Nothing here asserts: it measures and says whether each target is met.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # a clean checkout works without installing picron

from fixtures import NODE, build_database, write_noop_plugin  # noqa: E402
from measure import check_quiet, interleave, peak_rss_mib  # noqa: E402

SIZES = (0, 1_000, 10_000, 100_000)
DUE_COUNTS = (10, 100, 1_000)
DUE_POOL = 1_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, 10 s web load")
    parser.add_argument("--python", help="interpreter to measure (default: a fresh venv of "
                        "this one holding picron and croniter, as 'pip install .' makes it)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where an idle tick's time goes")
    parser.add_argument("--only", metavar="PARTS", default="idle,due,list,web",
                        help="comma-separated parts to run: idle, due, list, web (default: all)")
    args = parser.parse_args(argv)
    runs, warmup = (7, 2) if args.quick else (21, 3)
    with tempfile.TemporaryDirectory(prefix="picron-bench-") as work:
        python = args.python or make_venv(os.path.join(work, "venv"))
        bench = Bench(python, work, runs, warmup, args.quick)
        bench.prepare()
        rows = []
        for part in args.only.split(","):
            rows += {"idle": bench.idle, "due": bench.due, "list": bench.list_json,
                     "web": bench.web}[part.strip()]()
        print_report(bench, rows)
        if args.profile:
            from profile_tick import print_profile

            print_profile(python, bench.env, bench.db(10_000),
                          bench.db(DUE_POOL, DUE_COUNTS[0]) + ".template")
    return 0


def make_venv(directory: str) -> str:
    """A venv of this interpreter with picron and its dependencies linked in; its python.

    Like a regular ``pip install .``: no editable-install finder or other ``.pth`` imports
    run at start-up, so the baseline is the bare interpreter plus ``sqlite3``.
    """
    import importlib.util

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", directory], check=True)
    python = os.path.join(directory, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    for name in ("picron", "croniter", "dateutil", "tzdata"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # tzdata is optional where the system has zone files
        source = os.path.dirname(spec.origin)
        os.symlink(source, os.path.join(site.stdout.strip(), name))
    install_commands(python)
    return python


# What pip 23.2 (and older) writes for a [project.scripts] entry point: how the picron
# command was installed before it became scripts/picron.
_CONSOLE_SCRIPT = """# -*- coding: utf-8 -*-
import re
import sys
from picron.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def install_commands(python: str) -> None:
    """Put ``picron`` beside ``python`` as pip installs it, and the old wrapper for comparison.

    pip copies ``scripts/picron`` and points its first line at the interpreter (the same
    bytes as a real ``pip install .``); ``picron-console-script`` is the wrapper pip
    generated for the former ``[project.scripts]`` entry.
    """
    directory = os.path.dirname(python)
    with open(os.path.join(ROOT, "scripts", "picron")) as file:
        script = file.read().split("\n", 1)[1]
    for name, text in (("picron", script), ("picron-console-script", _CONSOLE_SCRIPT)):
        path = os.path.join(directory, name)
        with open(path, "w") as file:
            file.write(f"#!{python}\n{text}")
        os.chmod(path, 0o755)


class Bench:
    """The databases, the environment and the measurements of one benchmark session."""

    def __init__(self, python: str, work: str, runs: int, warmup: int, quick: bool) -> None:
        self.python, self.work, self.runs, self.warmup, self.quick = (
            python, work, runs, warmup, quick)
        self.growth: list[tuple] = []
        # No PYTHON* variables: bytecode is cached, as every pip install has it (this
        # sandbox sets PYTHONDONTWRITEBYTECODE), and the measured interpreter is unaltered.
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PICRON_", "PYTHON"))}
        plugin = write_noop_plugin(os.path.join(work, "plugin"))
        env.update(PICRON_NODE=NODE, PYTHONPATH=os.pathsep.join([plugin, ROOT]))
        self.env = env
        self.baseline = [python, "-c", "import sqlite3"]

    def db(self, tasks: int, due: int = 0) -> str:
        return os.path.join(self.work, f"tasks-{tasks}-due-{due}.db")

    def tick(self, path: str, entry: str = "picron") -> list[str]:
        """The cron line on ``path``: through the ``picron`` command cron.d/picron runs
        (``python -m picron`` when measuring an interpreter without it), or ``entry``."""
        command = os.path.join(os.path.dirname(self.python), entry)
        if entry == "-m" or not os.path.exists(command):
            return [self.python, "-m", "picron", "--db", path, "run_scheduled", "-c"]
        return [command, "--db", path, "run_scheduled", "-c"]

    def prepare(self) -> None:
        for tasks in SIZES:
            build_database(self.db(tasks), tasks)
        for due in DUE_COUNTS:
            build_database(self.db(DUE_POOL, due) + ".template", DUE_POOL, due)
        for argv in (self.baseline, self.tick(self.db(0)), self.tick(self.db(100_000))):
            check_quiet(argv, self.env)  # also compiles and caches picron's bytecode

    def idle(self) -> list[tuple]:
        commands = {"baseline": self.baseline}
        commands.update({f"idle {n}": self.tick(self.db(n)) for n in SIZES})
        others = {"python -m picron": "-m", "pip's console-script wrapper":
                  "picron-console-script"}
        commands.update({name: self.tick(self.db(10_000), entry)
                         for name, entry in others.items()})
        samples = interleave(commands, self.env, self.runs, self.warmup)
        base = samples["baseline"]
        rss = {name: self.rss(argv) for name, argv in commands.items()}
        for n in SIZES:
            s = samples[f"idle {n}"]
            self.growth.append((f"idle tick, {n:,} tasks", s, s.median / base.median,
                                rss[f"idle {n}"], s.cpu_median / base.cpu_median))
        for name in others:
            s = samples[name]
            self.growth.append((f"idle tick, 10,000 tasks, {name}", s, s.median / base.median,
                                rss[name], s.cpu_median / base.cpu_median))
        ten, hundred, zero = (samples[f"idle {n}"] for n in (10_000, 100_000, 0))
        return [
            (f"idle tick, 10,000 tasks ({os.path.basename(self.tick('')[0])}) ÷ "
             "python -c 'import sqlite3'", _timing(ten), _timing(base),
             ten.median / base.median, 1.3, "×"),
            ("  the same in CPU time (user + system)", f"{ten.cpu_median * 1000:.1f} ms",
             f"{base.cpu_median * 1000:.1f} ms", ten.cpu_median / base.cpu_median, 1.3, "×"),
            ("idle tick, 100,000 tasks ÷ idle tick, 0 tasks", _timing(hundred), _timing(zero),
             hundred.median / zero.median, 1.3, "×"),
            ("peak RSS of an idle tick, 100,000 tasks", f"{rss['idle 100000']:.1f} MB",
             f"{rss['baseline']:.1f} MB", rss["idle 100000"], 30, " MB"),
        ]

    def rss(self, argv: list[str], before=None) -> float:
        return peak_rss_mib(self.python, argv, self.env, before=before)

    def due(self) -> list[tuple]:
        runs = max(3, self.runs // 3)
        commands = {"idle": self.tick(self.db(DUE_POOL))}
        commands.update({f"due {n}": self.tick(self.db(DUE_POOL, n)) for n in DUE_COUNTS})

        def restore(name: str) -> None:
            if name.startswith("due"):
                path = self.db(DUE_POOL, int(name.split()[1]))
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.unlink(path + suffix)
                shutil.copyfile(path + ".template", path)

        samples = interleave(commands, self.env, runs, 1, before=restore)
        idle = samples["idle"]
        per_task, rss = {}, {}
        for n in DUE_COUNTS:
            s = samples[f"due {n}"]
            costs = sorted((d - i) / n for d, i in zip(s.seconds, idle.seconds))
            per_task[n] = costs
            rss[n] = self.rss(commands[f"due {n}"], before=lambda n=n: restore(f"due {n}"))
            self.growth.append((f"tick running {n:,} of {DUE_POOL:,} tasks", s,
                                costs[len(costs) // 2] * 1000, rss[n], None))
        costs = per_task[DUE_POOL]
        median = costs[len(costs) // 2] * 1000
        # CPU time of the tick with its children (wait4 counts every reaped descendant)
        cpu = sorted((d - i) / DUE_POOL for d, i in zip(samples[f"due {DUE_POOL}"].cpu,
                                                        idle.cpu))
        return [(f"per-task overhead, {DUE_POOL:,} due no-op tasks (fork per task)",
                 f"{median:.2f} ms ({costs[0] * 1000:.2f}–{costs[-1] * 1000:.2f})",
                 f"bare fork+exit+wait at {rss[DUE_POOL]:.0f} MB: "
                 f"{self.fork_floor(rss[DUE_POOL]):.2f} ms",
                 median, 2, " ms"),
                ("  the same in CPU time (user + system, the tick and its children)",
                 f"{cpu[len(cpu) // 2] * 1000:.2f} ms ({cpu[0] * 1000:.2f}–"
                 f"{cpu[-1] * 1000:.2f})", "", cpu[len(cpu) // 2] * 1000, 2, " ms"),
                (f"peak RSS of a tick running {DUE_POOL:,} tasks", f"{rss[DUE_POOL]:.1f} MB",
                 "", rss[DUE_POOL], 20, " MB")]

    def fork_floor(self, rss_mib: float) -> float:
        """Median ms of fork, pipe, _exit and wait in a process of ``rss_mib`` (the floor)."""
        done = subprocess.run([self.python, "-c", _FORK_FLOOR, str(rss_mib)], env=self.env,
                              capture_output=True, text=True, check=True)
        return float(done.stdout)

    def list_json(self) -> list[tuple]:
        path = self.db(10_000)
        argv = [self.python, "-m", "picron", "--db", path, "list", "--json"]
        samples = interleave({"baseline": self.baseline, "list": argv}, self.env,
                             max(5, self.runs // 2), 1)
        s = samples["list"]
        return [("picron list --json, 10,000 tasks", _timing(s), _timing(samples["baseline"]),
                 s.median, 0.5, " s")]

    def web(self) -> list[tuple]:
        if not os.path.exists(os.path.join(ROOT, "picron", "web.py")):
            return [("web (picron/web.py does not exist yet)", "-", "-", None, None, "")]
        from webload import measure_web

        return measure_web(self.python, self.env, self.db(DUE_POOL),
                           seconds=10 if self.quick else 60)


# Grow to the tick's size (touched pages, as the interpreter's own are), then fork 300 times.
_FORK_FLOOR = """
import os, statistics, sys, time
size = int(float(sys.argv[1]) * 2**20) - int(open("/proc/self/statm").read().split()[1]) * 4096
ballast = bytearray(os.urandom(1)) * max(size, 0)
times = []
for _ in range(300):
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, b"ok")
        os._exit(0)
    os.close(write_end)
    while os.read(read_end, 64):
        pass
    os.waitpid(pid, 0)
    times.append(time.perf_counter() - started)
    os.close(read_end)
print(statistics.median(times) * 1000)
"""


def _timing(sample) -> str:
    return (f"{sample.median * 1000:.1f} ms "
            f"({sample.low * 1000:.1f}–{sample.high * 1000:.1f})")


def print_report(bench: Bench, rows: list[tuple]) -> None:
    print(f"picron benchmark — {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {bench.python}")
    print(f"{bench.runs} runs per figure after {bench.warmup} warm-up rounds, round-robin; "
          "median (min–max)\n")
    header = ("figure", "measured", "baseline", "value", "target", "met")
    table = [header]
    for name, measured, baseline, value, target, unit in rows:
        if value is None or target is None:
            table.append((name, measured, baseline,
                          "-" if value is None else _number(value, unit), "-", "-"))
            continue
        table.append((name, measured, baseline, _number(value, unit), f"≤ {target}{unit}",
                      "yes" if value <= target else "NO"))
    _print_table(table)
    print("\nhow the cost grows")
    growth = [("run", "wall time", "÷ baseline or ms/task", "CPU ÷ baseline", "peak RSS")]
    for name, sample, ratio, rss, cpu in bench.growth:
        third = f"{ratio:.2f}×" if name.startswith("idle") else f"{ratio:.2f} ms/task"
        growth.append((name, _timing(sample), third, f"{cpu:.2f}×" if cpu else "-",
                       f"{rss:.1f} MB"))
    _print_table(growth)


def _number(value: float, unit: str) -> str:
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.2f}{unit}" if unit != " MB" else f"{value:.1f}{unit}"


def _print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    raise SystemExit(main())
