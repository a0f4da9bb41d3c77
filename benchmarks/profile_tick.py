"""Where an idle tick's time goes: phases, imports (``-X importtime``), SQL statements, cProfile.

``python benchmarks/profile_tick.py DB [DUE_DB]`` profiles ``picron --db DB run_scheduled -c``
(and lists the SQL of a tick on a copy of DUE_DB); ``run.py --profile`` calls it on the
10,000-task database and the database with 10 due tasks.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

# Runs inside the profiled process: phases by perf_counter, statements by trace callback.
# sqlite3.connect itself is wrapped, before picron is imported, so that every connection
# the process opens is traced, whichever picron module opens it (the idle look, the store).
_PHASES = r"""
import sqlite3, sys, time
statements = []
connect = sqlite3.connect
def traced(*args, **kwargs):
    conn = connect(*args, **kwargs)
    conn.set_trace_callback(statements.append)
    return conn
sqlite3.connect = traced
started = time.perf_counter()
import picron.cli
imported = time.perf_counter()
code = picron.cli.main(sys.argv[1:])
finished = time.perf_counter()
print(f"{(imported - started) * 1000:.1f} {(finished - imported) * 1000:.1f} {code}")
for statement in statements:
    print(" ".join(statement.split()))
"""

_CPROFILE = r"""
import cProfile, pstats, sys
profile = cProfile.Profile()
profile.enable()
from picron.cli import main
main(sys.argv[1:])
profile.disable()
pstats.Stats(profile).sort_stats("tottime").print_stats(12)
"""


def print_profile(python: str, env: dict[str, str], database: str,
                  due_database: str | None = None) -> None:
    """Print the phases, heaviest imports, SQL statements and hottest functions of a tick.

    With ``due_database`` (a copy is used), also the SQL of a tick that runs its due tasks,
    each distinct statement once with how often it ran.
    """
    tick = ["--db", database, "run_scheduled", "-c"]
    print(f"\nprofile of one idle tick: picron --db {database} run_scheduled -c")
    imports_ms, main_ms, code, statements = _phases(python, env, tick)
    print(f"  import picron.cli: {imports_ms} ms; main(): {main_ms} ms (exit {code}); "
          f"{len(statements)} SQL statements:")
    for statement in statements:
        print(f"    {statement[:110]}")
    if due_database:
        _print_due_sql(python, env, due_database)
    # through the picron command beside python when there is one, as cron runs it
    command = os.path.join(os.path.dirname(python), "picron")
    entry = [command] if os.path.exists(command) else ["-m", "picron"]
    print(f"\n  imports of the tick ({' '.join(entry)}; -X importtime, cumulative µs of each "
          "top-level import):")
    report = subprocess.run([python, "-X", "importtime", *entry, *tick], env=env,
                            capture_output=True, text=True).stderr
    rows = []
    for line in report.splitlines()[1:]:
        parts = line.split("|")
        if len(parts) == 3 and not parts[2].startswith("   "):  # depth 0 or 1
            rows.append((int(parts[1]), parts[2].rstrip()))
    for cumulative, name in sorted(rows, reverse=True)[:20]:
        print(f"    {cumulative:7d} µs {name}")
    print("\n  cProfile of main() (imports included), by own time:")
    for line in _run([python, "-c", _CPROFILE, *tick], env).splitlines()[:30]:
        if line.strip():
            print(f"    {line[:140]}")


def _phases(python: str, env: dict[str, str], tick: list[str]):
    """(import ms, main ms, exit code, SQL statements) of one traced run of ``tick``."""
    out = _run([python, "-c", _PHASES, *tick], env, check=False).splitlines()
    imports_ms, main_ms, code = out[0].split()
    return imports_ms, main_ms, code, out[1:]


def _print_due_sql(python: str, env: dict[str, str], template: str) -> None:
    with tempfile.TemporaryDirectory(prefix="picron-profile-") as work:
        database = shutil.copy(template, os.path.join(work, "due.db"))
        _, main_ms, code, statements = _phases(
            python, env, ["--db", database, "run_scheduled", "-c"])
    # the trace shows values inlined: fold them back into parameters to count statements
    counts = Counter(re.sub(r"\b\d+(\.\d+)?\b", "?", re.sub(r"'(?:[^']|'')*'", "?", statement))
                     for statement in statements)
    print(f"\n  SQL of a tick running its due tasks ({template}): main() {main_ms} ms "
          f"(exit {code}), {len(statements)} statements in the tick's process, "
          f"{len(counts)} distinct (× times run):")
    for statement, times in counts.items():
        print(f"    {times:5d} × {statement[:100]}")


def _run(argv: list[str], env: dict[str, str], check: bool = True) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0 and (check or not done.stdout):
        raise RuntimeError(f"{argv[:3]}: exit {done.returncode}: {done.stderr}")
    return done.stdout


if __name__ == "__main__":
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment.setdefault("PICRON_NODE", "bench")
    print_profile(sys.executable, environment, sys.argv[1], *sys.argv[2:3])
