"""The PostgreSQL half of the suite: a fresh, empty picron database for each test.

``$PICRON_TEST_PG`` names a server's database (``.ci/run`` starts a throwaway one with
``tests/pgserver.sh``); each test gets its own schema there, named in the location's
``search_path``, so subprocesses opening the same location see the same tables and tests
never see each other's rows. Without the variable the PostgreSQL half is skipped.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("PICRON_TEST_PG", "")
POSTGRES_SKIP = "set PICRON_TEST_PG=postgresql://... to run the PostgreSQL half"


def require_postgres() -> str:
    """The server URL, or skip the test saying how to enable it."""
    if not PG_URL:
        pytest.skip(POSTGRES_SKIP)
    return PG_URL


def schema_location(url: str, schema: str) -> str:
    """``url`` with picron's tables in ``schema`` (libpq ``options``: the search path)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def admin(url: str | None = None):
    import psycopg

    return psycopg.connect(url or require_postgres(), autocommit=True)


@contextmanager
def fresh_postgres():
    """Yield the location of a new, empty schema on the test server; dropped afterwards."""
    url = require_postgres()
    schema = f"picron_test_{uuid.uuid4().hex[:12]}"
    with admin(url) as conn:
        conn.execute(f"create schema {schema}")
    try:
        yield schema_location(url, schema)
    finally:
        with admin(url) as conn:
            conn.execute("set lock_timeout = '10s'")
            conn.execute(f"drop schema {schema} cascade")


@pytest.fixture
def pg_location():
    """A fresh PostgreSQL location for one test (skipped without $PICRON_TEST_PG)."""
    with fresh_postgres() as location:
        yield location
