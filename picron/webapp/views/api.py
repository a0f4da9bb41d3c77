"""The JSON API of SPEC §6: handlers ``(ctx, req, **params) -> Response``.

``ctx`` is the request's ``Context`` (its ``store`` is this request's own connection).
Handlers validate everything before they change anything, so a refused request changes
nothing; errors are ``PicronError``s that ``picron.webapp.site`` turns into the SPEC §6
error body.
"""
from __future__ import annotations

import re

from picron.config import check_node
from picron.counters import change_counter
from picron.describe import describe_interval
from picron.errors import NotFound, UnsupportedMediaType, ValidationError
from picron.health import check_ticks
from picron.schedule import get_zone, parse_instant, to_db, upcoming, validate_interval
from picron.tasks import masked_json_texts, task_json
from picron.webapp.background import start_manual_run
from picron.webapp.context import Context
from picron.webapp.filters import list_filters, run_filters
from picron.webapp.base import Request, Response, json_response
from picron.webapp.metrics import render_metrics
from picron.webapp.times import exact

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger path id cannot exist
MAX_LIMIT = 1000
MAX_PREVIEW = 50


def actor(req: Request) -> str:
    """Who a request acts as, for the audit log: ``web:admin`` (password) or ``web:token`` (the API token)."""
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


def list_tasks(ctx: Context, req: Request) -> Response:
    """All tasks in run order; ``q`` (part of the name), ``module``, ``node``, ``state``
    (failing, retrying, running, inactive, active) and ``sort`` filter and order them."""
    filters = list_filters(req)
    if any(filters[key] for key in ("text", "module", "node", "state")) or \
            filters["sort"] != "order":
        texts = ctx.store.find_tasks_json(ctx.now, **filters)
    else:
        return Response(body=_all_tasks_json(ctx), content_type="application/json")
    texts = masked_json_texts(texts, ctx.registry)
    return Response(body=f"[{','.join(texts)}]".encode(), content_type="application/json")


def _all_tasks_json(ctx: Context) -> bytes:
    """Every task as JSON, built again only when the data changed (``Context.cached``)."""
    def build() -> bytes:
        texts = masked_json_texts(ctx.store.list_tasks_json(), ctx.registry)  # built by the DB
        return f"[{','.join(texts)}]".encode()

    return ctx.cached("api-tasks", (), build)


def create_task(ctx: Context, req: Request) -> Response:
    spec = ctx.parse_task(json_body(req))
    task = ctx.store.add_task(spec, ctx.clock(), actor=actor(req))
    return json_response(task_json(task, ctx.registry), 201,
                         {"Location": f"/api/tasks/{task.id}"})


def get_task(ctx: Context, req: Request, task_id: str) -> Response:
    return json_response(task_json(ctx.store.get_task(path_id(task_id)), ctx.registry))


def replace_task(ctx: Context, req: Request, task_id: str) -> Response:
    """PUT: a full definition; omitted optional fields take their defaults (read, changed
    and written in one transaction)."""
    body = json_body(req)
    return json_response(task_json(ctx.store.edit_task(
        path_id(task_id), lambda current: ctx.parse_task(body, current=current), ctx.clock(),
        actor=actor(req)), ctx.registry))


def patch_task(ctx: Context, req: Request, task_id: str) -> Response:
    """PATCH: only the given fields change (read, changed and written in one transaction)."""
    body = json_body(req)
    return json_response(task_json(ctx.store.edit_task(
        path_id(task_id), lambda base: ctx.parse_task(body, base=base), ctx.clock(),
        actor=actor(req)), ctx.registry))


def delete_task(ctx: Context, req: Request, task_id: str) -> Response:
    ctx.store.delete_task(path_id(task_id), ctx.clock(), actor=actor(req))
    return json_response(None, 204)


def enable_task(ctx: Context, req: Request, task_id: str) -> Response:
    return _set_active(ctx, req, task_id, True)


def disable_task(ctx: Context, req: Request, task_id: str) -> Response:
    return _set_active(ctx, req, task_id, False)


def _set_active(ctx: Context, req: Request, task_id: str, active: bool) -> Response:
    task = ctx.store.set_active(path_id(task_id), active, ctx.clock(), actor=actor(req))
    return json_response(task_json(task, ctx.registry))


def run_task(ctx: Context, req: Request, task_id: str) -> Response:
    """POST run: claim now (409 if already running there), execute in the background."""
    node = json_body(req, required=False).get("node")
    run = start_manual_run(ctx, path_id(task_id), None if node is None else check_node(node))
    return json_response(run.to_json(), 202, {"Location": f"/api/runs/{run.id}"})


