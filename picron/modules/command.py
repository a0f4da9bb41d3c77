"""The ``command`` module: run a program (split like a shell would, run without a shell).

The output kept is the end of it (where errors usually are), so that the run's
message stays within its 4 KiB however much the program prints. A failure's first line
is the exit status with the last lines of output, so one-line views show the cause.
"""
from __future__ import annotations

import os
import shlex
import subprocess

from picron.errors import ValidationError
from picron.modules import Option, TaskModule
from picron.records import MAX_MESSAGE_BYTES, message_tail

CHUNK_BYTES = 65536
# Room left in the message for the status line (up to 200 characters of UTF-8, with the
# output's tail) and the "output omitted" note.
OUTPUT_BYTES = MAX_MESSAGE_BYTES - 1024


class Command(TaskModule):
    identifier = "command"
    description = "Run a command without a shell; success is exit status 0, output is kept."
    options = {
        "command": Option("str", "The command line, split like a shell would "
                                 "(no pipes, redirections or variables).", required=True),
        "workdir": Option("str", "Directory to run it in (default: picron's working directory)."),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        split_command(options["command"])

    def do(self, options: dict) -> bool:
        argv = split_command(options["command"])
        workdir = options["workdir"] or None
        if workdir is not None and not os.path.isdir(workdir):
            self.say(f"workdir {workdir!r} is not a directory")
            return False
        try:
            process = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as error:
            self.say(f"cannot run {argv[0]!r}: {error.strerror or error}")
            return False
        with process:
            output, omitted = read_tail(process.stdout, OUTPUT_BYTES)
            returncode = process.wait()
        if returncode != 0:  # first, so that it is always in the message
            status = (f"exit status {returncode}" if returncode > 0
                      else f"killed by signal {-returncode}")
            # the first line stays within the 200 characters a table shows
            self.say(f"{status}: {message_tail(output, 3, 198 - len(status))}"
                     if output.strip() else status)
        if omitted:
            self.say(f"[... {omitted} earlier bytes of output omitted]")
        if output:
            self.say(output)
        return returncode == 0


def split_command(command: str) -> list[str]:
    """``command`` split like a POSIX shell would; raises ``ValidationError`` if it cannot be."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise ValidationError(f"options: 'command' cannot be split: {error}",
                              field="options") from None
    if not argv:
        raise ValidationError("options: 'command' is empty", field="options")
    return argv


def read_tail(stream, limit: int) -> tuple[str, int]:
    """Read ``stream`` to its end; returns its last ``limit`` bytes as text and how many
    bytes before them were dropped. Memory stays bounded whatever the size."""
    kept = bytearray()
    total = 0
    while chunk := stream.read(CHUNK_BYTES):
        total += len(chunk)
        kept += chunk
        del kept[:-limit]
    start = 0
    if total > len(kept):  # don't begin with half of a UTF-8 character
        while start < len(kept) and kept[start] & 0xC0 == 0x80:
            start += 1
    return kept[start:].decode("utf-8", "replace").rstrip(), total - len(kept) + start
