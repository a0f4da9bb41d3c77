"""The ``http`` module: request a URL (a ping or a webhook) and check the status code.

Only ``http`` and ``https`` URLs are accepted, and redirects are followed only to those
schemes. Credentials in the URL (``https://user:pass@host/``) become an HTTP Basic
header that is not sent on to a redirect target, and never appear in the run's message.
"""
from __future__ import annotations

import base64
import re
import http.client
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from picron import __version__
from picron.errors import ValidationError
from picron.modules import Option, TaskModule

SCHEMES = ("http", "https")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
EXCERPT_BYTES = 512
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


class Http(TaskModule):
    identifier = "http"
    description = ("Request a URL (a ping or a webhook); success is the expected status "
                   "code, by default any 2xx.")
    options = {
        "url": Option("str", "The http:// or https:// URL (user:password@ in it is sent as "
                             "HTTP Basic authentication).", required=True),
        "method": Option("str", "HTTP method: " + ", ".join(METHODS) + ".", default="GET"),
        "expect_status": Option("int", "The status code that means success "
                                       "(default: any 2xx)."),
        "body": Option("str", "The request body to send (a webhook's payload)."),
        "content_type": Option("str", "The body's Content-Type (default: application/json "
                                      "when there is a body)."),
        "headers": Option("str", "Extra request headers, one 'Name: value' per line "
                                 "(secret: never shown back).", secret=True),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        split_url(options["url"])
        if options["method"].upper() not in METHODS:
            raise ValidationError(f"options: 'method' must be one of {', '.join(METHODS)}",
                                  field="options")
        status = options["expect_status"]
        if status is not None and not 100 <= status <= 599:
            raise ValidationError("options: 'expect_status' must be an HTTP status code "
                                  "(100-599)", field="options")
        parse_headers(options["headers"] or "")
        if any(not ch.isprintable() for ch in options["content_type"] or ""):
            raise ValidationError("options: 'content_type' must not contain control "
                                  "characters", field="options")

    def do(self, options: dict) -> bool:
        url, authorization = split_url(options["url"])
        method = options["method"].upper()
        expected = options["expect_status"]
        body = options["body"]
        headers = {"User-Agent": f"picron/{__version__}"}
        if body:
            headers["Content-Type"] = options["content_type"] or "application/json"
        headers.update(parse_headers(options["headers"] or ""))
        data = body.encode("utf-8") if body else b"" if method in ("POST", "PUT", "PATCH") \
            else None
        request = urllib.request.Request(url, method=method, headers=headers, data=data)
        if authorization:
            request.add_unredirected_header("Authorization", authorization)
        # Expecting a 3xx means checking the redirect itself, so don't follow it.
        follow = expected is None or not 300 <= expected <= 399
        opener = urllib.request.build_opener(_Redirects(follow))
        where = f"{method} {url}"
        try:
            with opener.open(request, timeout=self.context.timeout) as response:
                status, reason = response.status, response.reason
                body = "" if _ok(status, expected) else _excerpt(response)
        except urllib.error.HTTPError as error:  # a status urllib treats as an error
            with error:
                status, reason = error.code, error.reason
                body = "" if _ok(status, expected) else _excerpt(error)
        except urllib.error.URLError as error:
            self.say(f"{where}: cannot connect: {_describe(error.reason)}")
            return False
        except (OSError, http.client.HTTPException) as error:
            self.say(f"{where}: {_describe(error)}")
            return False
        if _ok(status, expected):
            self.say(f"{where}: HTTP {status} {reason}")
            return True
        wanted = expected if expected is not None else "2xx"
        self.say(f"{where}: HTTP {status} {reason} (expected {wanted})")
        if body:
            self.say(body)
        return False


def parse_headers(text: str) -> dict[str, str]:
    """The ``headers`` option's ``Name: value`` lines as a dict; blank lines are skipped.

    Raises ``ValidationError`` (without echoing the secret value) for a malformed line.
    """
    headers = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name.strip()) \
                or any(not ch.isprintable() for ch in value):
            raise ValidationError(f"options: 'headers' line {number} is not 'Name: value'",
                                  field="options")
        headers[name.strip()] = value.strip()
    return headers


def split_url(url: str) -> tuple[str, str | None]:
    """The URL without credentials, and a Basic ``Authorization`` value if it had some.

    Raises ``ValidationError`` unless ``url`` is an http(s) URL with a host.
    """
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValidationError("options: 'url' must not contain spaces or control characters",
                              field="options")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValidationError("options: 'url' has an invalid port", field="options") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ValidationError("options: 'url' must be an http:// or https:// URL with a host",
                              field="options")
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs, or none at all."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not self.follow:
            return None
        if urlsplit(newurl).scheme.lower() not in SCHEMES:
            # worded as urllib's own refusal of file: and other schemes
            raise urllib.error.HTTPError(newurl, code, f"{msg} - Redirection to url "
                                                       f"'{newurl}' is not allowed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _ok(status: int, expected: int | None) -> bool:
    return status == expected if expected is not None else 200 <= status <= 299


def _excerpt(response) -> str:
    try:
        data = response.read(EXCERPT_BYTES)
    except (OSError, http.client.HTTPException):
        return ""
    return data.decode("utf-8", "replace").strip()


def _describe(reason: object) -> str:
    if isinstance(reason, TimeoutError) or str(reason) == "timed out":
        return "timed out"
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
