"""An example picron task module: ``hello`` greets someone and counts the greetings.

It shows everything a module can use: typed options with defaults, an extra check of
the options, the run's context (clock, node, task name, database) and ``say()``.
"""
from __future__ import annotations

from picron.counters import change_counter
from picron.errors import ValidationError
from picron.modules import Option, TaskModule


class Hello(TaskModule):
    identifier = "hello"  # lowercase; users may type it in any case
    description = "Say hello, and count the greetings in an event counter."
    options = {
        "name": Option("str", "Whom to greet.", default="world"),
        "times": Option("int", "How many greetings (1-10).", default=1),
        "loud": Option("bool", "Greet in capitals.", default=False),
        "counter": Option("str", "Event counter to increase by the number of greetings "
                                 "(not set: count nothing)."),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        # Runs when a task is saved (CLI, web page, API, import) and before each run.
        if not 1 <= options["times"] <= 10:
            raise ValidationError("options: 'times' must be between 1 and 10",
                                  field="options")

    def do(self, options: dict) -> bool:
        greeting = f"hello, {options['name']}!"
        if options["loud"]:
            greeting = greeting.upper()
        for _ in range(options["times"]):
            self.say(greeting)  # each line goes to the run's message
        if options["counter"]:
            store = self.context.store()  # a connection of our own: we run in a child
            try:
                total = change_counter(store, options["counter"], options["times"])
            finally:
                store.close()
            self.say(f"{options['counter']} is now {total}")
        self.say(f"(task {self.context.task_name!r} on node {self.context.node} "
                 f"at {self.context.now():%Y-%m-%d %H:%M} UTC)")
        return True
