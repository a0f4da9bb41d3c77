"""The task form: create, edit and clone a task, with option fields from the module's schema.

The form posts plain strings; ``form_data`` turns them into a SPEC §1 definition for
``App.parse_task``, so the page validates exactly as the API and the CLI do. Invalid
input re-renders the form with the entered values and every message next to its field
(``validate_form`` collects them all, not only the first). Choosing another module
without JavaScript is a "change module" submit that re-renders the form with that
module's fields.
"""
from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import available_timezones

from picron.errors import PicronError, ValidationError
from picron.records import Task, TaskSpec
from picron.schedule import get_zone, upcoming, validate_interval
from picron.tasks import mask_options, module_or_none
from picron.webapp.base import Raw, Request, Response, escape, redirect, render, template
from picron.webapp.context import Context
from picron.webapp.layout import csrf_field, page, reading
from picron.webapp.times import exact
from picron.webapp.views.api import actor

PREVIEW_COUNT = 5
TEXT_FIELDS = ("name", "interval", "timezone", "nodes", "taskmodule", "ordering",
               "max_retries", "timeout", "notify_url", "notify_email")
NOTIFY_FIELDS = ("notify_url", "notify_email")  # each with an "_off" box: "" (none)
FLAG_FIELDS = ("active", "retry_if_failed")
OPTION_PREFIX = "option."
MAX_PASSES = 20  # validate_form: each pass finds one more invalid field
_OPTION_STAND_IN = {"int": "1", "bool": "false", "str": "x"}
_LABELS = {"name": "Name", "interval": "Interval", "timezone": "Time zone", "nodes": "Nodes",
           "taskmodule": "Module", "ordering": "Order", "max_retries": "Retries before "
           "giving up", "timeout": "Timeout", "active": "Active",
           "retry_if_failed": "Retry", "options": "Options", "notify_url": "Webhook URL",
           "notify_email": "E-mail address"}

_FORM = template("task_form_form.html")
_FIELD = template("task_form_field.html")
_CHECK = template("task_form_check.html")
_REQUIRED = Raw(' <abbr class="req" title="required">*</abbr>')


def new_task(ctx: Context, req: Request) -> Response:
    """The empty form (``?taskmodule=`` picks the module whose option fields it shows)."""
    values = {"name": "", "interval": "", "timezone": "", "nodes": ctx.config.node,
              "taskmodule": req.arg("taskmodule") or _first_module(ctx), "ordering": "0",
              "max_retries": "", "timeout": "", "active": True, "retry_if_failed": True,
              "options": {}, "notify_url": "", "notify_email": "", "notify_url_off": False,
              "notify_email_off": False}
    return _form(ctx, req, values)


def clone_task(ctx: Context, req: Request, task_id: str) -> Response:
    """The new-task form filled with a copy of the task; secret options are left empty
    (their stored values are never sent to the page, so they must be entered again)."""
    task = ctx.store.get_task(int(task_id))
    values = _task_values(ctx, task)
    module = module_or_none(ctx.registry, task.taskmodule)
    secret = {key for key, option in (module.options.items() if module else ())
              if option.secret}
    values["options"] = {key: "" if key in secret else value
                         for key, value in values["options"].items()}
    values["name"] = f"{task.name} (copy)"[:64]
    return _form(ctx, req, values)


def create_task(ctx: Context, req: Request) -> Response:
    """Create the task (303 to its page), or show the form again: another module, or invalid."""
    values = form_values(req)
    if req.field("change_module"):
        return _form(ctx, req, values)
    spec, errors = validate_form(ctx, values, new=True)
    if spec is not None:
        try:
            task = ctx.store.add_task(spec, ctx.clock(), actor=actor(req))
        except PicronError as error:
            if error.http_status != 409:
                raise
            errors = {error.field or "name": error.message}
    if errors:
        return _form(ctx, req, values, errors=errors, status=_status(errors))
    return redirect(f"/tasks/{task.id}?done=created")


