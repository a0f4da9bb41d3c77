"""The one exception hierarchy of picron.

Every error a user can see is a ``PicronError``; its class says how the web layer
(``http_status``) and the command line (``exit_code``) report it.
"""
from __future__ import annotations


class PicronError(Exception):
    """Base class: an unexpected internal problem unless a subclass says otherwise."""

    code = "internal"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict:
        """The SPEC §6 error body."""
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class ValidationError(PicronError):
    """Invalid input; ``field`` names the offending field."""

    code = "invalid"
    http_status = 400
    exit_code = 2


class NotFound(PicronError):
    code = "not_found"
    http_status = 404
    exit_code = 2


class Conflict(PicronError):
    """A unique name is already taken."""

    code = "conflict"
    http_status = 409
    exit_code = 2


class AlreadyRunning(PicronError):
    """The task is running on that node right now (SPEC §2 rule 6)."""

    code = "already_running"
    http_status = 409
    exit_code = 1


class Unauthorized(PicronError):
    code = "unauthorized"
    http_status = 401


class Forbidden(PicronError):
    code = "forbidden"
    http_status = 403


class MethodNotAllowed(PicronError):
    code = "method_not_allowed"
    http_status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow


class LengthRequired(PicronError):
    code = "length_required"
    http_status = 411


class PayloadTooLarge(PicronError):
    code = "too_large"
    http_status = 413


class UnsupportedMediaType(PicronError):
    code = "unsupported_media_type"
    http_status = 415


class TooManyRequests(PicronError):
    code = "rate_limited"
    http_status = 429


class StorageError(PicronError):
    """The database is missing, unreadable, locked for too long or too new."""

    code = "unavailable"
    http_status = 503
    exit_code = 3


class ConfigError(PicronError):
    """The configuration file or environment is unusable."""

    code = "unavailable"
    http_status = 503
    exit_code = 3


class TaskFailed(PicronError):
    """A task run did not succeed."""

    code = "task_failed"
    exit_code = 1
