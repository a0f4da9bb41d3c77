"""``Context``: what a handler gets besides the request, typed (no proxy of the ``App``).

One per request. The store (its own database connection) is opened on first use and
closed by ``close``; everything else is shared by all requests of the server.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
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


CACHE_SECONDS = 10.0  # also the longest a change outside the data version stays unseen
CACHE_SIZE = 256
_CACHE: OrderedDict[tuple, tuple[tuple, float, object]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


class StorePool:
    """Open stores kept between requests: opening a connection cost 9 % of a list page.

    A store goes back only after a request that ended without an error (so never one in
    the middle of a transaction); at most ``size`` wait here, the others are closed.
    SQLite connections are opened with ``check_same_thread=False``, so any request
    thread may take one.
    """

    def __init__(self, app: App, size: int = 16) -> None:
        self.app = app
        self.size = size
        self._idle: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.app.open_store()

    def put(self, store: Store) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        with self._lock:
            stores, self._idle = self._idle, []
        for store in stores:
            store.close()


@dataclass
class Context:
    app: App
    background: BackgroundRuns  # executes manual runs on threads
    logins: Logins  # sessions and login limits of this server
    chosen_zone: tzinfo | None = None  # the viewer's (cookie picron_zone), else the server's
    pool: StorePool | None = None  # where the store comes from and goes back to
    _store: Store | None = field(default=None, repr=False)

    @property
    def view_zone(self) -> tzinfo:
        """The zone the page shows times in."""
        return self.chosen_zone or self.app.zone

    @cached_property
    def now(self) -> datetime:
        """One "now" for the whole request, so every relative time agrees."""
        return self.app.clock()

    @cached_property
    def data_version(self) -> tuple:
        """The store's ``data_version``, asked once per request."""
        return (self.config.database, *self.store.data_version())

    def cached(self, name: str, extra: tuple, compute: Callable[[], object]):
        """``compute()``, or its value from an earlier request while the data version is
        the same (and for at most ``CACHE_SECONDS``: an import of last run times alone
        changes no version). ``extra`` is everything else the value depends on."""
        key = (name, *extra)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None and hit[0] == self.data_version and \
                time.monotonic() - hit[1] < CACHE_SECONDS:
            return hit[2]
        value = compute()
        with _CACHE_LOCK:
            _CACHE[key] = (self.data_version, time.monotonic(), value)
            _CACHE.move_to_end(key)
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        return value

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
            self._store = self.pool.get() if self.pool else self.app.open_store()
        return self._store

    def runner(self):
        """A ``Runner`` of the local node on this request's store."""
        return self.app.runner(self.store)

    def parse_task(self, data, base=None, current=None):
        return self.app.parse_task(data, base, current)

    def close(self, reuse: bool = False) -> None:
        """Give the store back to the pool (``reuse``: the request ended well) or close it."""
        store, self._store = self._store, None
        if store is None:
            return
        if reuse and self.pool is not None:
            self.pool.put(store)
        else:
            store.close()
