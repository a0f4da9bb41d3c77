"""Logging in: the admin password and the API token, sessions, cookies, login limits, and
the login and logout pages.

The password is a salted ``hashlib.scrypt`` hash in the database; one scrypt costs 16 MiB
and ~50 ms, so the server verifies one password at a time on one thread
(``PasswordChecker``): parallel logins queue instead of exhausting memory. Sessions live
in the server process only: a restart logs everybody out, and no session secret ever
reaches the database. Time comes from the injected clock (aware UTC), so idle timeouts
are testable without sleeping.
"""
from __future__ import annotations

import base64
import getpass
import binascii
import hashlib
import hmac
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote, urlsplit

from picron.errors import TooManyRequests, Unauthorized, ValidationError
from picron.webapp.base import template, Raw, Request, Response, html_response, redirect, render
from picron.webapp.layout import layout

if TYPE_CHECKING:  # annotations only: the context module imports this one
    from picron.webapp.context import Context

PASSWORD_SETTING = "admin_password"
# The API token is stored as it is, not hashed: `picron token` must print it again to
# whoever can read the database, and that reader could already read every task anyway.
TOKEN_SETTING = "api_token"
ADMIN_USER = "admin"
MIN_PASSWORD_LENGTH = 8
CACHE_SECONDS = 300.0  # how long a verified HTTP Basic login is remembered
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                   r=int(r), p=int(p), dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def set_password(store, password: str) -> None:
    """Store a new admin password (hashed); raises ``ValidationError`` if too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password: at least {MIN_PASSWORD_LENGTH} characters",
                              field="password")
    store.set_setting(PASSWORD_SETTING, hash_password(password))


def remove_password(store) -> bool:
    """Remove the admin password (serving is then loopback only); False if none was set."""
    return store.delete_setting(PASSWORD_SETTING)


def password_hash(store) -> str | None:
    """The stored hash, or None while no password is set."""
    return store.get_setting(PASSWORD_SETTING)


def api_token(store, *, new: bool = False) -> str:
    """The API token (SPEC §6), created on first use; ``new`` replaces it at once.

    256 random bits from ``secrets``; the server reads it on every request, so a
    replaced token stops working immediately.
    """
    token = None if new else store.get_setting(TOKEN_SETTING)
    if token is None:
        token = secrets.token_urlsafe(32)
        store.set_setting(TOKEN_SETTING, token)
    return token


def stored_token(store) -> str | None:
    """The API token if one was created; never creates one (read-only requests)."""
    return store.get_setting(TOKEN_SETTING)


def token_matches(presented: str, token: str | None) -> bool:
    """Constant-time comparison of a presented token with the stored one."""
    return token is not None and hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                     token.encode())


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def read_new_password() -> str:
    """Prompt twice on a terminal; otherwise read one line from stdin (UTF-8).

    Raises ``ValidationError(field="password")`` for input that is not valid UTF-8.
    """
    try:
        if sys.stdin.isatty():
            first = getpass.getpass("New admin password: ")
            if getpass.getpass("Repeat it: ") != first:
                raise ValidationError("password: the two entries differ", field="password")
            return first
        return sys.stdin.buffer.readline().decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValidationError("password: not valid UTF-8 text", field="password") from None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, or None."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


class PasswordChecker:
    """Verifies admin logins one at a time, on one thread; remembers HTTP Basic successes.

    One thread, not just one lock: glibc gives each thread its own malloc arena and
    keeps scrypt's freed 16 MiB there, so 40 parallel logins verified on 40 threads
    grew the server by 260 MB. Scripts using HTTP Basic send the password with every
    request; a small cache of keyed digests (a random key of this process) of verified
    (hash, user, password) triples spares a scrypt per call for ``cache_seconds``. A new
    password changes the hash: old entries stop matching. Wrong logins are never cached,
    so each costs the same scrypt; the login limits run before this check.
    """

    def __init__(self, cache_size: int = 64, cache_seconds: float = CACHE_SECONDS,
                 clock=time.monotonic) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picron-scrypt")
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}  # digest -> when it expires (clock)
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock

    def check(self, user: str, password: str, stored: str,
              admit: Callable[[], bool] = lambda: True) -> bool | None:
        """Whether ``user``/``password`` is the admin login for hash ``stored``.

        Every wrong login costs the same scrypt (the user name is checked after it).
        ``admit`` is asked again when the check's turn comes (logins queue here): None
        if it then says no, so a queue of guesses stops as soon as the limits are hit.
        """
        mark = hmac.new(self._key, f"{stored}\0{user}\0{password}".encode("utf-8", "replace"),
                        hashlib.sha256).digest()
        if self._remembered(mark):
            return True
        return self._worker.submit(self._verify, mark, user, password, stored, admit).result()

    def _remembered(self, mark: bytes) -> bool:
        return self._verified.get(mark, float("-inf")) > self._clock()

    def _verify(self, mark: bytes, user: str, password: str, stored: str,
                admit: Callable[[], bool]) -> bool | None:
        if self._remembered(mark):  # verified while this call was queued
            return True
        if not admit():
            return None
        right_user = hmac.compare_digest(user.encode("utf-8", "replace"), ADMIN_USER.encode())
        ok = verify_password(password, stored) and right_user
        if ok:
            self._verified.pop(mark, None)
            if len(self._verified) >= self._cache_size:
                self._verified.pop(next(iter(self._verified)))
            self._verified[mark] = self._clock() + self._cache_seconds
        return ok


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
    # What it logged in with (the password's hash, or a digest of the API token):
    # a new password or a new token ends the sessions opened with the old one.
    credential: str = ""


class SessionStore:
    """Logged-in sessions by id; a session dies at logout or after ``idle`` without use."""

    def __init__(self, clock: Callable[[], datetime], idle: timedelta = IDLE_TIMEOUT,
                 limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.idle = idle
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, user: str, credential: str = "") -> Session:
        """A new session with a new id and CSRF token (never reuses a presented id)."""
        session = Session(id=new_token(), user=user, csrf_token=new_token(),
                          last_seen=self.clock(), credential=credential)
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
    """Limits failed logins per client address and across all addresses (SPEC §6).

    Per address: each failure slows that address's next answers, and ``max_failures``
    failures within ``window`` block it until the oldest leaves the window. Across all
    addresses: at most ``global_max`` wrong guesses are answered within ``global_window``;
    beyond that a failing address is refused without a check, and a wrong guess is
    answered 429 instead of 401. An address that has not itself been failing still has
    its password checked, so the right password is never locked out by others. Memory
    is bounded: at most ``max_clients`` addresses.
    """

    def __init__(self, clock: Callable[[], datetime], max_failures: int = 5,
                 window: timedelta = timedelta(minutes=15), max_clients: int = 10000,
                 global_max: int = 30, global_window: timedelta = timedelta(minutes=1)) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self.global_max = global_max
        self.global_window = global_window
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._answered: deque = deque()  # when each answered wrong guess was answered
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            if len(times) >= self.max_failures:
                return _seconds(times[0] + self.window - now)
            if times and self._global_full(now):
                return _seconds(self._answered[0] + self.global_window - now)
            return 0

    def failures(self, client: str) -> int:
        """How many times ``client`` failed within the window (its slowing factor)."""
        with self._lock:
            return len(self._recent(client, self.clock()))

    def failed(self, client: str) -> bool:
        """Count a wrong guess; returns whether it may be answered as one (global budget)."""
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            if self._global_full(now):
                return False
            self._answered.append(now)
            return True

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: datetime) -> deque:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def _global_full(self, now: datetime) -> bool:
        while self._answered and now - self._answered[0] >= self.global_window:
            self._answered.popleft()
        return len(self._answered) >= self.global_max


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds()) + 1)


def token_credential(token: str) -> str:
    """What a session opened with the API token remembers of it (a digest, not the token)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()


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


