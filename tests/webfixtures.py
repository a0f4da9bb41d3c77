"""Fixtures of the web tests (import them: ``from tests.webfixtures import site, ...``)."""
from __future__ import annotations

import pytest

from picron.app import App
from picron.config import Config
from picron.site import Site


@pytest.fixture
def web_app(tmp_path, clock, registry):
    """An app on a temporary database file: every request opens its own connection."""
    config = Config(database=str(tmp_path / "picron.db"), node="node1", nodes=("node1", "node2"),
                    timezone="UTC")
    return App(config, clock=clock, registry=registry)


@pytest.fixture
def site(web_app):
    site = Site(web_app, failed_login_delay=0)
    yield site
    assert site.background.join(30), "a background run did not finish"


@pytest.fixture
def db(web_app) -> str:
    """The path of the app's database, created (and migrated) already."""
    web_app.open_store().close()
    return web_app.config.database
