"""Validation of task definitions from any source: CLI flags, API bodies, import files.

``parse_task`` turns raw values into a ``TaskSpec`` or raises a ``ValidationError``
naming the field (SPEC §1); the store only ever sees validated definitions.

Secret options (SPEC §5) are masked here too, in one place each way: every output of a
task's options goes through ``mask_options``, and ``parse_task`` turns a placeholder that
is sent back into the stored value.
"""
from __future__ import annotations

import re
import unicodedata

from picron.config import check_email, check_node, check_url
from picron.errors import ValidationError
from picron.modules import Registry, TaskModule
from picron.records import TaskSpec
from picron.schedule import get_zone, validate_interval

PLACEHOLDER = "********"
# the password of a URL's user:password@ (SPEC §5: a secret wherever it appears)
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)([^/?#@]+)@")
MAX_NAME_LENGTH = 64
MAX_NODES = 100
MAX_INT = 2**31 - 1
# Fields a client may send back unchanged (e.g. PUT of a GET result); they are ignored.
READ_ONLY_FIELDS = frozenset(
    {"id", "last_update", "last_runs", "next_runs", "last_status", "failure_streak",
     "last_attempts"})
EDITABLE_FIELDS = ("name", "active", "ordering", "interval", "timezone", "nodes",
                   "taskmodule", "options", "retry_if_failed", "max_retries", "timeout",
                   "notify_url", "notify_email")


def parse_task(data: object, registry: Registry, default_nodes: tuple[str, ...],
               base: TaskSpec | None = None, current: TaskSpec | None = None) -> TaskSpec:
    """Validate ``data`` (a dict of SPEC §1 fields) into a ``TaskSpec``.

    Without ``base`` it is a complete definition: ``name``, ``interval`` and
    ``taskmodule`` are required and the rest take their defaults. With ``base`` only
    the given fields change (a partial edit); options are re-checked against the module.
    ``current`` (default ``base``) is the stored definition being replaced: an option
    sent back masked keeps its stored value. Raises ``ValidationError`` naming the
    first bad field.
    """
    if not isinstance(data, dict):
        raise ValidationError("the task must be a JSON object")
    for key in data:
        if key not in EDITABLE_FIELDS and key not in READ_ONLY_FIELDS:
            raise ValidationError(f"{key}: unknown field", field=str(key)[:64])
    if base is None:
        for key in ("name", "interval", "taskmodule"):
            if key not in data:
                raise ValidationError(f"{key}: required", field=key)
        values = {"nodes": default_nodes}
    else:
        values = dict(base.__dict__)
    given = {key: data[key] for key in EDITABLE_FIELDS if key in data}
    for key, value in given.items():
        values[key] = _CHECKS[key](value)
    module = registry.get(values["taskmodule"])
    values["taskmodule"] = module.identifier
    options = values.get("options") or {}
    current = current or base
    if current is not None and isinstance(options, dict):
        options = unmask_options(options, current.options, module)
    values["options"] = module.validate_options(options)
    return TaskSpec(**values)


def mask_value(value: str, secret: bool) -> str:
    """What may be shown of an option value: a secret as ``PLACEHOLDER``, a URL without
    its password."""
    if secret:
        return PLACEHOLDER if value else value
    return _URL_PASSWORD.sub(lambda match: f"{match[1]}{PLACEHOLDER}@", value)


def mask_options(options: dict[str, str], module: type[TaskModule] | None) -> dict[str, str]:
    """``options`` as every output shows them (API, CLI, export, page, logs)."""
    schema = module.options if module is not None else {}
    return {key: mask_value(value, key in schema and schema[key].secret)
            for key, value in options.items()}


def unmask_options(options: dict, stored: dict[str, str],
                   module: type[TaskModule]) -> dict:
    """``options`` with every value that equals the masked stored one put back as stored."""
    shown = mask_options(stored, module)
    return {key: stored[key] if key in stored and value == shown[key] else value
            for key, value in options.items()}


def task_json(task, registry: Registry, secrets: bool = False) -> dict:
    """The SPEC §1 object of a stored task, secrets masked unless ``secrets``."""
    data = task.to_json()
    if not secrets:
        data["options"] = mask_options(data["options"], module_or_none(registry, task.taskmodule))
    return data


def masked_json_texts(texts: list[str], registry: Registry) -> list[str]:
    """Task objects serialised elsewhere (the store's fast list), secrets masked.

    Only a text that may hold a secret is decoded again, so the fast path stays fast.
    """
    import json

    secret = {name for module in registry.modules.values()
              for name, option in module.options.items() if option.secret}
    keys = tuple(f'"{name}":' for name in secret)
    out = []
    for text in texts:
        if "@" in text or any(key in text for key in keys):
            data = json.loads(text)
            data["options"] = mask_options(data["options"],
                                           module_or_none(registry, data["taskmodule"]))
            text = json.dumps(data, ensure_ascii=False)
        out.append(text)
    return out


def module_or_none(registry: Registry, identifier: str) -> type[TaskModule] | None:
    """The installed module, or None for a task of a module that is not installed."""
    try:
        return registry.get(identifier)
    except ValidationError:
        return None


def check_name(value: object) -> str:
    """A task name: 1–64 characters after trimming, no control or line-break characters."""
    if not isinstance(value, str):
        raise ValidationError("name: must be a string", field="name")
    name = value.strip()
    if not name:
        raise ValidationError("name: must not be empty", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"name: longer than {MAX_NAME_LENGTH} characters", field="name")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ValidationError("name: must not contain control characters", field="name")
    return name


def _check_bool(field: str):
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{field}: must be true or false", field=field)
        return value
    return check


def _check_int(field: str, minimum: int, nullable: bool = False):
    def check(value: object) -> int | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{field}: must be an integer", field=field)
        if not minimum <= value <= MAX_INT:
            raise ValidationError(f"{field}: must be between {minimum} and {MAX_INT}",
                                  field=field)
        return value
    return check


def _check_timezone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("timezone: must be a string or null", field="timezone")
    get_zone(value)
    return value


def check_nodes(value: object) -> tuple[str, ...]:
    """Nodes as a list or a comma-separated string; non-empty, duplicates removed, order kept."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise ValidationError("nodes: must be a list of node names", field="nodes")
    if not value:
        raise ValidationError("nodes: must name at least one node", field="nodes")
    if len(value) > MAX_NODES:
        raise ValidationError(f"nodes: more than {MAX_NODES} nodes", field="nodes")
    return tuple(dict.fromkeys(check_node(node, "nodes") for node in value))


def _check_module(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("taskmodule: must be a string", field="taskmodule")
    return value


_CHECKS = {
    "name": check_name,
    "active": _check_bool("active"),
    "retry_if_failed": _check_bool("retry_if_failed"),
    "ordering": _check_int("ordering", 0),
    "max_retries": _check_int("max_retries", 0, nullable=True),
    "timeout": _check_int("timeout", 1, nullable=True),
    "interval": validate_interval,
    "timezone": _check_timezone,
    "nodes": check_nodes,
    "taskmodule": _check_module,
    "options": lambda value: value,  # checked against the module's schema below
    # SPEC §7: null is the config's destination, "" none for this task
    "notify_url": lambda value: None if value is None else check_url(value, "notify_url"),
    "notify_email": lambda value: None if value is None else check_email(value, "notify_email"),
}
