"""What page and API handlers see of HTTP: ``Request``, ``Response`` and escaping templates.

Handlers are plain functions ``(ctx, req, **params) -> Response``; ``picron.web`` turns
sockets into ``Request`` objects and ``Response`` objects into bytes. The page templates
are files in ``templates/``, apart from the handlers; ``render`` escapes every value
unless it is wrapped in ``Raw`` (a fragment we built ourselves).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"


class Raw(str):
    """An HTML fragment that is already safe; ``render`` inserts it unescaped.

    ``Raw + str`` is a plain ``str``, so a slip double-escapes rather than injects.
    """


def escape(value: object) -> Raw:
    return value if isinstance(value, Raw) else Raw(html.escape(str(value), quote=True))


def render(template: str | Template, **values: object) -> Raw:
    """Fill ``$name`` placeholders, HTML-escaping every value that is not ``Raw``.

    ``string.Template`` syntax and strictness: a missing value raises ``KeyError`` instead
    of leaking ``$name``. Each template is translated once into a ``str.format`` pattern,
    which fills it in C (the task list of 1,000 tasks renders 10,000 templates).
    """
    text = template.template if isinstance(template, Template) else template
    escaped = {key: value if isinstance(value, Raw) else html.escape(str(value), quote=True)
               for key, value in values.items()}
    return Raw(_format_pattern(text).format_map(escaped))


@lru_cache(maxsize=None)
def template(name: str) -> str:
    """The text of ``templates/NAME`` (``$name`` placeholders for ``render``), read once."""
    return (TEMPLATE_DIR / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1024)
def _format_pattern(text: str) -> str:
    """``$name``/``${name}``/``$$`` of ``string.Template`` as a ``str.format`` pattern."""
    parts, position = [], 0
    for match in Template.pattern.finditer(text):
        parts.append(text[position:match.start()].replace("{", "{{").replace("}", "}}"))
        name = match.group("named") or match.group("braced")
        if name is not None:
            parts.append("{" + name + "}")
        elif match.group("escaped") is not None:
            parts.append("$")
        else:
            raise ValueError(f"invalid placeholder in template at {match.start()}")
        position = match.end()
    parts.append(text[position:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


@dataclass
class Request:
    """One HTTP request, already size-checked and decoded by the adapter."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    form: dict[str, list[str]] = field(default_factory=dict)  # parsed urlencoded body
    json: object = None  # parsed JSON body (None if none was sent)
    user: str | None = None  # "admin" (password) or "token" (the API token) once logged in
    csrf_token: str = ""  # the session's token, for forms to embed
    cookies: dict[str, str] = field(default_factory=dict)
    client: str = ""  # the client's address (failed logins are limited per client)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def field(self, name: str, default: str | None = None) -> str | None:
        """The last value of form field ``name`` (a hidden default plus a checkbox)."""
        values = self.form.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)  # Set-Cookie values


def html_response(page: str, status: int = 200) -> Response:
    return Response(status=status, body=page.encode("utf-8"))


def json_response(value: object, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8") if status != 204 else b""
    return Response(status=status, body=body, content_type="application/json",
                    headers=dict(headers or {}))


def redirect(location: str, status: int = 303) -> Response:
    """A redirect to a path of this site (never to another host)."""
    if not location.startswith("/") or location.startswith("//") or "\\" in location:
        location = "/"
    return Response(status=status, headers={"Location": location})
