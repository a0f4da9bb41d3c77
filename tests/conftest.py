"""Shared fixtures: a store on every backend, a controllable clock, fake task modules, an app."""
from __future__ import annotations

import sqlite3
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from picron.app import App
from picron.config import Config
from picron.modules import Option, Registry, TaskModule
from picron.storage import open_store
from tests.pgserver import fresh_postgres, pg_location, require_postgres  # noqa: F401

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def dump(path: str) -> list[str]:
    """The whole database as SQL text: compare before and after to prove nothing changed."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return when


class Succeed(TaskModule):
    identifier = "succeed"
    description = "Always succeeds; counts its calls."
    options = {"note": Option("str", "free text")}
    calls: list = []

    def do(self, options):
        Succeed.calls.append((self.context.task_name, self.context.node))
        self.say("fine")
        return True


class Fail(TaskModule):
    identifier = "fail"
    description = "Always fails."
    options = {}

    def do(self, options):
        self.say("it broke")
        return False


class Boom(TaskModule):
    identifier = "boom"
    description = "Always raises."
    options = {}

    def do(self, options):
        raise RuntimeError("kaboom")


class Sleep(TaskModule):
    identifier = "sleep"
    description = "Sleeps for 'seconds' (really)."
    options = {"seconds": Option("int", "how long", required=True),
               "loud": Option("bool", "say something", default=False)}

    def do(self, options):
        time.sleep(options["seconds"])
        return True


FAKE_MODULES = {cls.identifier: cls for cls in (Succeed, Fail, Boom, Sleep)}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def registry():
    Succeed.calls = []
    return Registry(modules=FAKE_MODULES)


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request):
    """``make_store(default_zone=UTC)``: a new, empty store on the backend of the test's
    parameter (SQLite in memory; PostgreSQL: a fresh schema at $PICRON_TEST_PG, else
    skipped)."""
    if request.param == "postgres":
        require_postgres()
    with ExitStack() as stack:
        def make(default_zone=timezone.utc):
            location = (stack.enter_context(fresh_postgres()) if request.param == "postgres"
                        else ":memory:")
            store = open_store(location, default_zone=default_zone)
            stack.callback(store.close)
            return store

        yield make


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """A database location for processes to share: a new SQLite file, or a fresh schema at
    $PICRON_TEST_PG (skipped without it)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_location")
    return str(tmp_path / "picron.db")


@pytest.fixture
def store(make_store):
    """An empty store (default zone UTC) on each backend: the storage contract's suite."""
    return make_store()


@pytest.fixture
def config():
    return Config(database=":memory:", node="node1", nodes=("node1",), timezone="UTC")


@pytest.fixture
def app(config, clock, registry):
    return App(config, clock=clock, registry=registry)


@pytest.fixture
def module_db(tmp_path):
    """(path, store) of a temporary database file, for modules that open it themselves."""
    path = str(tmp_path / "picron.db")
    store = open_store(path, default_zone=timezone.utc)
    yield path, store
    store.close()


@pytest.fixture
def db_path(tmp_path, monkeypatch):
    """A temporary database file, also set as PICRON_DB for CLI tests."""
    path = str(tmp_path / "picron.db")
    monkeypatch.setenv("PICRON_DB", path)
    monkeypatch.setenv("PICRON_NODE", "node1")
    monkeypatch.delenv("PICRON_CONFIG", raising=False)
    return path
