"""The ``command`` module: run a program (split like a shell would, run without a shell)."""
from __future__ import annotations

import shlex
import subprocess

from picron.modules import Option, TaskModule


class Command(TaskModule):
    identifier = "command"
    description = "Run a command without a shell; success is exit status 0, output is kept."
    options = {
        "command": Option("str", "The command line, split like a shell would "
                                 "(no pipes, redirections or variables).", required=True),
        "workdir": Option("str", "Directory to run it in (default: picron's working directory)."),
    }

    def do(self, options: dict) -> bool:
        try:
            argv = shlex.split(options["command"])
        except ValueError as error:
            self.say(f"cannot split the command: {error}")
            return False
        if not argv:
            self.say("the command is empty")
            return False
        try:
            done = subprocess.run(argv, cwd=options.get("workdir") or None,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, check=False)
        except OSError as error:
            self.say(f"cannot run {argv[0]!r}: {error.strerror or error}")
            return False
        if done.returncode != 0:  # first, so the 4 KiB message cap never hides it
            self.say(f"exit status {done.returncode}")
        output = done.stdout.decode("utf-8", "replace").rstrip()
        if output:
            self.say(output)
        return done.returncode == 0
