"""The OpenAPI 3.1 description of the JSON API (SPEC §6), served at ``/api/openapi.json``.

Built from the tables below, next to the routes of ``picron.webapp.views.api``: one entry per route
with its parameters, request body, success and error answers. ``tests/test_openapi.py``
checks the document against the OpenAPI schema and against the router, both ways.
"""
from __future__ import annotations

import json

from picron import __version__
from picron.errors import PicronError
from picron.storage import TASK_SORTS, TASK_STATES
from picron.webapp.filters import RUN_STATUSES, TRIGGERS
from picron.webapp.login import SESSION_COOKIE
from picron.webapp.base import Request, Response

_TIME = {"type": "string", "format": "date-time",
         "description": "ISO 8601 in UTC with an explicit offset"}
_NODE = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
_PER_NODE_TIME = {"type": "object", "additionalProperties": _TIME}
_NULLABLE_INT = {"type": ["integer", "null"]}
_OPTION_VALUE = {"type": ["string", "number", "boolean"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(name: str) -> dict:
    return {"type": "array", "items": _ref(name)}


def _task_fields(*, sent: bool) -> dict:
    """The SPEC §1 definition fields: as a client sends them, or as picron answers them."""
    return {
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "active": {"type": "boolean", "default": True},
        "ordering": {"type": "integer", "minimum": 0, "default": 0},
        "interval": {"type": "string", "examples": ["*/30 * * * *", "@daily"]},
        "timezone": {"type": ["string", "null"], "description": "IANA name; null: the "
                     "server's time zone"},
        "nodes": ({"oneOf": [{"type": "array", "items": _NODE, "minItems": 1},
                             {"type": "string", "description": "comma-separated"}]}
                  if sent else {"type": "array", "items": _NODE}),
        "taskmodule": {"type": "string", "description": "any case on input"},
        "options": {"type": "object",
                    "additionalProperties": _OPTION_VALUE if sent else {"type": "string"}},
        "retry_if_failed": {"type": "boolean", "default": True},
        "max_retries": {**_NULLABLE_INT, "minimum": 0},
        "timeout": {**_NULLABLE_INT, "minimum": 1, "description": "seconds; null: config "
                    "task_timeout"},
        "notify_url": {"type": ["string", "null"]},
        "notify_email": {"type": ["string", "null"]},
    }


SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["invalid", "not_found"]},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the invalid field, if one"}}}},
    },
    "TaskInput": {
        "type": "object", "required": ["name", "interval", "taskmodule"],
        "properties": _task_fields(sent=True),
        "description": "A full definition (POST, PUT); the state fields of a Task that a "
                       "client sends back are ignored.",
    },
    "TaskPatch": {
        "type": "object", "properties": _task_fields(sent=True),
        "description": "Only the given fields change.",
    },
    "Task": {
        "type": "object",
        "required": ["id", "name", "active", "ordering", "interval", "timezone", "nodes",
                     "taskmodule", "options", "retry_if_failed", "max_retries", "timeout",
                     "last_update", "last_runs", "next_runs", "last_status", "failure_streak"],
        "properties": {
            "id": {"type": "integer"}, **_task_fields(sent=False),
            "last_update": _TIME, "last_runs": _PER_NODE_TIME, "next_runs": _PER_NODE_TIME,
            "last_attempts": _PER_NODE_TIME,
            "last_status": {"type": "object", "additionalProperties": {"type": "string"}},
            "failure_streak": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "task_id", "task", "node", "trigger", "status", "start", "end",
                     "duration", "message"],
        "properties": {
            "id": {"type": "integer"}, "task_id": _NULLABLE_INT, "task": {"type": "string"},
            "node": _NODE, "trigger": {"enum": ["scheduled", "manual"]},
            "status": {"enum": ["running", "success", "failed", "timeout", "interrupted"]},
            "start": _TIME, "end": {"type": ["string", "null"], "format": "date-time"},
            "duration": {"type": ["number", "null"], "description": "seconds"},
            "message": {"type": "string", "description": "at most 4 KiB"}},
    },
    "Module": {
        "type": "object", "required": ["identifier", "description", "options"],
        "properties": {
            "identifier": {"type": "string"}, "description": {"type": "string"},
            "options": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["type", "description", "required"],
                "properties": {"type": {"enum": ["bool", "int", "str"]},
                               "description": {"type": "string"},
                               "required": {"type": "boolean"},
                               "default": {"type": ["boolean", "integer", "string", "null"]},
                               "secret": {"type": "boolean"}}}}},
    },
    "Nodes": {
        "type": "object", "required": ["local", "known"],
        "properties": {"local": _NODE, "known": {"type": "array", "items": _NODE}},
    },
    "Counter": {
        "type": "object", "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "integer"}},
    },
    "Health": {
        "type": "object", "required": ["ok", "node", "last_tick"],
        "properties": {"ok": {"type": "boolean"}, "node": _NODE,
                       "last_tick": {"type": ["string", "null"], "format": "date-time"},
                       "message": {"type": "string"}},
    },
    "Event": {
        "type": "object",
        "required": ["time", "event", "task", "task_id", "node", "run_id", "delivered"],
        "properties": {"time": _TIME, "event": {"enum": ["down", "up"]},
                       "task": {"type": "string"}, "task_id": _NULLABLE_INT, "node": _NODE,
                       "run_id": _NULLABLE_INT, "delivered": {}},
    },
    "Preview": {
        "type": "object",
        "required": ["interval", "timezone", "description", "next", "local", "display"],
        "properties": {"interval": {"type": "string"}, "timezone": {"type": "string"},
                       "description": {"type": "string"},
                       "next": {"type": "array", "items": _TIME},
                       "local": {"type": "array", "items": {"type": "string"}},
                       "display": {"type": "array", "items": {"type": "string"},
                                   "description": "the times as the page shows them, the "
                                                  "zone named as the server names it "
                                                  "(`2026-03-29 03:00 CEST`)"}},
    },
}

