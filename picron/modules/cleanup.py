"""The ``cleanup`` module: delete old monitoring stats and run history."""
from __future__ import annotations

from datetime import timedelta

from picron.errors import ValidationError
from picron.modules import Option, TaskModule

MAX_DAYS = 36_500  # a century; more would overflow the date arithmetic


class Cleanup(TaskModule):
    identifier = "cleanup"
    description = "Delete monitoring stats and run history older than a number of days."
    options = {
        "stats_older_than_days": Option("int", "Delete monitoring stats older than this "
                                               "many days (not set: keep all)."),
        "runs_older_than_days": Option("int", "Delete finished runs that started more than "
                                              "this many days ago (not set: keep all)."),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        if all(options[name] is None for name in cls.options):
            raise ValidationError("options: module cleanup needs stats_older_than_days or "
                                  "runs_older_than_days", field="options")
        for name in cls.options:
            if options[name] is not None and not 0 <= options[name] <= MAX_DAYS:
                raise ValidationError(f"options: {name!r} must be between 0 and {MAX_DAYS}",
                                      field="options")

    def do(self, options: dict) -> bool:
        now = self.context.now()
        store = self.context.store()
        try:
            if options["stats_older_than_days"] is not None:
                days = options["stats_older_than_days"]
                deleted = store.delete_stats(before=now - timedelta(days=days))
                self.say(f"deleted {deleted} monitoring stats older than {days} days")
            if options["runs_older_than_days"] is not None:
                days = options["runs_older_than_days"]
                deleted = store.delete_runs_before(now - timedelta(days=days))
                self.say(f"deleted {deleted} runs older than {days} days")
        finally:
            store.close()
        return True
