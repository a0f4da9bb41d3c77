"""Timing whole processes (wall time), their peak RSS, and robust summaries.

Peak RSS needs care: a child's ``ru_maxrss`` includes the memory of the process that
forked it (Linux records the old address space's high-water mark at ``exec``, and
``posix_spawn`` borrows the parent's), so it is measured through a small ``python -S``
launcher whose own RSS (about 8 MB) is below any picron process's.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field


_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


@dataclass
class Sample:
    """The runs of one command: wall seconds and CPU seconds (user + system) per run.

    CPU time barely moves when other processes load the machine; wall time does.
    """

    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def low(self) -> float:
        return min(self.seconds)

    @property
    def high(self) -> float:
        return max(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` with stdin/stdout/stderr on /dev/null; return (wall, CPU) seconds.

    Raises ``RuntimeError`` if it exits with a status other than 0.
    """
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_utime + usage.ru_stime


def peak_rss_mib(python: str, argv: list[str], env: dict[str, str], runs: int = 3,
                 before=None) -> float:
    """The largest peak RSS of ``runs`` runs of ``argv`` (MiB), launched by ``python -S``."""
    peaks = []
    for _ in range(runs):
        if before:
            before()
        done = subprocess.run([python, "-S", "-c", _LAUNCHER, *argv], env=env,
                              capture_output=True, text=True, check=True)
        kib, code = done.stdout.split()
        if code != "0":
            raise RuntimeError(f"{' '.join(argv)} exited with {code}")
        peaks.append(int(kib))
    return max(peaks) / 1024


def check_quiet(argv: list[str], env: dict[str, str]) -> None:
    """Run once and insist on exit 0 with no output: a benchmark of a failing command lies."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0 or done.stdout or done.stderr:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}"
                           f"{done.stderr}")


def interleave(commands: dict[str, list[str]], env: dict[str, str], runs: int,
               warmup: int, before=None, envs: dict[str, dict[str, str]] | None = None
               ) -> dict[str, Sample]:
    """Time each command ``runs`` times, round-robin, after ``warmup`` untimed rounds.

    Round-robin makes a ratio fair on a busy machine: a burst of load hits the baseline
    and the figure alike. ``before(name)`` runs untimed before each run (e.g. restore a
    database); ``envs`` gives some commands their own environment instead of ``env``.
    """
    samples = {name: Sample(name) for name in commands}
    envs = envs or {}
    for round_number in range(warmup + runs):
        for name, argv in commands.items():
            if before:
                before(name)
            seconds, cpu = run_once(argv, envs.get(name, env))
            if round_number >= warmup:
                samples[name].seconds.append(seconds)
                samples[name].cpu.append(cpu)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]