def _task_values(ctx: Context, task: Task) -> dict:
    values = {"name": task.name, "interval": task.interval, "timezone": task.timezone or "",
            "nodes": ", ".join(task.nodes), "taskmodule": task.taskmodule,
            "ordering": str(task.ordering), "active": task.active,
            "retry_if_failed": task.retry_if_failed,
            "max_retries": "" if task.max_retries is None else str(task.max_retries),
            "timeout": "" if task.timeout is None else str(task.timeout),
            "options": mask_options(task.options, module_or_none(ctx.registry,
                                                                task.taskmodule))}
    for key in NOTIFY_FIELDS:
        values[key], values[f"{key}_off"] = getattr(task, key) or "", getattr(task, key) == ""
    return values


def edit_task(ctx: Context, req: Request, task_id: str) -> Response:
    """The form filled with the task; without JavaScript it shows the saved next runs."""
    task = ctx.store.get_task(int(task_id))
    return _form(ctx, req, _task_values(ctx, task), task)


def save_task(ctx: Context, req: Request, task_id: str) -> Response:
    """Replace the task's definition (the whole form, as PUT does), or show the form again."""
    task = ctx.store.get_task(int(task_id))
    values = form_values(req)
    if req.field("change_module"):
        return _form(ctx, req, values, task)
    spec, errors = validate_form(ctx, values, new=False, current=task.spec)
    if spec is not None:
        try:
            task = ctx.store.update_task(task.id, spec, ctx.clock(), actor=actor(req))
        except PicronError as error:
            if error.http_status != 409:
                raise
            errors = {error.field or "name": error.message}
    if errors:
        return _form(ctx, req, values, task, errors=errors, status=_status(errors))
    return redirect(f"/tasks/{task.id}?done=saved")


def _status(errors: dict[str, str]) -> int:
    return 409 if set(errors) == {"name"} and "already" in errors["name"] else 400


def validate_form(ctx: Context, values: dict, new: bool,
                  current: TaskSpec | None = None) -> tuple[TaskSpec | None, dict[str, str]]:
    """The task the form defines, or every invalid field's message by field id.

    ``parse_task`` names the first bad field; it is asked again with that field replaced
    by a valid stand-in until it finds no more, so one submit reports them all. An
    option's message goes to that option's field (``option-KEY``).
    """
    errors: dict[str, str] = {}
    data = form_data(ctx, values, new, errors)
    stand_in = {"name": "x", "interval": "* * * * *", "timezone": None,
                "nodes": [ctx.config.node], "taskmodule": _first_module(ctx), "ordering": 0,
                "max_retries": None, "timeout": None, "active": True, "retry_if_failed": True}
    for _ in range(MAX_PASSES):
        try:
            spec = ctx.parse_task(data, current=current)
        except ValidationError as error:
            field = error.field or ""
            if field == "options":
                key = re.search(r"'([^']*)'", error.message)
                key = key[1] if key and key[1] in data.get("options", {}) else None
                if key is None or f"option-{key}" in errors:
                    errors.setdefault("options", error.message)
                    break
                errors[f"option-{key}"] = error.message
                kind = ctx.registry.get(data["taskmodule"]).options[key].type
                data["options"] = {**data["options"], key: _OPTION_STAND_IN[kind]}
            elif field in stand_in and field not in errors:
                errors[field] = error.message
                data[field] = stand_in[field]
                if field == "taskmodule":
                    data["options"] = {}
            else:
                errors[field or "form"] = error.message
                break
        else:
            return (None, errors) if errors else (spec, {})
    return None, errors


def form_values(req: Request) -> dict:
    """The posted form as the strings (and two flags) the form shows again."""
    values: dict = {key: (req.field(key) or "").strip() for key in TEXT_FIELDS}
    values.update({key: req.field(key) == "true" for key in FLAG_FIELDS})
    values.update({f"{key}_off": req.field(f"{key}_off") == "true" for key in NOTIFY_FIELDS})
    values["options"] = {key[len(OPTION_PREFIX):]: req.field(key) or ""
                         for key in req.form if key.startswith(OPTION_PREFIX)}
    return values


