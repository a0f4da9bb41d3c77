"""``Context``: what a handler gets besides the request, typed (no proxy of the ``App``).

One per request. The store (its own database connection) is opened on first use and
closed by ``close``; everything else is shared by all requests of the server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, tzinfo

from picron.app import App
from picron.config import Config
from picron.modules import Registry
from picron.storage import Store
from picron.webapp.background import BackgroundRuns
from picron.webapp.base import Raw
from picron.webapp.login import Logins
from picron.webapp.times import time_tag


@dataclass
class Context:
    app: App
    background: BackgroundRuns  # executes manual runs on threads
    logins: Logins  # sessions and login limits of this server
    chosen_zone: tzinfo | None = None  # the viewer's (cookie picron_zone), else the server's
    _store: Store | None = field(default=None, repr=False)

    @property
    def view_zone(self) -> tzinfo:
        """The zone the page shows times in."""
        return self.chosen_zone or self.app.zone

    @cached_property
    def now(self) -> datetime:
        """One "now" for the whole request, so every relative time agrees."""
        return self.app.clock()

    def when(self, instant: datetime | None, never: str = "never") -> Raw:
        """``instant`` on the page: relative to now, exact (in the viewer's zone) on hover."""
        return time_tag(instant, self.view_zone, self.now, never)

    @property
    def config(self) -> Config:
        return self.app.config

    @property
    def zone(self) -> tzinfo:
        """The server's time zone."""
        return self.app.zone

    @property
    def registry(self) -> Registry:
        return self.app.registry

    def clock(self) -> datetime:
        return self.app.clock()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.app.open_store()
        return self._store

    def runner(self):
        """A ``Runner`` of the local node on this request's store."""
        return self.app.runner(self.store)

    def parse_task(self, data, base=None, current=None):
        return self.app.parse_task(data, base, current)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
