"""The web admin password: salted scrypt hashes, stored in the database."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sys

from picron.errors import ValidationError

PASSWORD_SETTING = "admin_password"
MIN_PASSWORD_LENGTH = 8
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


def password_hash(store) -> str | None:
    """The stored hash, or None while no password is set."""
    return store.get_setting(PASSWORD_SETTING)


def read_new_password() -> str:
    """Prompt twice on a terminal; otherwise read one line from stdin."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("New admin password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise ValidationError("password: the two entries differ", field="password")
        return first
    return sys.stdin.readline().rstrip("\r\n")
