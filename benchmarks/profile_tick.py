"""Where an idle tick's time goes: phases, imports (``-X importtime``), SQL statements, cProfile.

``python benchmarks/profile_tick.py DB`` profiles ``picron --db DB run_scheduled -c``;
``run.py --profile`` calls it on the 10,000-task database.
"""
from __future__ import annotations

import subprocess
import sys

# Runs inside the profiled process: phases by perf_counter, statements by trace callback.
_PHASES = r"""
import sys, time
started = time.perf_counter()
import picron.cli, picron.storage.sqlitedb
imported = time.perf_counter()
statements = []
connect = picron.storage.sqlitedb.connect
def traced(*args, **kwargs):
    conn = connect(*args, **kwargs)
    conn.set_trace_callback(statements.append)
    return conn
picron.storage.sqlitedb.connect = traced
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


def print_profile(python: str, env: dict[str, str], database: str) -> None:
    """Print the phases, heaviest imports, SQL statements and hottest functions of a tick."""
    tick = ["--db", database, "run_scheduled", "-c"]
    print(f"\nprofile of one idle tick: picron --db {database} run_scheduled -c")
    out = _run([python, "-c", _PHASES, *tick], env).splitlines()
    imports_ms, main_ms, code = out[0].split()
    print(f"  import picron.cli: {imports_ms} ms; main(): {main_ms} ms (exit {code}); "
          f"{len(out) - 1} SQL statements:")
    for statement in out[1:]:
        print(f"    {statement[:110]}")
    print("\n  imports of the tick (-X importtime; cumulative µs of each top-level import):")
    report = subprocess.run([python, "-X", "importtime", "-m", "picron", *tick], env=env,
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


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]}: exit {done.returncode}: {done.stderr}")
    return done.stdout


if __name__ == "__main__":
    import os

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment.setdefault("PICRON_NODE", "bench")
    print_profile(sys.executable, environment, sys.argv[1])