_LOGIN = template("login_login.html")
_PASSWORD_FORM = template("login_password_form.html")
TOKEN_USER = "token"  # who a request authenticated by the API token acts as (audit log)


class Logins:
    """Checks passwords and tokens, runs the login page and logout; ``picron.webapp.site`` routes here.

    ``failed_login_delay`` (seconds) slows every failed login, form, token or HTTP Basic
    alike, once more for each recent failure of the same address.
    """

    def __init__(self, clock: Callable[[], datetime],
                 failed_login_delay: float = FAILED_LOGIN_DELAY) -> None:
        self.sessions = SessionStore(clock)
        self.limiter = LoginLimiter(clock)
        self.checker = PasswordChecker()
        self.failed_login_delay = failed_login_delay

    def check(self, client: str, user: str, password: str, stored: str) -> None:
        """Verify a password login; raises ``TooManyRequests`` or ``Unauthorized``."""
        self.attempt(client, lambda: self.checker.check(
            user, password, stored, admit=lambda: not self.limiter.retry_after(client)),
            "wrong user name or password")

    def attempt(self, client: str, verify: Callable[[], bool | None], wrong: str) -> None:
        """Run ``verify`` under the login limits (``LoginLimiter``).

        Every wrong login of an address gets the same answer after the same delay;
        over the global budget it is 429, like an address refused without a check.
        """
        wait = self.limiter.retry_after(client)
        if wait:
            raise TooManyRequests(f"too many failed logins; try again in {wait} seconds")
        verdict = verify()
        if verdict is None:  # the limits were reached while it waited for its turn
            raise TooManyRequests("too many failed logins; try again in a minute")
        if verdict:
            self.limiter.succeeded(client)
            return
        answered = self.limiter.failed(client)
        time.sleep(self.failed_login_delay * self.limiter.failures(client))
        if not answered:
            raise TooManyRequests("too many failed logins; try again in a minute")
        raise Unauthorized(wrong)

    def session(self, req: Request, stored: str | None, token: str | None) -> Session | None:
        """The request's live session, if it logged in with the current password or token."""
        session = self.sessions.get(req.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        valid = (stored is not None and session.credential == stored) or \
            (token is not None and session.credential == token_credential(token))
        return session if valid else None

    def start(self, req: Request, user: str, credential: str, target: str) -> Response:
        self.sessions.delete(req.cookies.get(SESSION_COOKIE))
        session = self.sessions.create(user, credential)
        response = redirect(target)
        response.cookies.append(cookie(SESSION_COOKIE, session.id))
        return response


def login_page(ctx: Context, req: Request, message: str = "", status: int = 200) -> Response:
    """GET /login: the form; ``?token=`` logs in with the API token (the printed link).

    When logged in already it goes where ``next`` points.
    """
    target = safe_next(req.arg("next") or req.field("next"))
    presented = req.arg("token")
    if presented is not None and req.method in ("GET", "HEAD") and req.user is None:
        token = stored_token(ctx.store)
        try:
            ctx.logins.attempt(req.client, lambda: token_matches(presented, token),
                          "wrong API token")
        except Unauthorized as error:
            message, status = error.message, 401
        else:
            return ctx.logins.start(req, TOKEN_USER, token_credential(token), target)
    elif req.user is not None:
        return redirect(target)
    has_password = password_hash(ctx.store) is not None
    password = render(_PASSWORD_FORM, csrf=req.csrf_token, next=target) \
        if has_password else Raw("")
    body = render(_LOGIN, password=password, next=target,
                  primary=Raw("" if has_password else ' class="primary"'),
                  message=render('<p class="form-error" role="alert">$m</p>\n', m=message)
                  if message else "")
    return html_response(layout(req, "Log in", body), status)

def login(ctx: Context, req: Request) -> Response:
    """POST /login: a new session (new id) on success, the form again with 401 if not."""
    stored = password_hash(ctx.store)
    if stored is None or req.user is not None:
        return redirect(safe_next(req.field("next")))
    try:
        ctx.logins.check(req.client, req.field("user") or "", req.field("password") or "", stored)
    except Unauthorized as error:
        return login_page(ctx, req, error.message, 401)
    return ctx.logins.start(req, ADMIN_USER, stored, safe_next(req.field("next")))


def logout(ctx: Context, req: Request) -> Response:
    """POST /logout: the session is dead at once."""
    ctx.logins.sessions.delete(req.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    response.cookies.append(cookie(SESSION_COOKIE, "", max_age=0))
    return response
