"""Export and import of task definitions (SPEC §4 ``export``/``import``).

picron's own format is a JSON array of SPEC §1 task objects. ``import`` also reads
privacyIDEA's periodic tasks as privacyIDEA writes them: the answer of its
``GET /periodictask/`` endpoint (``{"result": {"value": [...]}}`` or that array alone) and
the ``periodictask`` list of ``pi-manage config export``. Their ``last_runs`` are kept, so a
task moved from privacyIDEA neither runs early nor runs its current slot a second time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from picron.config import check_node
from picron.errors import ValidationError
from picron.files import private_temporary
from picron.schedule import parse_instant
from picron.tasks import EDITABLE_FIELDS, READ_ONLY_FIELDS, task_json

MAX_IMPORT_TASKS = 10_000
# The keys of privacyIDEA's PeriodicTask.get() (privacyidea/models/periodictask.py).
PRIVACYIDEA_FIELDS = frozenset({"id", "name", "active", "interval", "nodes", "taskmodule",
                                "retry_if_failed", "last_update", "ordering", "options",
                                "last_runs"})
# Fields only picron writes: an array entry holding one of them is picron's own.
_PICRON_ONLY_FIELDS = (frozenset(EDITABLE_FIELDS) | READ_ONLY_FIELDS) - PRIVACYIDEA_FIELDS


@dataclass(frozen=True)
class ImportSummary:
    """How many entries of an import created, updated or left a task unchanged."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        total = self.created + self.updated + self.unchanged
        return (f"imported {total} tasks ({self.created} created, {self.updated} updated, "
                f"{self.unchanged} unchanged)")


def export_tasks(app, secrets: bool = False) -> str:
    """All tasks in run order as a JSON array (state fields included; import ignores them).

    Secret options are masked unless ``secrets`` (``export --secrets``).
    """
    return json.dumps([task_json(task, app.registry, secrets) for task in app.store.list_tasks()],
                      indent=2, ensure_ascii=False) + "\n"


