"""The ``simplestats`` module: write picron's own figures to the monitoring stats."""
from __future__ import annotations

from datetime import timedelta

from picron.modules import Option, TaskModule
from picron.records import FAILURE_STATUSES
from picron.storage import Store

FAILED_RUNS_WINDOW = timedelta(hours=24)


class SimpleStats(TaskModule):
    identifier = "simplestats"
    description = ("Write picron's own figures to the monitoring stats, each under the "
                   "name of its option.")
    options = {
        "total_tasks": Option("bool", "Number of periodic tasks.", default=False),
        "active_tasks": Option("bool", "Number of active tasks.", default=False),
        "inactive_tasks": Option("bool", "Number of inactive tasks.", default=False),
        "failed_runs": Option("bool", "Failed, timed-out or interrupted runs in the last "
                                      "24 hours.", default=False),
        "event_counters": Option("bool", "Number of event counters.", default=False),
    }

    def do(self, options: dict) -> bool:
        wanted = [name for name in self.options if options[name]]
        if not wanted:
            self.say("no statistic switched on; nothing written")
            return True
        now = self.context.now()
        store = self.context.store()
        try:
            with store.transaction():  # one consistent snapshot, one write
                values = {name: _measure(store, name, now) for name in wanted}
                for name, value in values.items():
                    store.add_stat(name, now, value)
        finally:
            store.close()
        self.say(", ".join(f"{name}={value}" for name, value in values.items()))
        return True


def _measure(store: Store, name: str, now) -> int:
    if name == "total_tasks":
        return store.count_tasks()
    if name == "active_tasks":
        return store.count_tasks(active=True)
    if name == "inactive_tasks":
        return store.count_tasks(active=False)
    if name == "failed_runs":
        return store.count_runs(now - FAILED_RUNS_WINDOW, FAILURE_STATUSES)
    return len(store.list_counters())
