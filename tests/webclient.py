"""Helpers for the web tests: in-process calls, responses, database snapshots."""
from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlencode

from picron.webapp.login import api_token
from picron.webapp.site import parse_target
from picron.webapp.base import Request, Response

HOST = "127.0.0.1:8080"


def call(site, method: str, target: str, body: object = None, *, headers: dict | None = None,
         form: dict | None = None, cookies: dict | None = None,
         client: str = "10.0.0.1", token: bool | None = None) -> Response:
    """One request through ``Site.handle``: ``body`` is sent as JSON, ``form`` urlencoded.

    It carries the API token as a script would (``Authorization: Bearer``) unless
    ``token`` is False, or (``token`` None) it brings its own cookies or Authorization.
    """
    path, query = parse_target(target)
    sent = {"host": HOST}
    own = {name.lower() for name in headers or ()}
    if token or (token is None and not cookies and "authorization" not in own):
        sent["authorization"] = bearer(site)
    data = b""
    if form is not None:
        data = urlencode(form, doseq=True).encode()
        sent["content-type"] = "application/x-www-form-urlencoded"
    elif isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        sent["content-type"] = "application/json"
    elif method in ("POST", "PUT", "PATCH", "DELETE"):
        sent["content-type"] = "application/json"  # as a script calls the API
    if cookies:
        sent["cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    sent.update({name.lower(): value for name, value in (headers or {}).items()})
    sent = {name: value for name, value in sent.items() if value is not None}
    return site.handle(Request(method=method, path=path, query=query, headers=sent, body=data,
                               client=client))


def bearer(site) -> str:
    """The ``Authorization`` value of the site's API token (created on first use)."""
    return "Bearer " + api_token(site.app.store)


def token_login(site, client: str = "10.0.0.1") -> dict:
    """Open the login link ``picron serve`` prints; returns the cookies a browser then holds."""
    response = call(site, "GET", "/login?" + urlencode({"token": api_token(site.app.store)}),
                    token=False, client=client)
    assert response.status == 303, text(response)
    return {"picron_session": cookie_value(response, "picron_session")}


def body(response: Response):
    return json.loads(response.body)


def text(response: Response) -> str:
    return response.body.decode("utf-8")


def set_cookies(response: Response) -> dict[str, str]:
    """The cookies a response sets, name → full Set-Cookie value."""
    return {value.split("=", 1)[0]: value for value in response.cookies}


def cookie_value(response: Response, name: str) -> str:
    return set_cookies(response)[name].split(";")[0].split("=", 1)[1]


def snapshot(database: str) -> list[str]:
    """Every row of the database as SQL (compare before/after a refused request)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


TASK = {"name": "ping", "interval": "*/5 * * * *", "taskmodule": "succeed"}

