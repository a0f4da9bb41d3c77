"""The JSON API of SPEC §6: handlers ``(app, req, **params) -> Response`` and their ``ROUTES``.

``app`` is the per-request view built by ``picron.site`` (its ``store`` is this request's
own connection). Handlers validate everything before they change anything, so a
refused request changes nothing; errors are ``PicronError``s that ``picron.site`` turns
into the SPEC §6 error body.
"""
from __future__ import annotations

import re

from picron.config import check_node
from picron.errors import NotFound, UnsupportedMediaType, ValidationError
from picron.webcore import Request, Response, json_response

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger path id cannot exist
MAX_LIMIT = 1000
MAX_PREVIEW = 50


def actor(req: Request) -> str:
    """Who a request acts as, for the audit log: ``web:admin`` or ``web:local``."""
    return f"web:{req.user or 'anonymous'}"


def json_body(req: Request, *, required: bool = True) -> dict:
    """The request's JSON object; 415 if the body is not JSON, 400 if it is not an object."""
    if not req.body:
        if required:
            raise ValidationError("the request needs a JSON object as its body")
        return {}
    if not is_json(req):
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    if not isinstance(req.json, dict):
        raise ValidationError("the request body must be a JSON object")
    return req.json


def is_json(req: Request) -> bool:
    media_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json"


def path_id(text: str, kind: str = "task") -> int:
    """A positive integer id from the URL; anything else names nothing (404, never 500)."""
    if not re.fullmatch(r"[0-9]{1,19}", text) or not 0 < int(text) <= MAX_ID:
        raise NotFound(f"{kind} {text[:40]!r} not found", field="id")
    return int(text)


