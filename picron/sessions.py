"""Web logins: the login form, sessions in memory, cookies, and limits on failed logins.

Sessions live in the server process only: a restart logs everybody out, and no session
secret ever reaches the database. Time comes from the injected clock (SPEC-style
``now()`` returning aware UTC), so idle timeouts are testable without sleeping.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import quote, urlsplit

from picron.auth import ADMIN_USER, PasswordChecker, password_hash
from picron.errors import TooManyRequests, Unauthorized
from picron.webcore import Request, Response, html_response, redirect, render

SESSION_COOKIE = "picron_session"
CSRF_COOKIE = "picron_csrf"
IDLE_TIMEOUT = timedelta(minutes=30)
MAX_SESSIONS = 1000
FAILED_LOGIN_DELAY = 0.5
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32): 256 bits


def new_token() -> str:
    """A fresh 256-bit random token, safe in cookies, URLs and HTML attributes."""
    return secrets.token_urlsafe(32)


def is_token(value: str | None) -> bool:
    return bool(value) and _TOKEN.fullmatch(value) is not None


@dataclass
class Session:
    id: str
    user: str
    csrf_token: str
    last_seen: datetime
    password_hash: str = ""  # the hash it logged in with: a new password ends the session


class SessionStore:
    """Logged-in sessions by id; a session dies at logout or after ``idle`` without use."""

    def __init__(self, clock: Callable[[], datetime], idle: timedelta = IDLE_TIMEOUT,
                 limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.idle = idle
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, user: str, password_hash: str = "") -> Session:
        """A new session with a new id and CSRF token (never reuses a presented id)."""
        session = Session(id=new_token(), user=user, csrf_token=new_token(),
                          last_seen=self.clock(), password_hash=password_hash)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)  # the least recently used
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, marked as used now; None if unknown or idle too long."""
        if not is_token(session_id):
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self.idle:
                del self._sessions[session_id]
                return None
            session.last_seen = now
            self._sessions.move_to_end(session_id)
            return session

    def delete(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


class LoginLimiter:
    """Counts failed logins per client address; refuses a client after too many.

    ``max_failures`` failures within ``window`` block that client until the oldest of
    them leaves the window. Memory is bounded: at most ``max_clients`` addresses.
    """

    def __init__(self, clock: Callable[[], datetime], max_failures: int = 5,
                 window: timedelta = timedelta(minutes=15), max_clients: int = 10000) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return 0
            return max(1, int((times[0] + self.window - now).total_seconds()) + 1)

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: datetime) -> deque:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times


def parse_cookies(header: str | None) -> dict[str, str]:
    """``Cookie: a=1; b=2`` as a dict (the first value of a repeated name wins)."""
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def cookie(name: str, value: str, *, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value scripts cannot read and other sites never make us send."""
    text = f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"
    return text if max_age is None else f"{text}; Max-Age={max_age}"


def safe_next(value: str | None) -> str:
    """A local path to go to after login: anything else (other hosts, schemes) becomes "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(not ch.isprintable() for ch in value) or urlsplit(value).netloc:
        return "/"
    return quote(value, safe="/?=&%#;,+-._~:@!$'()*")


_LOGIN = """<section class="login">
<h1>Log in</h1>
$message<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="$csrf">
<input type="hidden" name="next" value="$next">
<p><label for="login-user">User</label>
<input id="login-user" name="user" value="admin" autocomplete="username" required></p>
<p><label for="login-password">Password</label>
<input id="login-password" type="password" name="password" autocomplete="current-password"
 required autofocus></p>
<p><button class="primary">Log in</button></p>
</form>
</section>"""


class Logins:
    """Checks passwords and runs the login form and logout; ``picron.site`` routes to them.

    ``failed_login_delay`` (seconds) slows every failed login, form or HTTP Basic alike.
    """

    def __init__(self, clock: Callable[[], datetime],
                 failed_login_delay: float = FAILED_LOGIN_DELAY) -> None:
        self.sessions = SessionStore(clock)
        self.limiter = LoginLimiter(clock)
        self.checker = PasswordChecker()
        self.failed_login_delay = failed_login_delay

    def check(self, client: str, user: str, password: str, stored: str) -> None:
        """Verify a login; raises ``TooManyRequests`` or (after a delay) ``Unauthorized``.

        Every wrong login gets the same answer and the same delay.
        """
        wait = self.limiter.retry_after(client)
        if wait:
            raise TooManyRequests(f"too many failed logins; try again in {wait} seconds")
        if self.checker.check(user, password, stored):
            self.limiter.succeeded(client)
            return
        self.limiter.failed(client)
        time.sleep(self.failed_login_delay)
        raise Unauthorized("wrong user name or password")

    def session(self, req: Request, stored: str) -> Session | None:
        """The request's live session, if it logged in with the current password."""
        session = self.sessions.get(req.cookies.get(SESSION_COOKIE))
        return session if session is not None and session.password_hash == stored else None

    def page(self, app, req: Request, message: str = "", status: int = 200) -> Response:
        """GET /login: the form (or, when logged in already, where ``next`` points)."""
        from picron.layout import layout

        target = safe_next(req.arg("next") or req.field("next"))
        if req.user is not None:
            return redirect(target)
        body = render(_LOGIN, csrf=req.csrf_token, next=target,
                      message=render('<p class="error-message" role="alert">$m</p>\n', m=message)
                      if message else "")
        return html_response(layout(req, "Log in", body), status)

    def login(self, app, req: Request) -> Response:
        """POST /login: a new session (new id) on success, the form again with 401 if not."""
        stored = password_hash(app.store)
        if stored is None or req.user is not None:
            return redirect(safe_next(req.field("next")))
        try:
            self.check(req.client, req.field("user") or "", req.field("password") or "", stored)
        except Unauthorized as error:
            return self.page(app, req, error.message, 401)
        self.sessions.delete(req.cookies.get(SESSION_COOKIE))
        session = self.sessions.create(ADMIN_USER, stored)
        response = redirect(safe_next(req.field("next")))
        response.cookies.append(cookie(SESSION_COOKIE, session.id))
        return response

    def logout(self, app, req: Request) -> Response:
        """POST /logout: the session is dead at once."""
        self.sessions.delete(req.cookies.get(SESSION_COOKIE))
        response = redirect("/login")
        response.cookies.append(cookie(SESSION_COOKIE, "", max_age=0))
        return response
