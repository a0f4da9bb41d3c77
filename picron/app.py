"""The wiring of one picron process: configuration, database, modules and runner.

Everything is built on first use, so a cron tick that finds nothing due opens the
database and nothing else. The CLI and the web server each make one ``App``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from functools import cached_property

from picron.config import Config
from picron.schedule import utcnow


class App:
    """Lazily built collaborators for one configuration; pass fakes to the constructor in tests."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow,
                 registry=None) -> None:
        self.config = config
        self.clock = clock
        if registry is not None:
            self.registry = registry

    @cached_property
    def zone(self):
        """The server time zone (config ``timezone``, else the system's)."""
        from picron.schedule import get_zone

        return get_zone(self.config.timezone)

    @cached_property
    def store(self):
        return self.open_store()

    def open_store(self):
        """A new ``Store`` with its own connection (one per thread or request)."""
        from picron.storage import open_store

        return open_store(self.config.database, default_zone=self.zone)

    @cached_property
    def registry(self):
        from picron.modules import load_modules

        return load_modules()

    def runner(self, store=None):
        """A ``Runner`` for the local node, on ``store`` (default: this app's)."""
        from picron.runner import Runner

        # The registry is passed as a function: a tick with nothing due never loads a module.
        return Runner(store or self.store, lambda: self.registry, node=self.config.node,
                      default_timeout=self.config.task_timeout,
                      history_days=self.config.history_days, clock=self.clock)

    def parse_task(self, data, base=None):
        """Validate a task definition (see ``picron.tasks.parse_task``)."""
        from picron.tasks import parse_task

        return parse_task(data, self.registry, (self.config.node,), base)


def current_user() -> str:
    """The login name of this process's user, for the audit log."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