# -- runs, modules, nodes ------------------------------------------------------------


def list_runs(ctx: Context, req: Request) -> Response:
    """The runs, newest first: ``task`` (an id), ``q`` (part of the task's name), ``status``,
    ``node``, ``trigger``, ``before`` (a run id: the next page) and ``limit`` filter them."""
    task = req.arg("task")
    task_id = None
    if task not in (None, ""):
        if not re.fullmatch(r"[0-9]{1,19}", task) or int(task) > MAX_ID:
            raise ValidationError("task: must be a task id", field="task")
        task_id = int(task)
    limit = _int_arg(req, "limit", 50, 1, MAX_LIMIT)
    filters = run_filters(req)
    filters["text"] = (req.arg("q") or "").strip()[:64]
    if task_id is not None:
        filters["task_id"] = task_id
    return json_response([run.to_json() for run in ctx.store.find_runs(limit=limit,
                                                                       **filters)])


def get_run(ctx: Context, req: Request, run_id: str) -> Response:
    return json_response(ctx.store.get_run(path_id(run_id, "run")).to_json())


def list_events(ctx: Context, req: Request) -> Response:
    """Down/up notification events (SPEC §7), newest first."""
    limit = _int_arg(req, "limit", 50, 1, MAX_LIMIT)
    return json_response([event.to_json() for event in ctx.store.list_events(limit)])


def list_modules(ctx: Context, req: Request) -> Response:
    return json_response([module.to_json() for module in ctx.registry])


def get_nodes(ctx: Context, req: Request) -> Response:
    return json_response({"local": ctx.config.node, "known": list(ctx.config.known_nodes)})


# -- counters and stats ---------------------------------------------------------------


def list_counters(ctx: Context, req: Request) -> Response:
    return json_response([{"name": name, "value": value}
                          for name, value in ctx.store.list_counters().items()])


def increment_counter(ctx: Context, req: Request, name: str) -> Response:
    """Add ``by`` (default 1, may be negative) to a counter, creating it at 0."""
    by = json_body(req, required=False).get("by", 1)  # checked by change_counter
    return json_response({"name": name, "value": change_counter(ctx.store, name, by)})


def list_stat_keys(ctx: Context, req: Request) -> Response:
    return json_response(ctx.store.stat_keys())


def get_stats(ctx: Context, req: Request, key: str) -> Response:
    if key not in ctx.store.stat_keys():
        raise NotFound(f"no stats under key {key[:64]!r}", field="key")
    start, end = (parse_instant(req.arg(name), ctx.zone, name) if req.arg(name) else None
                  for name in ("start", "end"))
    return json_response([[to_db(at), value]
                          for at, value in ctx.store.get_stats(key, start, end)])


# -- health, metrics, preview ------------------------------------------------------------


def get_health(ctx: Context, req: Request) -> Response:
    """200 while this node's cron calls ``run_scheduled``, else 503 (as ``picron check``)."""
    node = ctx.config.node
    ok, message = check_ticks(ctx.store, node, ctx.clock())
    last = ctx.store.last_tick(node)
    return json_response({"ok": ok, "node": node, "last_tick": to_db(last) if last else None,
                          "message": message}, 200 if ok else 503)


def get_metrics(ctx: Context, req: Request) -> Response:
    text = render_metrics(ctx.store, ctx.clock())
    return Response(body=text.encode("utf-8"),
                    content_type="text/plain; version=0.0.4; charset=utf-8")


def preview(ctx: Context, req: Request) -> Response:
    """The next due times of an interval being typed (the form's live preview).

    Answers ``{"interval", "timezone", "description" (plain words), "next": [UTC times],
    "local": [times in the zone, with their offsets]}``; 400 naming ``interval`` or
    ``timezone`` when invalid.
    """
    interval = validate_interval(req.arg("interval", ""))
    zone_name = req.arg("timezone") or None
    if zone_name is not None and len(zone_name) > 64:
        raise ValidationError("timezone: not a time zone", field="timezone")
    zone = get_zone(zone_name, ctx.zone)
    times = upcoming(interval, ctx.clock(), zone, _int_arg(req, "count", 5, 1, MAX_PREVIEW))
    return json_response({"interval": interval, "timezone": zone_name or str(ctx.zone),
                          "description": describe_interval(interval),
                          "next": [to_db(at) for at in times],
                          "local": [at.astimezone(zone).isoformat() for at in times],
                          "display": [exact(at, zone) for at in times]})