def form_data(ctx, values: dict, new: bool, errors: dict[str, str]) -> dict:
    """A SPEC §1 task definition from form values; blank numbers take their defaults, and
    a number field that is not a whole number adds its message to ``errors``."""
    data = {key: values[key] for key in ("name", "interval", "taskmodule")}
    data.update({key: values[key] for key in FLAG_FIELDS})
    data["timezone"] = values["timezone"] or None
    for key, blank in (("ordering", 0), ("max_retries", None), ("timeout", None)):
        try:
            data[key] = _number(values[key], key) if values[key] else blank
        except ValidationError as error:
            errors[key] = error.message
            data[key] = blank
    for key in NOTIFY_FIELDS:  # empty: the config's (null); the box: none for this task ("")
        data[key] = "" if values[f"{key}_off"] else values[key] or None
    if values["nodes"] or not new:
        data["nodes"] = [n.strip() for n in values["nodes"].split(",")] if values["nodes"] \
            else []
    schema = _schema(ctx, values["taskmodule"])
    data["options"] = {key: value for key, value in values["options"].items()
                       if value != "" and (schema is None or key in schema)}
    return data


def _number(text: str, field: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise ValidationError(f"{field}: must be a whole number", field=field)
    return int(text)


def _schema(ctx, identifier: str) -> dict | None:
    try:
        return ctx.registry.get(identifier).options
    except ValidationError:
        return None


def _first_module(ctx) -> str:
    modules = [module.identifier for module in ctx.registry]
    return "command" if "command" in modules else (modules[0] if modules else "")


def _form(ctx: Context, req: Request, values: dict, task: Task | None = None, *,
          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    errors = errors or {}

    def slot(name: str) -> Raw:
        if name not in errors:
            return Raw("")
        return render('<p class="field-error" id="error-$name">$message</p>\n',
                      name=name, message=errors[name])

    def text(name, label, hint="", required=False, kind="text", extra=""):
        control = render('<input type="$kind" id="f-$name" name="$name" value="$value"$extra>',
                         kind=kind, name=name, value=values[name], extra=Raw(extra))
        return _field(name, label, control, hint, slot(name), required)

    server_zone = str(ctx.zone)
    body = render(
        _FORM, heading=f"Edit task “{task.name}”" if task else "New task",
        action=f"/tasks/{task.id}" if task else "/tasks", csrf=csrf_field(req),
        summary=_summary(errors), count=PREVIEW_COUNT,
        submit="Save changes" if task else "Create task",
        name=text("name", "Name", "A unique name, up to 64 characters.", True,
                  extra=' maxlength="64" autocomplete="off"'),
        module=_module_field(ctx, values, slot("taskmodule")),
        options=_option_fields(ctx, values, slot("options"), slot),
        interval=_interval_field(values["interval"], slot("interval")),
        preview=_preview(ctx, values, task),
        timezone=text("timezone", "Time zone",
                      f"An IANA name such as Europe/Berlin; empty: the server's zone "
                      f"({server_zone}).", extra=f' list="zones" autocomplete="off" '
                      f'placeholder="{escape(server_zone)}" data-preview'),
        nodes=text("nodes", "Nodes", f"Comma-separated node names. This node is "
                   f"{ctx.config.node}; known: {', '.join(ctx.config.known_nodes)}.", True,
                   extra=' autocomplete="off" spellcheck="false"'),
        ordering=text("ordering", "Order", "Lower runs first; ties run in creation order.",
                      kind="number", extra=' min="0" step="1"'),
        active=_check("active", "Active (scheduled on its nodes)", values["active"], "",
                      slot("active")),
        retry=_check("retry_if_failed", "Retry a failed run at the next cron call",
                     values["retry_if_failed"], "Otherwise a failure counts as a run and the "
                     "task waits for its next slot.", slot("retry_if_failed")),
        max_retries=text("max_retries", "Retries before giving up",
                         "Empty: retry at every cron call.", kind="number",
                         extra=' min="0" step="1" placeholder="unlimited"'),
        timeout=text("timeout", "Timeout (seconds)",
                     f"Empty: the default ({ctx.config.task_timeout} s).", kind="number",
                     extra=f' min="1" step="1" placeholder="{ctx.config.task_timeout}"'),
        notify_url=text("notify_url", "Webhook URL", "Down/up events are POSTed here as JSON. "
                        "Empty: the configured default"
                        f"{' (notify_url)' if ctx.config.notify_url else ' (none set)'}.",
                        kind="url", extra=' spellcheck="false" autocomplete="off"'),
        notify_email=text("notify_email", "E-mail address", "Down/up events are mailed here. "
                          "Empty: the configured default "
                          f"({ctx.config.notify_email or 'none set'}).", kind="email",
                          extra=' spellcheck="false" autocomplete="off"'),
        notify_url_off=_check("notify_url_off", "No webhook for this task",
                              values["notify_url_off"], "", slot("notify_url_off")),
        notify_email_off=_check("notify_email_off", "No mail for this task",
                                values["notify_email_off"], "", slot("notify_email_off")),
        zones=Raw("".join(render('<option value="$name">', name=name) for name in _zones())))
    title = f"Edit {task.name}" if task else "New task"
    return page(ctx, req, title, body, status)


def _summary(errors: dict[str, str]) -> Raw:
    """The box above the form: every field to fix, each a link to it."""
    if not errors:
        return Raw("")
    items = Raw("".join(
        render('<li><a href="#f-$id">$label</a>: $message</li>', id=key,
               label=_LABELS.get(key, key.removeprefix("option-")), message=message)
        if key != "form" else render("<li>$message</li>", message=message)
        for key, message in errors.items()))
    count = len(errors)
    return render('<div class="form-error" role="alert"><p>The task was not saved: '
                  '$what.</p><ul>$items</ul></div>\n', items=items,
                  what="fix the marked field" if count == 1 else f"fix the {count} marked fields")


_INTERVAL_HINT = Raw(
    'Five crontab fields — minute hour day-of-month month weekday — or <code>@hourly</code>, '
    '<code>@daily</code>, <code>@weekly</code>, <code>@monthly</code>, <code>@yearly</code>. '
    'Examples: <code>*/15 * * * *</code>, <code>0 8 * * 1-5</code>.')


def _interval_field(interval: str, error: Raw) -> Raw:
    """The interval input with its plain-words reading (kept up to date by app.js)."""
    control = render('<input type="text" id="f-interval" name="interval" value="$value" '
                     'class="mono" spellcheck="false" autocomplete="off" data-preview>\n'
                     '<div id="interval-reading">$reading</div>', value=interval,
                     reading=_safe_reading(interval))
    return _field("interval", "Interval", control, _INTERVAL_HINT, error, True)


def _described(control: Raw, id: str, error: Raw) -> Raw:
    """The control marked invalid and described by its message, when there is one."""
    if not error:
        return control
    return Raw(control.replace(f'id="f-{id}"', f'id="f-{id}" aria-invalid="true" '
                               f'aria-describedby="error-{id}"', 1))


def _field(name: str, label: str, control: Raw, hint, error: Raw, required: bool) -> Raw:
    return render(_FIELD, id=name, label=label, control=_described(control, name, error),
                  required=_REQUIRED if required else Raw(""), error=error,
                  invalid=Raw(" invalid" if error else ""),
                  hint=render('<p class="hint">$hint</p>\n', hint=hint) if hint else Raw(""))


def _check(name: str, label: str, checked: bool, hint: str, error: Raw, id: str = "") -> Raw:
    checked = Raw(" checked" if checked else "")
    if error:
        checked = Raw(f'{checked} aria-invalid="true" aria-describedby="error-{id or name}"')
    return render(_CHECK, id=id or name, name=name, label=label, error=error,
                  checked=checked,
                  invalid=Raw(" invalid" if error else ""),
                  hint=render('<p class="hint">$hint</p>\n', hint=hint) if hint else Raw(""))


def _module_field(ctx, values: dict, error: Raw) -> Raw:
    current = values["taskmodule"]
    modules = list(ctx.registry)
    choices = [render('<option value="$id"$sel>$id</option>', id=m.identifier,
                      sel=Raw(" selected" if m.identifier == current.lower() else ""))
               for m in modules]
    if current and current.lower() not in {m.identifier for m in modules}:
        choices.insert(0, render('<option value="$id" selected>$id (not installed)</option>',
                                 id=current))
    control = render(
        '<div class="inline"><select id="f-taskmodule" name="taskmodule" data-module>$choices'
        '</select>\n<button name="change_module" value="1" class="js-hide">Show its options'
        '</button></div>', choices=Raw("".join(choices)))
    descriptions = {m.identifier: m.description for m in modules}
    return _field("taskmodule", "Module", control, descriptions.get(current.lower(), ""),
                  error, True)


def _option_fields(ctx, values: dict, error: Raw, slot) -> Raw:
    try:
        module = ctx.registry.get(values["taskmodule"])
    except ValidationError:
        return Raw('<p class="hint">Choose an installed module to see its options.</p>') + error
    given = values["options"]
    fields = []
    for key, option in module.options.items():
        name = OPTION_PREFIX + key
        value = given.get(key)
        if option.type == "bool":
            checked = value == "true" if value is not None else option.default is True
            fields.append(_check(name, key, checked, option.description,
                                 slot(f"option-{key}"), id=f"option-{key}"))
            continue
        extra = ' step="1"' if option.type == "int" else ' spellcheck="false"'
        if option.default is not None:
            extra += f' placeholder="{escape(option.default)}"'
        control = render('<input type="$kind" id="f-$id" name="$name" value="$value"$extra>',
                         kind="number" if option.type == "int" else "text",
                         id=f"option-{key}", name=name, value=value or "", extra=Raw(extra))
        hint = option.description + (f" Default: {option.default}."
                                     if option.default is not None else "")
        fields.append(_field(f"option-{key}", key, control, hint, slot(f"option-{key}"),
                             option.required))
    if not fields:
        fields.append(Raw('<p class="hint">This module has no options.</p>\n'))
    return render('<h2 class="options-title">Options of <code>$module</code></h2>\n$fields$error',
                  module=module.identifier, fields=Raw("".join(fields)), error=error)


def _preview(ctx, values: dict, task: Task | None) -> Raw:
    """The next runs of the interval in the task's zone, noting DST changes between them."""
    try:
        interval = validate_interval(values["interval"])
        zone = get_zone(values["timezone"] or None, ctx.zone)
    except ValidationError:
        return Raw('<p class="hint">Enter a valid interval to see when it runs.</p>')
    times = upcoming(interval, ctx.clock(), zone, PREVIEW_COUNT)
    items, previous = [], None
    for instant in times:
        abbreviation = instant.astimezone(zone).tzname()
        note = Raw("")
        if previous is not None and abbreviation != previous:
            note = render(' <span class="dst">clocks change: $old → $new</span>',
                          old=previous, new=abbreviation)
        items.append(render('<li><time datetime="$iso">$time</time>$note</li>',
                            iso=instant.isoformat(), time=exact(instant, zone), note=note))
        previous = abbreviation
    return render('<ol class="times">$items</ol>', items=Raw("".join(items)))


def _safe_reading(interval: str) -> Raw:
    try:
        return reading(validate_interval(interval)) if interval else Raw("")
    except ValidationError:
        return Raw("")


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    """IANA zone names for the time zone field's suggestions (reading them takes ~30 ms)."""
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))