# SPEC §6 error statuses, each answered with the Error body.
ERRORS = {
    400: "invalid input (or a Host header this server does not answer to); `field` names it",
    401: "not authenticated: send `Authorization: Bearer TOKEN`, HTTP Basic or the session "
         "cookie",
    403: "refused (a cross-site request, a missing CSRF token)",
    404: "no such task, run, module or stats key",
    405: "method not allowed here (the `Allow` header lists the allowed ones)",
    409: "conflict: the name is taken, or the task is already running on that node",
    413: "the body is over 1 MiB",
    414: "the URL is too long",
    415: "the body is not JSON (`Content-Type: application/json`)",
    429: "too many failed logins",
    503: "the database is unavailable",
}
_ALWAYS = (400, 401, 503)  # Host check, authentication, database: any route
_BODY = (413, 415)
_STATE_CHANGING = (403,)  # cross-site requests and missing CSRF tokens


def _param(name: str, where: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema,
            "description": description}


_TASK_ID = _param("task_id", "path", {"type": "integer", "minimum": 1}, "the task's id")
_RUN_ID = _param("run_id", "path", {"type": "integer", "minimum": 1}, "the run's id")


def _limit(default: int, maximum: int) -> dict:
    return _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum,
                                     "default": default}, "how many, newest first")


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _op(method: str, path: str, summary: str, status: int, schema: dict | None, *,
        body: dict | None = None, required_body: bool = True, params: tuple = (),
        errors: tuple = (), content: dict | None = None,
        headers: dict | None = None) -> tuple[tuple[str, str], dict]:
    """One operation: its success answer, request body and the errors it may give."""
    success = {"description": summary}
    if schema is not None or content is not None:
        success["content"] = content or _json(schema)
    if headers:
        success["headers"] = headers
    codes = sorted({*_ALWAYS, *errors, *(_BODY if body is not None else ()),
                    *(_STATE_CHANGING if method != "GET" else ())})
    operation = {"summary": summary,
                 "responses": {str(status): success,
                               **{str(code): {"$ref": f"#/components/responses/E{code}"}
                                  for code in codes},
                               "default": {"$ref": "#/components/responses/Error"}}}
    if body is not None:
        operation["requestBody"] = {"required": required_body, "content": _json(body)}
    if params:
        operation["parameters"] = list(params)
    return (method, path), operation


_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the new resource"}}

