"""The web application without sockets: ``Site.handle(Request) -> Response``.

It owns everything between the HTTP adapter (``picron.web``) and the handlers of
``picron.webapp.views`` (found through ``picron.webapp.routes``): the Host allowlist, who
is logged in (with ``picron.webapp.login``), CSRF, body parsing, error answers and the
security headers every response carries. Handlers get ``(ctx: Context, req: Request,
**params)``.

Cross-site request forgery, decided per request that changes state (POST, PUT,
PATCH, DELETE):

* a foreign ``Origin``, or ``Sec-Fetch-Site: same-site``/``cross-site`` → 403, always;
* a request carrying the CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``) equal to the expected one passes. The expected token is the
  session's when logged in with the session cookie; otherwise it is the double-submit
  cookie ``picron_csrf`` (HttpOnly, SameSite=Strict) that every response sets;
* a call authenticated by the API token (``Authorization: Bearer``) needs no CSRF
  token: a browser never adds that header by itself;
* a call authenticated by HTTP Basic needs no token if it is a PUT, PATCH or DELETE, or
  a POST with ``Content-Type: application/json``: other sites can send none of these
  without a CORS preflight, which this server never grants (a cross-site form or
  ``no-cors`` fetch can only POST form, multipart or text bodies, or none). Everything
  else → 403, nothing changes.

Every request needs a credential (SPEC §6), also on loopback without a password: the
API token, a session cookie (from the token's login link or the password), or HTTP
Basic once a password is set. Only the login page and static files answer without one.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlencode, urlsplit

from picron.errors import (Forbidden, MethodNotAllowed, PicronError, Unauthorized, UnsupportedMediaType,
                           ValidationError)
from picron.webapp.background import BackgroundRuns
from picron.webapp.base import Request, Response, html_response, json_response, redirect, render
from picron.webapp.context import Context, StorePool
from picron.webapp.layout import error_page
from picron.webapp.login import (ADMIN_USER, CSRF_COOKIE, FAILED_LOGIN_DELAY, TOKEN_USER, Logins,
                                 cookie, is_token, new_token, parse_basic, parse_bearer,
                                 parse_cookies, password_hash, stored_token, token_matches)
from picron.webapp.routes import PUBLIC, ROUTES, resolve
from picron.webapp.views.api import is_json
from picron.webapp.views.prefs import viewer_zone
from picron.webapp.views.static import static_file

logger = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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
_TOKEN_PARAMETER = re.compile(r"((?:^|[?&;])token=)[^&;\s\"]*", re.IGNORECASE)



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
        self.stores = StorePool(app)
        self._holding = False
        self._writes = threading.Lock()
        self.routes = list(ROUTES)  # tests may add their own
        self.public = PUBLIC

    # -- the request cycle --------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Answer one request; never raises. Every answer carries the security headers."""
        if not req.cookies:
            req.cookies = parse_cookies(req.headers.get("cookie"))
        presented = req.cookies.get(CSRF_COOKIE)
        req.csrf_token = double_submit = presented if is_token(presented) else new_token()
        view = Context(self.app, self.background, self.logins, viewer_zone(req), self.stores)
        healthy = False  # whether the request's store may serve another request
        try:
            self._hold_database()
            response = self._handle(view, req)
            healthy = True
        except Exception as error:
            healthy = isinstance(error, PicronError) and error.http_status < 500
            response = self.error_response(req, error)
        finally:
            try:
                view.close(reuse=healthy)
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

    def _handle(self, ctx: Context, req: Request) -> Response:
        self._check_host(req)
        handler, params = self._route(req)
        if handler is static_file:
            return handler(ctx, req, **params)
        kind = self._authenticate(ctx, req)
        if kind is None and handler not in self.public:
            if is_api(req.path):
                raise Unauthorized("log in first: send Authorization: Bearer with the API "
                                   "token (picron token prints it), or a session cookie")
            return redirect("/login?next=" + quote(_target(req), safe="/"))
        if is_api(req.path) and req.method in STATE_CHANGING and _declares_body(req) \
                and not is_json(req):
            raise UnsupportedMediaType("the request body must be JSON "
                                       "(Content-Type: application/json)")
        parse_body(req)
        if req.method not in STATE_CHANGING:
            return handler(ctx, req, **params)
        self._check_csrf(req, kind)
        if handler in self.public:
            return handler(ctx, req, **params)
        # One writer at a time in this process: SQLite's busy handler polls with sleeps
        # of up to 100 ms, so writers competing for its lock wait unfairly long (W1).
        with self._writes:
            return handler(ctx, req, **params)

    def _route(self, req: Request):
        return resolve(self.routes, req.method, req.path)

    def error_response(self, req: Request, error: Exception) -> Response:
        """The answer for an error: SPEC §6 JSON under /api and /metrics, else an HTML page."""
        if not isinstance(error, PicronError):
            logger.error("error answering %s %s", req.method, printable(req.path),
                         exc_info=(type(error), error, error.__traceback__))
            error = PicronError("internal error; the details are in the server log")
        if is_api(req.path):
            response = json_response(error.to_json(), error.http_status)
            if isinstance(error, Unauthorized):
                response.headers["WWW-Authenticate"] = \
                    'Bearer realm="picron", Basic realm="picron", charset="UTF-8"'
        else:
            try:
                response = error_page(req, error.http_status, error.message)
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

    def _authenticate(self, ctx: Context, req: Request) -> str | None:
        """Set ``req.user`` (and the session's CSRF token); returns how the request logged in.

        ``"token"`` (``Authorization: Bearer``), ``"session"``, ``"basic"`` (only once a
        password is set), or None: SPEC §6 trusts no request for where it comes from.
        """
        token = stored_token(ctx.store)
        presented = parse_bearer(req.headers.get("authorization"))
        if presented is not None:
            if not token_matches(presented, token):
                raise Unauthorized("wrong API token (picron token prints the current one)")
            req.user = TOKEN_USER
            return "token"
        stored = password_hash(ctx.store)
        session = self.logins.session(req, stored, token)
        if session is not None:
            req.user, req.csrf_token = session.user, session.csrf_token
            return "session"
        credentials = parse_basic(req.headers.get("authorization"))
        if credentials is not None and stored is not None:
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
        if kind == "token":
            return  # browsers never add an Authorization: Bearer header by themselves
        token = req.headers.get("x-csrf-token") or req.field("csrf_token") or ""
        if token and hmac.compare_digest(token.encode("utf-8", "replace"),
                                         req.csrf_token.encode()):
            return
        if kind == "basic" and (req.method != "POST" or is_json(req)):
            return
        if is_api(req.path):
            raise Forbidden("missing or wrong CSRF token: send the X-CSRF-Token header, or "
                            "use Authorization: Bearer with the API token")
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")


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


def _declares_body(req: Request) -> bool:
    """Whether the request carries a body, or says what type its (empty) body has."""
    return bool(req.body) or "content-type" in req.headers


def is_api(path: str) -> bool:
    """Whether errors at ``path`` are answered in JSON."""
    return path == "/api" or path.startswith("/api/") or path == "/metrics"


def _target(req: Request) -> str:
    if not req.query:
        return req.path
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
    """``text`` for a log line: control characters escaped (one log line stays one line)
    and the API token of a login link (``token=...``) masked."""
    text = _TOKEN_PARAMETER.sub(r"\1********", text[:2000])
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode()
                   for ch in text)
