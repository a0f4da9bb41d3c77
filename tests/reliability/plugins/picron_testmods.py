"""Task modules for the reliability battery, loaded by ``picron run_scheduled`` subprocesses.

They are registered through a temporary ``picron_testmods-0.dist-info`` (entry-point group
``picron.modules``) that ``conftest.py`` writes at session start. Every module appends one
JSON line per event to the file in its ``log`` option; times there are ``/proc/uptime``
seconds, because libfaketime shifts every clock a process can read except that file, and
the battery compares times across processes.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

from picron.modules import Option, TaskModule

LOG = Option("str", "JSON-lines event log", required=True)


def uptime() -> float:
    """Real seconds since boot (10 ms resolution), the same in every process."""
    with open("/proc/uptime") as file:
        return float(file.read().split()[0])


def log_event(path: str, **event) -> None:
    line = (json.dumps(event) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one small O_APPEND write: lines never interleave
    finally:
        os.close(fd)


class _Logged(TaskModule):
    options = {"log": LOG}

    def start(self, options) -> None:
        log_event(options["log"], event="start", task=self.context.task_name,
                  node=self.context.node, at=self.context.now().isoformat(),
                  pid=os.getpid(), t=uptime())

    def end(self, options) -> None:
        log_event(options["log"], event="end", task=self.context.task_name,
                  node=self.context.node, pid=os.getpid(), t=uptime())


class Record(_Logged):
    identifier = "record"
    description = "Logs its start and end; optionally sleeps (time.sleep) and fails."
    options = {"log": LOG, "sleep": Option("int", "seconds to sleep", default=0),
               "fail": Option("bool", "report failure", default=False)}

    def do(self, options):
        self.start(options)
        if options["sleep"]:
            time.sleep(options["sleep"])
        self.end(options)
        return not options["fail"]


class SlowOnce(_Logged):
    """Sleeps on the first run of each 5-minute slot only, so a retry is quick (R4)."""

    identifier = "slow_once"
    description = "Sleeps 'sleep' seconds the first time in each 5-minute slot."
    options = {"log": LOG, "sleep": Option("int", "seconds", default=5)}

    def do(self, options):
        self.start(options)
        now = self.context.now()
        flag = f"{options['log']}.{now:%Y%m%d%H}{now.minute // 5:02d}"
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            time.sleep(options["sleep"])
        self.end(options)
        return True


class HangSleep(_Logged):
    identifier = "hang_sleep"
    description = "Sleeps for an hour."

    def do(self, options):
        self.start(options)
        time.sleep(3600)
        return True


class HangSwallow(_Logged):
    identifier = "hang_swallow"
    description = "Loops forever, swallowing every exception (an in-process timeout's enemy)."

    def do(self, options):
        self.start(options)
        while True:
            try:
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001 - the point of this module
                pass


class HangC(_Logged):
    identifier = "hang_c"
    description = "One long C call: scrypt with a huge parallelism (~15 minutes)."

    def do(self, options):
        self.start(options)
        hashlib.scrypt(b"password", salt=b"salt", n=2 ** 14, r=8, p=20_000, maxmem=2 ** 26)
        return True


class Flaky(TaskModule):
    """Fails with a seeded 1 % probability (R11 soak)."""

    identifier = "flaky"
    description = "Fails about once in a hundred runs."
    options = {"seed": Option("int", "random seed", default=0)}
    random = None

    def do(self, options):
        import random

        if Flaky.random is None:
            Flaky.random = random.Random(options["seed"])
        return Flaky.random.random() >= 0.01


MODULES = {cls.identifier: cls for cls in (Record, SlowOnce, HangSleep, HangSwallow, HangC,
                                            Flaky)}
