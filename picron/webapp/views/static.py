"""The files of ``picron/static`` (style sheet, script, icon): public, no login needed."""
from __future__ import annotations

from pathlib import Path

from picron.errors import NotFound
from picron.webapp.base import Request, Response

STATIC_DIR = Path(__file__).parent.parent.parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
                ".txt": "text/plain; charset=utf-8"}


def static_file(ctx, req: Request, name: str) -> Response:
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
