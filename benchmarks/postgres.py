"""picron on PostgreSQL: ``python benchmarks/postgres.py [--quick] [URL]``.

URL (default ``$PICRON_TEST_PG``) names a database picron may fill: every figure uses its
own schema there, dropped afterwards. Measures the figures of issue 9 §6, each beside a
baseline timed in the same run, round-robin (``measure.interleave``):

* the idle tick, 10,000 tasks, against ``python -c "import psycopg; psycopg.connect(URL)"``
  (target ≤ 1.5×);
* the per-task overhead of a tick running 1,000 due no-op tasks: (due tick − idle tick)
  ÷ 1,000, the same on SQLite beside it;
* claim throughput: 3 nodes × 8 ``run_scheduled -c`` processes started together on tasks
  due on all three nodes - runs per second and duplicates (must be 0); SQLite beside it
  (24 processes of one host).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # a clean checkout works without installing picron

from fixtures import NODE, NOOP_MODULE, build_database, write_noop_plugin  # noqa: E402
from measure import check_quiet, interleave  # noqa: E402
from run import _print_table, _timing, make_venv  # noqa: E402

from picron.records import TaskSpec  # noqa: E402
from picron.storage import open_store  # noqa: E402
from picron.storage.copy import copy_rows  # noqa: E402

IDLE_TASKS = 10_000
DUE = 1_000
CLAIM_NODES = ("n1", "n2", "n3")
CLAIM_PROCESSES = 8  # per node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default=os.environ.get("PICRON_TEST_PG"),
                        help="a PostgreSQL database picron may use (default $PICRON_TEST_PG)")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--only", metavar="PARTS", default="idle,due,claims",
                        help="comma-separated parts to run: idle, due, claims (default: all)")
    parser.add_argument("--python", help="interpreter to measure (default: a fresh venv "
                        "holding picron, croniter and psycopg)")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give a PostgreSQL URL or set PICRON_TEST_PG")
    runs, warmup = (5, 1) if args.quick else (15, 3)
    with tempfile.TemporaryDirectory(prefix="picron-pgbench-") as work:
        python = args.python or make_pg_venv(os.path.join(work, "venv"))
        bench = PgBench(args.url, python, work, runs, warmup)
        try:
            rows = []
            for part in args.only.split(","):
                rows += {"idle": bench.idle, "due": bench.due,
                         "claims": bench.claims}[part.strip()]()
        finally:
            bench.drop_schemas()
    print(f"picron on PostgreSQL — {os.cpu_count()} cores, {bench.server_version}, "
          f"{runs} runs per figure after {warmup} warm-up rounds, round-robin; "
          "median (min–max)\n")
    _print_table([("figure", "measured", "baseline", "ratio / value"), *rows])
    return 0


def make_pg_venv(directory: str) -> str:
    """``run.make_venv`` plus psycopg (and its libpq wheel, where installed)."""
    import importlib.util

    python = make_venv(directory)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    site = site.stdout.strip()
    for name in ("psycopg", "psycopg_binary", "typing_extensions"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        source = spec.origin if name == "typing_extensions" else os.path.dirname(spec.origin)
        os.symlink(source, os.path.join(site, os.path.basename(source)))
        libs = os.path.dirname(source) + f"/{name}.libs"
        if os.path.isdir(libs):
            os.symlink(libs, os.path.join(site, os.path.basename(libs)))
    return python


class PgBench:
    def __init__(self, url: str, python: str, work: str, runs: int, warmup: int) -> None:
        import psycopg

        self.url, self.python, self.work, self.runs, self.warmup = (
            url, python, work, runs, warmup)
        self.admin = psycopg.connect(url, autocommit=True)
        version = self.admin.execute("show server_version").fetchone()[0]
        self.server_version = f"PostgreSQL {version}"
        self.schemas: list[str] = []
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PICRON_", "PYTHON"))}
        plugin = write_noop_plugin(os.path.join(work, "plugin"))
        env.update(PICRON_NODE=NODE, PYTHONPATH=os.pathsep.join([plugin, ROOT]))
        self.env = env

    # -- databases -------------------------------------------------------------------

    def schema(self, label: str) -> str:
        """A new, empty schema; its location."""
        name = f"picron_bench_{label}_{uuid.uuid4().hex[:8]}"
        self.admin.execute(f"create schema {name}")
        self.schemas.append(name)
        return f"{self.url}{'&' if '?' in self.url else '?'}options=-csearch_path%3D{name}"

    def drop_schemas(self) -> None:
        for name in self.schemas:
            self.admin.execute(f"drop schema if exists {name} cascade")

    def fill(self, location: str, sqlite_path: str) -> None:
        """Empty ``location``'s schema and copy the SQLite database into it."""
        name = location.rsplit("%3D", 1)[1]
        self.admin.execute(f"drop schema {name} cascade")
        self.admin.execute(f"create schema {name}")
        with open_store(sqlite_path) as source, open_store(location) as target:
            copy_rows(source, target)

    def tick(self, location: str, node: str = NODE) -> list[str]:
        return [self.python, "-m", "picron", "--db", location, "run_scheduled", "-c", "-n", node]

    # -- the figures -----------------------------------------------------------------

    def idle(self) -> list[tuple]:
        template = build_database(os.path.join(self.work, "idle.db"), IDLE_TASKS)
        location = self.schema("idle")
        self.fill(location, template)
        baseline = [self.python, "-c", f"import psycopg; psycopg.connect({self.url!r}).close()"]
        sqlite_baseline = [self.python, "-c", "import sqlite3"]
        commands = {"baseline": baseline, "idle": self.tick(location),
                    "sqlite baseline": sqlite_baseline, "sqlite idle": self.tick(template)}
        for argv in commands.values():
            check_quiet(argv, self.env)
        samples = interleave(commands, self.env, self.runs, self.warmup)
        idle, base = samples["idle"], samples["baseline"]
        sqlite, sqlite_base = samples["sqlite idle"], samples["sqlite baseline"]
        return [
            (f"idle tick, {IDLE_TASKS:,} tasks ÷ python -c 'import psycopg; connect'",
             _timing(idle), _timing(base), f"{idle.median / base.median:.2f}× (≤ 1.5×)"),
            ("  the same in CPU time (user + system)", f"{idle.cpu_median * 1000:.1f} ms",
             f"{base.cpu_median * 1000:.1f} ms", f"{idle.cpu_median / base.cpu_median:.2f}×"),
            (f"SQLite idle tick, {IDLE_TASKS:,} tasks ÷ python -c 'import sqlite3'",
             _timing(sqlite), _timing(sqlite_base),
             f"{sqlite.median / sqlite_base.median:.2f}×"),
        ]

    def due(self) -> list[tuple]:
        idle_db = build_database(os.path.join(self.work, "pool.db"), DUE)
        due_db = build_database(os.path.join(self.work, "due.db.template"), DUE, DUE)
        idle_location, due_location = self.schema("pool"), self.schema("due")
        self.fill(idle_location, idle_db)
        sqlite_due = os.path.join(self.work, "due.db")
        commands = {"idle": self.tick(idle_location), "due": self.tick(due_location),
                    "sqlite idle": self.tick(idle_db), "sqlite due": self.tick(sqlite_due)}

        def restore(name: str) -> None:
            if name == "due":
                self.fill(due_location, due_db)
            elif name == "sqlite due":
                build_database(sqlite_due, DUE, DUE)

        runs = max(3, self.runs // 3)
        samples = interleave(commands, self.env, runs, 1, before=restore)
        rows = []
        for label, prefix in (("PostgreSQL", ""), ("SQLite", "sqlite ")):
            idle, due = samples[f"{prefix}idle"], samples[f"{prefix}due"]
            costs = sorted((d - i) / DUE for d, i in zip(due.seconds, idle.seconds))
            rows.append((f"per-task overhead, {DUE:,} due no-op tasks, {label}",
                         f"{statistics.median(costs) * 1000:.2f} ms/task "
                         f"({costs[0] * 1000:.2f}–{costs[-1] * 1000:.2f})",
                         f"tick {_timing(due)}", "-"))
        return rows

    def claims(self) -> list[tuple]:
        template = os.path.join(self.work, "claims.db")
        tasks = 50 if self.runs < 10 else 200
        due_since = datetime.now(timezone.utc) - timedelta(hours=1)
        with open_store(template) as store:
            for i in range(tasks):
                store.add_task(TaskSpec(f"claim-{i:04d}", "*/5 * * * *", NOOP_MODULE,
                                        CLAIM_NODES), due_since)
        location = self.schema("claims")
        rows = []
        for label, target in (("PostgreSQL", location), ("SQLite", None)):
            rates, wall, failed = [], [], []
            for _ in range(max(2, self.runs // 3)):
                if target:
                    self.fill(target, template)
                    db = target
                else:
                    db = os.path.join(self.work, "claims-run.db")
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(db + suffix):
                            os.unlink(db + suffix)
                    with open_store(template) as source:
                        source.backup(db)
                started = time.perf_counter()
                procs = [subprocess.Popen(self.tick(db, node), env=self.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                         for _ in range(CLAIM_PROCESSES) for node in CLAIM_NODES]
                failed += [p.communicate()[1].decode().strip() for p in procs]
                elapsed = time.perf_counter() - started
                failed = [error for error in failed if error]
                with open_store(db) as store:
                    count, distinct = store._one(
                        "select count(*), count(distinct task_id || ' ' || node) from run")
                if count != distinct:
                    raise RuntimeError(f"{label}: {count} runs, only {distinct} distinct")
                rates.append(count / elapsed)
                wall.append(elapsed)
            rows.append((f"claims, {len(CLAIM_NODES)} nodes × {CLAIM_PROCESSES} processes, "
                         f"{tasks} tasks × {len(CLAIM_NODES)} nodes, {label}",
                         f"{statistics.median(rates):.0f} runs/s",
                         f"{statistics.median(wall):.2f} s for {tasks * len(CLAIM_NODES)} runs",
                         f"0 duplicates, {len(failed)} failed ticks"
                         + (f" ({failed[0]})" if failed else "")))
        return rows


if __name__ == "__main__":
    raise SystemExit(main())
