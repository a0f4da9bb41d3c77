"""The web admin password: salted scrypt hashes, stored in the database, and checking it.

One scrypt costs 16 MiB and ~50 ms, so the web server verifies one password at a time
on one thread (``PasswordChecker``): parallel logins queue instead of exhausting memory.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
import time
from typing import Callable

from picron.errors import ValidationError

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
            import getpass

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
        from concurrent.futures import ThreadPoolExecutor

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