# (method, path template) -> operation; the patterns in picron.webapp.routes must match.
OPERATIONS = dict([
    _op("GET", "/api/tasks", "All tasks in run order, or those that match the filters",
        200, _array("Task"), params=(
            _param("q", "query", {"type": "string"}, "part of the name (case-insensitive)"),
            _param("module", "query", {"type": "string"}, "only tasks of this module"),
            _param("node", "query", _NODE, "only tasks assigned to this node"),
            _param("state", "query", {"enum": list(TASK_STATES)},
                   "failing (a failure streak on a node), retrying (active, failed and due "
                   "again), running (a run in progress), inactive, active"),
            _param("sort", "query", {"enum": [*TASK_SORTS, *(f"-{k}" for k in TASK_SORTS)]},
                   "the order (default: run order); - before it: descending"))),
    _op("POST", "/api/tasks", "Create a task", 201, _ref("Task"), body=_ref("TaskInput"),
        errors=(409,), headers=_LOCATION),
    _op("GET", "/api/tasks/{task_id}", "One task", 200, _ref("Task"), params=(_TASK_ID,),
        errors=(404,)),
    _op("PUT", "/api/tasks/{task_id}",
        "Replace a task's definition (omitted optional fields take their defaults)", 200,
        _ref("Task"), body=_ref("TaskInput"), params=(_TASK_ID,), errors=(404, 409)),
    _op("PATCH", "/api/tasks/{task_id}", "Change the given fields of a task", 200,
        _ref("Task"), body=_ref("TaskPatch"), params=(_TASK_ID,), errors=(404, 409)),
    _op("DELETE", "/api/tasks/{task_id}", "Delete a task (its run history is kept)", 204,
        None, params=(_TASK_ID,), errors=(404,)),
    _op("POST", "/api/tasks/{task_id}/enable", "Make a task active", 200, _ref("Task"),
        params=(_TASK_ID,), errors=(404,)),
    _op("POST", "/api/tasks/{task_id}/disable", "Make a task inactive", 200, _ref("Task"),
        params=(_TASK_ID,), errors=(404,)),
    _op("POST", "/api/tasks/{task_id}/run",
        "Run a task now, in the background (SPEC §2 rule 7); without `node`: on this "
        "server's node if the task is assigned to it, else on the task's first node", 202,
        _ref("Run"),
        body={"type": "object", "properties": {"node": _NODE}}, required_body=False,
        params=(_TASK_ID,), errors=(404, 409), headers=_LOCATION),
    _op("GET", "/api/runs", "The run history, newest first", 200, _array("Run"),
        params=(
            _param("task", "query", {"type": "integer", "minimum": 1}, "only runs of this task"),
            _param("q", "query", {"type": "string"}, "part of the task's name"),
            _param("status", "query", {"enum": list(RUN_STATUSES)}, "only runs with this status"),
            _param("node", "query", _NODE, "only runs on this node"),
            _param("trigger", "query", {"enum": list(TRIGGERS)}, "only scheduled or manual runs"),
            _param("before", "query", {"type": "integer", "minimum": 1},
                   "only runs older than this run id (the next page)"),
            _limit(50, 1000))),
    _op("GET", "/api/runs/{run_id}", "One run", 200, _ref("Run"), params=(_RUN_ID,),
        errors=(404,)),
    _op("GET", "/api/modules", "The task modules and their option schemas", 200,
        _array("Module")),
    _op("GET", "/api/nodes", "The local node and the known nodes", 200, _ref("Nodes")),
    _op("GET", "/api/counters", "All event counters", 200, _array("Counter")),
    _op("POST", "/api/counters/{name}/increment",
        "Add `by` (default 1, may be negative) to a counter, creating it at 0", 200,
        _ref("Counter"), body={"type": "object", "properties": {"by": {"type": "integer"}}},
        required_body=False,
        params=(_param("name", "path", {"type": "string"}, "the counter's name"),)),
    _op("GET", "/api/stats", "The monitoring stats keys", 200,
        {"type": "array", "items": {"type": "string"}}),
    _op("GET", "/api/stats/{key}", "The values of one stats key", 200,
        {"type": "array", "items": {"type": "array", "prefixItems": [_TIME, {"type": "integer"}],
                                    "minItems": 2, "maxItems": 2}},
        params=(_param("key", "path", {"type": "string"}, "the stats key"),
                _param("start", "query", _TIME, "from this time"),
                _param("end", "query", _TIME, "until this time")),
        errors=(404,)),
    _op("GET", "/api/health", "Whether this node's cron calls run_scheduled (503 with ok "
        "false when `picron check` would fail)", 200, _ref("Health")),
    _op("GET", "/api/events", "Down/up notifications (SPEC §7), newest first", 200,
        _array("Event"), params=(_limit(50, 1000),)),
    _op("GET", "/api/preview", "The next due times of an interval (the form's live preview)",
        200, _ref("Preview"),
        params=(_param("interval", "query", {"type": "string"}, "a crontab expression"),
                _param("timezone", "query", {"type": "string"}, "IANA name"),
                _param("count", "query", {"type": "integer", "minimum": 1, "maximum": 50},
                       "how many times"))),
    _op("GET", "/metrics", "Prometheus metrics", 200, None,
        content={"text/plain": {"schema": {"type": "string"}}}),
    _op("GET", "/api/openapi.json", "This document", 200,
        {"type": "object", "description": "OpenAPI 3.1"}),
])


def build_document() -> dict:
    """The OpenAPI 3.1 document of every API route (a new dict each call)."""
    paths: dict[str, dict] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation
    responses = {f"E{code}": {"description": text, "content": _json(_ref("Error"))}
                 for code, text in ERRORS.items()}
    responses["Error"] = {"description": "any other error (SPEC §6 error body)",
                          "content": _json(_ref("Error"))}
    schemas = json.loads(json.dumps(SCHEMAS))
    codes = sorted({cls.code for cls in _error_classes()})
    schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"] = codes
    return {
        "openapi": "3.1.0",
        "info": {"title": "picron", "version": __version__,
                 "description": "Periodic tasks for small deployments: the JSON API "
                                "(request and response bodies application/json)."},
        "security": [{"bearer": []}, {"basic": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the API token (`picron token`)"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "user admin and the password of `picron passwd`"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            },
        },
    }


def _error_classes():
    stack = [PicronError]
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(cls.__subclasses__())


def get_document(ctx, req: Request) -> Response:
    """``GET /api/openapi.json``."""
    return Response(body=json.dumps(build_document(), ensure_ascii=False).encode("utf-8"),
                    content_type="application/json")
