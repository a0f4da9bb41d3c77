"""The web application without sockets: ``Site.handle(Request) -> Response``.

It owns everything between the HTTP adapter (``picron.web``) and the handlers of
``picron.api`` and ``picron.pages``: the routing table, the Host allowlist, who is
logged in (with ``picron.sessions``), CSRF, body parsing, error answers and the security
headers every response carries.

Cross-site request forgery, decided per request that changes state (POST, PUT,
PATCH, DELETE):

* a foreign ``Origin``, or ``Sec-Fetch-Site: same-site``/``cross-site`` → 403, always;
* a request carrying the CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``) equal to the expected one passes. The expected token is the
  session's when logged in with the session cookie; otherwise it is the double-submit
  cookie ``picron_csrf`` (HttpOnly, SameSite=Strict) that every response sets;
* a call authenticated by HTTP Basic, or any call while no password is set, needs no
  token if it is a PUT, PATCH or DELETE, or a POST with ``Content-Type:
  application/json``: other sites can send none of these without a CORS preflight,
  which this server never grants (a cross-site form or ``no-cors`` fetch can only
  POST form, multipart or text bodies, or none). Everything else → 403, nothing changes.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlsplit

from picron import api, pages
from picron.auth import ADMIN_USER, parse_basic, password_hash
from picron.background import BackgroundRuns
from picron.errors import (Forbidden, MethodNotAllowed, NotFound, PicronError, Unauthorized,
                           ValidationError)
from picron.sessions import (CSRF_COOKIE, FAILED_LOGIN_DELAY, Logins, cookie, is_token,
                             new_token, parse_cookies)
from picron.webcore import Request, Response, html_response, json_response, redirect, render

logger = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
                ".txt": "text/plain; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our
    # own form posts, which the Origin check would have to refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
MAX_QUERY_FIELDS = 100
MAX_FORM_FIELDS = 1000
_UNSAFE_HEADER = re.compile(r"[^\x20-\x7e\t]")



class RequestApp:
    """The ``App`` as one request sees it: shared config, registry and clock; its own store.

    The store (one SQLite connection) is opened on first use and closed by ``close``;
    ``background`` executes manual runs (``picron.background``).
    """

    def __init__(self, app, background: BackgroundRuns) -> None:
        self._app = app
        self._store = None
        self.background = background

    def __getattr__(self, name: str):
        return getattr(self._app, name)

    @property
    def store(self):
        if self._store is None:
            self._store = self._app.open_store()
        return self._store

    def runner(self, store=None):
        return self._app.runner(store or self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class Site:
    """Routes requests to handlers behind the Host check, the login and the CSRF check.

    ``listen_host`` is the host the server listens on (it is also an accepted Host
    name); ``failed_login_delay`` slows every failed login (seconds; tests pass 0).
    """

    def __init__(self, app, listen_host: str = "127.0.0.1", *,
                 failed_login_delay: float = FAILED_LOGIN_DELAY) -> None:
        _ = app.registry.modules, app.zone  # built once, before request threads share them
        self.app = app
        self.allowed_hosts = frozenset(
            _host_key(name) for name in (*LOOPBACK_HOSTS, listen_host, *app.config.allowed_hosts))
        self.logins = Logins(app.clock, failed_login_delay)
        self.background = BackgroundRuns(app)
        self._holding = False
        self._writes = threading.Lock()
        own = [("GET", "/login", self.logins.page), ("POST", "/login", self.logins.login),
               ("POST", "/logout", self.logins.logout),
               ("GET", r"/static/(?P<name>[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99})", static_file)]
        self.routes = [*api.ROUTES, *pages.ROUTES,
                       *((method, re.compile(path), handler) for method, path, handler in own)]
        self.public = {self.logins.page, self.logins.login, static_file}

    # -- the request cycle --------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Answer one request; never raises. Every answer carries the security headers."""
        if not req.cookies:
            req.cookies = parse_cookies(req.headers.get("cookie"))
        presented = req.cookies.get(CSRF_COOKIE)
        req.csrf_token = double_submit = presented if is_token(presented) else new_token()
        view = RequestApp(self.app, self.background)
        try:
            self._hold_database()
            response = self._handle(view, req)
        except Exception as error:
            response = self.error_response(req, error)
        finally:
            try:
                view.close()
            except PicronError:
                logger.warning("could not close a database connection", exc_info=True)
        if double_submit != presented:
            response.cookies.append(cookie(CSRF_COOKIE, double_submit))
        return self.secure(response)

    def _hold_database(self) -> None:
        # Keep one connection (the app's own) open while the site lives: when the last
        # connection to a WAL database closes, SQLite checkpoints and deletes the WAL,
        # which made every request about eight times slower.
        if not self._holding:
            self.app.store  # noqa: B018 - opening it is the point
            self._holding = True

    def _handle(self, app: RequestApp, req: Request) -> Response:
        self._check_host(req)
        handler, params = self._route(req)
        if handler is static_file:
            return handler(app, req, **params)
        kind = self._authenticate(app, req)
        if kind is None and handler not in self.public:
            if is_api(req.path):
                raise Unauthorized("log in first: a session cookie, or HTTP Basic with user "
                                   f"{ADMIN_USER}")
            return redirect("/login?next=" + quote(_target(req), safe="/"))
        parse_body(req)
        if req.method not in STATE_CHANGING:
            return handler(app, req, **params)
        self._check_csrf(req, kind)
        if handler in self.public:
            return handler(app, req, **params)
        # One writer at a time in this process: SQLite's busy handler polls with sleeps
        # of up to 100 ms, so writers competing for its lock wait unfairly long (W1).
        with self._writes:
            return handler(app, req, **params)

    def _route(self, req: Request):
        method = "GET" if req.method == "HEAD" else req.method
        allowed = []
        for route_method, pattern, handler in self.routes:
            match = pattern.fullmatch(req.path)
            if match is None:
                continue
            if route_method == method:
                return handler, match.groupdict()
            allowed.append(route_method)
        if allowed:
            if "GET" in allowed:
                allowed.append("HEAD")
            raise MethodNotAllowed(f"{req.method} is not allowed here",
                                   allow=tuple(dict.fromkeys(allowed)))
        raise NotFound(f"no page at {req.path[:200]}")

    def error_response(self, req: Request, error: Exception) -> Response:
        """The answer for an error: SPEC §6 JSON under /api and /metrics, else an HTML page."""
        if not isinstance(error, PicronError):
            logger.error("error answering %s %s", req.method, printable(req.path),
                         exc_info=(type(error), error, error.__traceback__))
            error = PicronError("internal error; the details are in the server log")
        if is_api(req.path):
            response = json_response(error.to_json(), error.http_status)
            if isinstance(error, Unauthorized):
                response.headers["WWW-Authenticate"] = 'Basic realm="picron", charset="UTF-8"'
        else:
            try:
                response = pages.error_page(req, error.http_status, error.message)
            except Exception:
                logger.exception("the error page failed")
                response = html_response(render("<!doctype html><title>$s</title><p>$m</p>",
                                                s=error.http_status, m=error.message),
                                         error.http_status)
        if isinstance(error, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(error.allow)
        return response

    def secure(self, response: Response) -> Response:
        """Add the security headers; a header that could split the response is never sent."""
        values = [*response.headers.values(), *response.cookies, response.content_type]
        if any(_UNSAFE_HEADER.search(value) for value in values):
            logger.error("refused to send a response header with a control or non-ASCII "
                         "character: %r", values)
            response = html_response("<!doctype html><title>500</title><p>internal error</p>",
                                     500)
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- Host, login, CSRF -----------------------------------------------------------------

    def _check_host(self, req: Request) -> None:
        host = req.headers.get("host")
        if not host or _host_key(host, strip_port=True) not in self.allowed_hosts:
            raise ValidationError(f"this server does not answer to the host name "
                                  f"{(host or '')[:100]!r}; add it to allowed_hosts in the "
                                  "config to allow it", field="host")

    def _authenticate(self, app: RequestApp, req: Request) -> str | None:
        """Set ``req.user`` (and the session's CSRF token); returns how the user logged in.

        ``"local"`` while no password is set, ``"session"``, ``"basic"``, or None.
        """
        stored = password_hash(app.store)
        if stored is None:
            req.user = "local"
            return "local"
        session = self.logins.session(req, stored)
        if session is not None:
            req.user, req.csrf_token = session.user, session.csrf_token
            return "session"
        credentials = parse_basic(req.headers.get("authorization"))
        if credentials is not None:
            self.logins.check(req.client, *credentials, stored)
            req.user = ADMIN_USER
            return "basic"
        return None

    def _check_csrf(self, req: Request, kind: str | None) -> None:
        origin = req.headers.get("origin")
        if origin is not None and not _same_origin(origin, req.headers.get("host", "")):
            raise Forbidden("cross-site request refused")
        if req.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise Forbidden("cross-site request refused")
        token = req.headers.get("x-csrf-token") or req.field("csrf_token") or ""
        if token and hmac.compare_digest(token.encode("utf-8", "replace"),
                                         req.csrf_token.encode()):
            return
        if kind in ("basic", "local") and (req.method != "POST" or api.is_json(req)):
            return
        if is_api(req.path):
            raise Forbidden("missing or wrong CSRF token: send the X-CSRF-Token header, or "
                            "Content-Type: application/json with HTTP Basic or no password")
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")


def static_file(app, req: Request, name: str) -> Response:
    """A file of ``picron/static`` by its exact name; nothing else is ever read."""
    if name.startswith(".") or name not in _static_names():
        raise NotFound(f"no file {name!r}")
    return Response(body=(STATIC_DIR / name).read_bytes(),
                    content_type=STATIC_TYPES.get(Path(name).suffix, "application/octet-stream"))


def _static_names() -> set[str]:
    try:
        return {path.name for path in STATIC_DIR.iterdir() if path.is_file()}
    except OSError:
        return set()


# -- parsing --------------------------------------------------------------------------


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """Split a request target into its decoded path and query; 400 if it is not a path."""
    path, _, query = target.partition("#")[0].partition("?")
    if not path.startswith("/"):
        raise ValidationError("the request target must be a path")
    try:
        return (unquote_to_bytes(path).decode("utf-8"),
                parse_qs(query, keep_blank_values=True, errors="strict",
                         max_num_fields=MAX_QUERY_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("the URL is not valid UTF-8 or has too many parameters") from None


def parse_body(req: Request) -> None:
    """Decode a JSON or form body into ``req.json``/``req.form``; 400 if it is malformed.

    Deep nesting is refused (json raises ``RecursionError``, caught here), as are
    ``NaN``/``Infinity`` and lone surrogates that SQLite could not store.
    """
    if not req.body:
        return
    media_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "application/x-www-form-urlencoded"):
        return  # handlers that need a body answer 415
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the request body is not valid UTF-8") from None
    if media_type == "application/x-www-form-urlencoded":
        try:
            req.form = parse_qs(text, keep_blank_values=True, errors="strict",
                                max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise ValidationError("the form is not valid UTF-8 or has too many fields") from None
        return
    try:
        req.json = json.loads(text, parse_constant=_reject_constant)
        json.dumps(req.json, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValidationError("the JSON body is nested too deeply") from None
    except UnicodeEncodeError:
        raise ValidationError("the JSON body contains an invalid \\u escape") from None
    except ValueError as error:
        raise ValidationError(f"the body is not valid JSON: {error}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def is_api(path: str) -> bool:
    """Whether errors at ``path`` are answered in JSON."""
    return path == "/api" or path.startswith("/api/") or path == "/metrics"


def _target(req: Request) -> str:
    if not req.query:
        return req.path
    from urllib.parse import urlencode

    return f"{req.path}?{urlencode(req.query, doseq=True)}"


def _host_key(host: str, strip_port: bool = False) -> str | None:
    """A Host header or host name in one comparable form (lowercase, IPv6 in brackets)."""
    host = host.strip().lower()
    if strip_port:
        match = re.fullmatch(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::[0-9]{1,5})?", host)
        return match.group(1) if match else None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``Origin`` names this server as the request's ``Host`` header does.

    Browsers always put a non-default port in ``Host``; a client that leaves it out is
    not a browser, so then only the host names are compared.
    """
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default_port = ":80" if parts.scheme == "http" else ":443"
    netloc, host = parts.netloc.removesuffix(default_port), host.strip().lower()
    if re.search(r":[0-9]+$", host):
        return netloc == host.removesuffix(default_port)
    return parts.hostname is not None and _host_key(parts.hostname) == _host_key(host)


def printable(text: str) -> str:
    """``text`` with every control character escaped: one log line stays one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode()
                   for ch in text[:2000])
