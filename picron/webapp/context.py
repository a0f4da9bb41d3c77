"""``Context``: what a handler gets besides the request, typed (no proxy of the ``App``).

One per request. The store (its own database connection) is opened on first use and
closed by ``close``; everything else is shared by all requests of the server.
"""
from __future__ import annotations

import os
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
from picron.storage import Store, is_postgres
from picron.webapp.background import BackgroundRuns
from picron.webapp.base import Raw
from picron.webapp.login import Logins
from picron.webapp.times import time_tag


CACHE_SECONDS = 10.0  # also the longest a change outside the data version stays unseen
CACHE_SIZE = 256
_CACHE: OrderedDict[tuple, tuple[tuple, float, object]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_BUILD_LOCK = threading.RLock()  # reentrant: a build may use another cached value
_MISSING = object()


class StorePool:
    """Open stores kept between requests: opening a connection cost 9 % of a list page.

    A store goes back only after a request that ended without an error (so never one in
    the middle of a transaction); at most ``size`` wait here, the others are closed. A
    kept SQLite store is used again only while its file is still the one at the
    configured path (a database restored or moved away under the server is noticed).
    SQLite connections are opened with ``check_same_thread=False``, so any request
    thread may take one.
    """

    def __init__(self, app: App, size: int = 16) -> None:
        self.app = app
        self.size = size
        self._idle: list[tuple[Store, tuple | None]] = []
        self._files: dict[int, tuple | None] = {}  # id(store) -> the file it opened
        self._lock = threading.Lock()

    def _identity(self) -> tuple | None:
        """Which file the database path names now (None: not a file, e.g. PostgreSQL)."""
        if is_postgres(self.app.config.database):
            return None
        try:
            info = os.stat(self.app.config.database)
        except OSError:
            return ("gone",)
        return (info.st_dev, info.st_ino)

    def get(self) -> Store:
        identity = self._identity()
        while True:
            with self._lock:
                if not self._idle:
                    break
                store, kept = self._idle.pop()
            if kept == identity:
                with self._lock:
                    self._files[id(store)] = kept
                return store
            store.close()
        store = self.app.open_store()
        with self._lock:
            self._files[id(store)] = identity
        return store

    def discard(self, store: Store) -> None:
        """Close a store taken from the pool that must not serve again."""
        with self._lock:
            self._files.pop(id(store), None)
        store.close()

    def put(self, store: Store) -> None:
        with self._lock:
            identity = self._files.pop(id(store), ("unknown",))
            if len(self._idle) < self.size:
                self._idle.append((store, identity))
                return
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
        value = self._cache_hit(key)
        if value is not _MISSING:
            return value
        # One request builds while the others wait for it: at the turn of a minute every
        # client missed at once, and twenty builds under one interpreter lock made p99.
        with _BUILD_LOCK:
            value = self._cache_hit(key)
            if value is not _MISSING:
                return value
            value = compute()
            with _CACHE_LOCK:
                _CACHE[key] = (self.data_version, time.monotonic(), value)
                _CACHE.move_to_end(key)
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        return value

    def _cache_hit(self, key: tuple):
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None and hit[0] == self.data_version and \
                time.monotonic() - hit[1] < CACHE_SECONDS:
            return hit[2]
        return _MISSING

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
        if self.pool is None:
            store.close()
        elif reuse:
            self.pool.put(store)
        else:
            self.pool.discard(store)
