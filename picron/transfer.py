"""Export and import of task definitions as JSON (an array of SPEC §1 task objects)."""
from __future__ import annotations

import json

from picron.errors import ValidationError

MAX_IMPORT_TASKS = 10_000


def export_tasks(store) -> str:
    """All tasks in run order as a JSON array (state fields included; import ignores them)."""
    return json.dumps([task.to_json() for task in store.list_tasks()], indent=2,
                      ensure_ascii=False) + "\n"


def import_tasks(app, text: str, actor: str = "system") -> tuple[int, int]:
    """Create or update tasks matched by name; returns (created, updated).

    Everything is validated before anything changes, and all writes are one
    transaction: a bad entry changes nothing. Errors name the entry's position.
    """
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValidationError(f"import: not valid JSON: {error}") from None
    if not isinstance(entries, list):
        raise ValidationError("import: expected a JSON array of task objects")
    if len(entries) > MAX_IMPORT_TASKS:
        raise ValidationError(f"import: more than {MAX_IMPORT_TASKS} tasks")
    existing = {task.name: task for task in app.store.list_tasks()}
    plan, seen = [], set()
    for position, entry in enumerate(entries, start=1):
        try:
            if isinstance(entry, dict):
                entry = {key: value for key, value in entry.items() if key != "id"}
            spec = app.parse_task(entry)
        except ValidationError as error:
            raise ValidationError(f"import: task #{position}: {error.message}",
                                  field=error.field) from None
        if spec.name in seen:
            raise ValidationError(f"import: task #{position}: name {spec.name!r} appears twice",
                                  field="name")
        seen.add(spec.name)
        plan.append((existing.get(spec.name), spec))
    now = app.clock()
    with app.store.transaction():
        for task, spec in plan:
            if task is None:
                app.store.add_task(spec, now, actor)
            else:
                app.store.update_task(task.id, spec, now, actor)
    created = sum(1 for task, _ in plan if task is None)
    return created, len(plan) - created