def write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` as a file that is mode 0600 from the moment it exists.

    The text goes to a new temporary file beside ``path`` (created 0600, exclusively), which
    is then renamed over ``path``: a reader never sees a partial file, nor a file that others
    may read. Raises ``OSError``.
    """
    fd, temporary = private_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def import_tasks(app, text: str, actor: str = "system") -> ImportSummary:
    """Create or update tasks matched by name, from picron's or privacyIDEA's JSON.

    Everything is validated before anything changes, and all writes are one transaction:
    a bad entry changes nothing; errors name the entry's position (and name). An entry
    identical to the stored task is left alone: no write, no ``last_update``, no audit
    entry. privacyIDEA's ``last_runs`` become the task's last runs on its nodes, but never
    move a stored last run backwards (that would run a slot twice).
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValidationError(f"import: not valid JSON: {error}") from None
    entries, from_privacyidea = _entries(document)
    if len(entries) > MAX_IMPORT_TASKS:
        raise ValidationError(f"import: more than {MAX_IMPORT_TASKS} tasks")
    # read for masked secrets only (an export without --secrets keeps the stored value);
    # _apply reads the tasks again inside its write transaction
    existing = {task.name: task for task in app.store.list_tasks()}
    plan, seen = [], set()
    for position, entry in enumerate(entries, start=1):
        where = f"import: task #{position}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where += f" ({entry['name'].strip()[:64]!r})"
        try:
            spec, last_runs = _parse_entry(app, entry, from_privacyidea, existing)
        except ValidationError as error:
            raise ValidationError(f"{where}: {error.message}", field=error.field) from None
        if spec.name in seen:
            raise ValidationError(f"{where}: name {spec.name!r} appears twice", field="name")
        seen.add(spec.name)
        plan.append((spec, last_runs))
    return _apply(app, plan, actor)


def _entries(document: object) -> tuple[list, bool]:
    """The entries of an import document, and whether they come from privacyIDEA."""
    if isinstance(document, dict):
        if "result" in document:  # the whole answer of GET /periodictask/
            result = document["result"]
            if isinstance(result, dict) and result.get("status") is False:
                error = result.get("error") or {}
                message = error.get("message") if isinstance(error, dict) else error
                raise ValidationError(f"import: the privacyIDEA answer is an error: {message}")
            entries = result.get("value") if isinstance(result, dict) else None
            if not isinstance(entries, list):
                raise ValidationError("import: result.value of the privacyIDEA answer is not "
                                      "a list of periodic tasks")
            return entries, True
        if "periodictask" in document:  # pi-manage config export
            entries = document["periodictask"]
            if not isinstance(entries, list):
                raise ValidationError("import: periodictask of the privacyIDEA export is not "
                                      "a list")
            return entries, True
        raise ValidationError("import: expected a JSON array of task objects, privacyIDEA's "
                              "GET /periodictask/ answer, or its configuration export")
    if not isinstance(document, list):
        raise ValidationError("import: expected a JSON array of task objects")
    return document, bool(document) and all(map(_privacyidea_shaped, document))


def _privacyidea_shaped(entry: object) -> bool:
    """Whether an array entry is privacyIDEA's (``result.value`` saved alone), not picron's."""
    return (isinstance(entry, dict) and "last_runs" in entry and "last_update" in entry
            and not _PICRON_ONLY_FIELDS.intersection(entry))


def _parse_entry(app, entry: object, from_privacyidea: bool, existing: dict):
    """A validated ``TaskSpec`` and the last runs to keep (privacyIDEA's only)."""
    if not isinstance(entry, dict):
        raise ValidationError("must be a JSON object")
    if from_privacyidea:
        unknown = sorted(set(entry) - PRIVACYIDEA_FIELDS)
        if unknown:
            raise ValidationError(f"{unknown[0]}: not a field of privacyIDEA's periodic tasks",
                                  field=str(unknown[0])[:64])
    stored = existing.get(str(entry.get("name", "")).strip())
    spec = app.parse_task({key: value for key, value in entry.items() if key != "id"},
                          current=stored.spec if stored else None)
    if not from_privacyidea:
        return spec, {}
    return spec, _last_runs(entry.get("last_runs"), spec.nodes)


def _last_runs(value: object, nodes: tuple[str, ...]) -> dict[str, datetime]:
    """privacyIDEA's ``last_runs`` (node → time, UTC) for the task's own nodes.

    Its API writes ``2026-01-01 08:00:00.123456+0000``, a YAML export ``2026-01-01
    08:00:00+00:00``; any ISO 8601 time is read, one without offset as UTC (privacyIDEA
    stores UTC). Runs on nodes the task is not assigned to schedule nothing and are dropped.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("last_runs: must be an object of node: time", field="last_runs")
    runs = {}
    for node, text in value.items():
        check_node(node, "last_runs")
        if not isinstance(text, str):
            raise ValidationError(f"last_runs: the time of node {node} must be a string",
                                  field="last_runs")
        at = parse_instant(text, UTC, "last_runs").replace(microsecond=0)
        if node in nodes:
            runs[node] = at
    return runs


def _apply(app, plan: list, actor: str) -> ImportSummary:
    """Write the validated plan in one transaction; the stored tasks are read inside it."""
    now = app.clock()
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    store = app.store
    with store.transaction():
        existing = {task.name: task for task in store.list_tasks()}
        for spec, last_runs in plan:
            task = existing.get(spec.name)
            kind = "created" if task is None else "unchanged" if task.spec == spec else "updated"
            if kind == "created":
                task = store.add_task(spec, now, actor)
            elif kind == "updated":
                task = store.update_task(task.id, spec, now, actor)
            newer = {node: at for node, at in last_runs.items()
                     if node not in task.last_runs or at > task.last_runs[node]}
            for node, at in newer.items():
                store.set_last_run(task.id, node, at)
            if newer and kind == "unchanged":
                kind = "updated"
            counts[kind] += 1
    return ImportSummary(**counts)