def _int_arg(req: Request, name: str, default: int, low: int, high: int) -> int:
    text = req.arg(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise ValidationError(f"{name}: must be a whole number from {low} to {high}",
                              field=name)
    return int(text)


# -- tasks ---------------------------------------------------------------------------


def list_tasks(app, req: Request) -> Response:
    texts = app.store.list_tasks_json()  # built by SQLite: 1,000 tasks in a few ms
    return Response(body=f"[{','.join(texts)}]".encode(), content_type="application/json")


def create_task(app, req: Request) -> Response:
    spec = app.parse_task(json_body(req))
    task = app.store.add_task(spec, app.clock(), actor=actor(req))
    return json_response(task.to_json(), 201, {"Location": f"/api/tasks/{task.id}"})


def get_task(app, req: Request, task_id: str) -> Response:
    return json_response(app.store.get_task(path_id(task_id)).to_json())


def replace_task(app, req: Request, task_id: str) -> Response:
    """PUT: a full definition; omitted optional fields take their defaults."""
    task = app.store.get_task(path_id(task_id))
    spec = app.parse_task(json_body(req))
    return json_response(app.store.update_task(task.id, spec, app.clock(),
                                               actor=actor(req)).to_json())


def patch_task(app, req: Request, task_id: str) -> Response:
    """PATCH: only the given fields change (read, changed and written in one transaction)."""
    body = json_body(req)
    return json_response(app.store.edit_task(
        path_id(task_id), lambda base: app.parse_task(body, base=base), app.clock(),
        actor=actor(req)).to_json())


def delete_task(app, req: Request, task_id: str) -> Response:
    app.store.delete_task(path_id(task_id), app.clock(), actor=actor(req))
    return json_response(None, 204)


def enable_task(app, req: Request, task_id: str) -> Response:
    return _set_active(app, req, task_id, True)


def disable_task(app, req: Request, task_id: str) -> Response:
    return _set_active(app, req, task_id, False)


def _set_active(app, req: Request, task_id: str, active: bool) -> Response:
    task = app.store.set_active(path_id(task_id), active, app.clock(), actor=actor(req))
    return json_response(task.to_json())


def run_task(app, req: Request, task_id: str) -> Response:
    """POST run: claim now (409 if already running there), execute in the background."""
    from picron.background import start_manual_run

    node = json_body(req, required=False).get("node")
    run = start_manual_run(app, path_id(task_id), None if node is None else check_node(node))
    return json_response(run.to_json(), 202, {"Location": f"/api/runs/{run.id}"})


# -- runs, modules, nodes ------------------------------------------------------------


def list_runs(app, req: Request) -> Response:
    task = req.arg("task")
    task_id = None
    if task not in (None, ""):
        if not re.fullmatch(r"[0-9]{1,19}", task) or int(task) > MAX_ID:
            raise ValidationError("task: must be a task id", field="task")
        task_id = int(task)
    limit = _int_arg(req, "limit", 50, 1, MAX_LIMIT)
    return json_response([run.to_json() for run in app.store.list_runs(task_id, limit)])


def get_run(app, req: Request, run_id: str) -> Response:
    return json_response(app.store.get_run(path_id(run_id, "run")).to_json())


def list_modules(app, req: Request) -> Response:
    return json_response([module.to_json() for module in app.registry])


def get_nodes(app, req: Request) -> Response:
    return json_response({"local": app.config.node, "known": list(app.config.known_nodes)})


# -- counters and stats ---------------------------------------------------------------


def list_counters(app, req: Request) -> Response:
    return json_response([{"name": name, "value": value}
                          for name, value in app.store.list_counters().items()])


def increment_counter(app, req: Request, name: str) -> Response:
    """Add ``by`` (default 1, may be negative) to a counter, creating it at 0."""
    from picron.counters import change_counter

    by = json_body(req, required=False).get("by", 1)  # checked by change_counter
    return json_response({"name": name, "value": change_counter(app.store, name, by)})


def list_stat_keys(app, req: Request) -> Response:
    return json_response(app.store.stat_keys())


def get_stats(app, req: Request, key: str) -> Response:
    from picron.schedule import parse_instant, to_db

    if key not in app.store.stat_keys():
        raise NotFound(f"no stats under key {key[:64]!r}", field="key")
    start, end = (parse_instant(req.arg(name), app.zone, name) if req.arg(name) else None
                  for name in ("start", "end"))
    return json_response([[to_db(at), value]
                          for at, value in app.store.get_stats(key, start, end)])


# -- health, metrics, preview ------------------------------------------------------------


def get_health(app, req: Request) -> Response:
    """200 while this node's cron calls ``run_scheduled``, else 503 (as ``picron check``)."""
    from picron.health import check_ticks
    from picron.schedule import to_db

    node = app.config.node
    ok, message = check_ticks(app.store, node, app.clock())
    last = app.store.last_tick(node)
    return json_response({"ok": ok, "node": node, "last_tick": to_db(last) if last else None,
                          "message": message}, 200 if ok else 503)


def get_metrics(app, req: Request) -> Response:
    from picron.metrics import render_metrics

    text = render_metrics(app.store, app.clock())
    return Response(body=text.encode("utf-8"),
                    content_type="text/plain; version=0.0.4; charset=utf-8")


def preview(app, req: Request) -> Response:
    """The next due times of an interval being typed (the form's live preview).

    Answers ``{"interval", "timezone", "description" (plain words), "next": [UTC times],
    "local": [times in the zone, with their offsets]}``; 400 naming ``interval`` or
    ``timezone`` when invalid.
    """
    from picron.describe import describe_interval
    from picron.schedule import get_zone, to_db, upcoming, validate_interval

    interval = validate_interval(req.arg("interval", ""))
    zone_name = req.arg("timezone") or None
    if zone_name is not None and len(zone_name) > 64:
        raise ValidationError("timezone: not a time zone", field="timezone")
    zone = get_zone(zone_name, app.zone)
    times = upcoming(interval, app.clock(), zone, _int_arg(req, "count", 5, 1, MAX_PREVIEW))
    return json_response({"interval": interval, "timezone": zone_name or str(app.zone),
                          "description": describe_interval(interval),
                          "next": [to_db(at) for at in times],
                          "local": [at.astimezone(zone).isoformat() for at in times]})


_TASK = r"/api/tasks/(?P<task_id>[^/]+)"
ROUTES = [
    ("GET", r"/api/tasks", list_tasks),
    ("POST", r"/api/tasks", create_task),
    ("GET", _TASK, get_task),
    ("PUT", _TASK, replace_task),
    ("PATCH", _TASK, patch_task),
    ("DELETE", _TASK, delete_task),
    ("POST", _TASK + "/enable", enable_task),
    ("POST", _TASK + "/disable", disable_task),
    ("POST", _TASK + "/run", run_task),
    ("GET", r"/api/runs", list_runs),
    ("GET", r"/api/runs/(?P<run_id>[^/]+)", get_run),
    ("GET", r"/api/modules", list_modules),
    ("GET", r"/api/nodes", get_nodes),
    ("GET", r"/api/counters", list_counters),
    ("POST", r"/api/counters/(?P<name>[^/]+)/increment", increment_counter),
    ("GET", r"/api/stats", list_stat_keys),
    ("GET", r"/api/stats/(?P<key>[^/]+)", get_stats),
    ("GET", r"/api/health", get_health),
    ("GET", r"/api/preview", preview),
    ("GET", r"/metrics", get_metrics),
]
ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in ROUTES]
