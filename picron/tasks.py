"""Validation of task definitions from any source: CLI flags, API bodies, import files.

``parse_task`` turns raw values into a ``TaskSpec`` or raises a ``ValidationError``
naming the field (SPEC §1); the store only ever sees validated definitions.
"""
from __future__ import annotations

import unicodedata

from picron.config import check_node
from picron.errors import ValidationError
from picron.modules import Registry
from picron.records import TaskSpec
from picron.schedule import get_zone, validate_interval

MAX_NAME_LENGTH = 64
MAX_NODES = 100
MAX_INT = 2**31 - 1
# Fields a client may send back unchanged (e.g. PUT of a GET result); they are ignored.
READ_ONLY_FIELDS = frozenset(
    {"id", "last_update", "last_runs", "next_runs", "last_status", "failure_streak",
     "last_attempts", "notify_url", "notify_email"})
EDITABLE_FIELDS = ("name", "active", "ordering", "interval", "timezone", "nodes",
                   "taskmodule", "options", "retry_if_failed", "max_retries", "timeout")


def parse_task(data: object, registry: Registry, default_nodes: tuple[str, ...],
               base: TaskSpec | None = None) -> TaskSpec:
    """Validate ``data`` (a dict of SPEC §1 fields) into a ``TaskSpec``.

    Without ``base`` it is a complete definition: ``name``, ``interval`` and
    ``taskmodule`` are required and the rest take their defaults. With ``base`` only
    the given fields change (a partial edit); options are re-checked against the module.
    Raises ``ValidationError`` naming the first bad field.
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
    values["options"] = module.validate_options(values.get("options") or {})
    return TaskSpec(**values)


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
}
