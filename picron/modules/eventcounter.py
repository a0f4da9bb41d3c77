"""The ``eventcounter`` module: copy an event counter into the monitoring stats."""
from __future__ import annotations

from picron.errors import ValidationError
from picron.modules import Option, TaskModule


class EventCounter(TaskModule):
    identifier = "eventcounter"
    description = ("Write the value of an event counter to the monitoring stats, "
                   "optionally resetting the counter to 0.")
    options = {
        "event_counter": Option("str", "Name of the event counter to read.", required=True),
        "stats_key": Option("str", "Monitoring stats key to write the value under.",
                            required=True),
        "reset_event_counter": Option("bool", "Reset the counter to 0 after reading it.",
                                      default=False),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        for name in ("event_counter", "stats_key"):
            if not options[name].strip():
                raise ValidationError(f"options: {name!r} must not be empty", field="options")

    def do(self, options: dict) -> bool:
        name, key = options["event_counter"], options["stats_key"]
        store = self.context.store()
        try:
            # Read, write and reset in one transaction: no increment is lost in between.
            with store.transaction():
                value = store.get_counter(name)
                if value is not None:
                    store.add_stat(key, self.context.now(), value)
                    if options["reset_event_counter"]:
                        store.set_counter(name, 0)
        finally:
            store.close()
        if value is None:  # as privacyIDEA: a warning, no stats, still a success
            self.context.logger.warning("task %s: there is no event counter named %r",
                                        self.context.task_name, name)
            self.say(f"warning: there is no event counter named {name!r}; nothing written")
            return True
        reset = " and reset the counter" if options["reset_event_counter"] else ""
        self.say(f"wrote {name}={value} to stats key {key!r}{reset}")
        return True
