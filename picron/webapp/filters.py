"""The filters of the task list and the run history, read from a query string; the page
and the JSON API take the same parameters and give the same 400s."""
from __future__ import annotations

import re

from picron.errors import ValidationError
from picron.storage import TASK_SORTS, TASK_STATES
from picron.webapp.base import Request

RUN_STATUSES = ("running", "success", "failed", "timeout", "interrupted")
TRIGGERS = ("scheduled", "manual")


def list_filters(req: Request) -> dict[str, str]:
    """The list's filters from the query (``q``, ``module``, ``node``, ``state``, ``sort``);
    400 naming the parameter for a state or sort that does not exist."""
    state, sort = req.arg("state") or "", req.arg("sort") or "order"
    if state and state not in TASK_STATES:
        raise ValidationError(f"state: one of {', '.join(TASK_STATES)}", field="state")
    if sort.removeprefix("-") not in TASK_SORTS:
        raise ValidationError(f"sort: one of {', '.join(TASK_SORTS)} (- before it: "
                              "descending)", field="sort")
    return {"text": (req.arg("q") or "").strip()[:64], "module": req.arg("module") or "",
            "node": req.arg("node") or "", "state": state, "sort": sort}


def run_filters(req: Request) -> dict:
    """The history's filters (``task`` text, ``task_id``, ``status``, ``node``,
    ``trigger``, ``before`` a run id); 400 naming a malformed one."""
    filters: dict = {"text": (req.arg("task") or "").strip()[:64],
                     "node": (req.arg("node") or "").strip()[:64]}
    for name, allowed in (("status", RUN_STATUSES), ("trigger", TRIGGERS)):
        value = req.arg(name) or ""
        if value and value not in allowed:
            raise ValidationError(f"{name}: one of {', '.join(allowed)}", field=name)
        filters[name] = value
    for name in ("task_id", "before"):
        value = req.arg(name) or ""
        if value and not re.fullmatch(r"[0-9]{1,18}", value):
            raise ValidationError(f"{name}: must be a {'task' if name == 'task_id' else 'run'}"
                                  " id", field=name)
        filters[name] = int(value) if value else None
    return filters
