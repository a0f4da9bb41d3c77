"""The ``backup`` module: a rotated online backup of picron's own database."""
from __future__ import annotations

import os
import re
from datetime import timezone

from picron.errors import PicronError, ValidationError
from picron.modules import Option, TaskModule

BACKUP_NAME = re.compile(r"picron-[0-9]{8}T[0-9]{6}Z\.db")
MAX_KEEP = 10_000


class Backup(TaskModule):
    identifier = "backup"
    description = ("Write a consistent copy of picron's database to a directory as "
                   "picron-YYYYmmddTHHMMSSZ.db and keep only the newest copies.")
    options = {
        "directory": Option("str", "Absolute path of the directory for the backups "
                                   "(created if missing).", required=True),
        "keep": Option("int", "How many backups to keep; older backups there (by their "
                              "picron-YYYYmmddTHHMMSSZ.db names) are deleted.", default=7),
    }

    @classmethod
    def check_options(cls, options: dict) -> None:
        if not os.path.isabs(options["directory"]):
            # cron, the web server and the CLI each run in a different working directory
            raise ValidationError("options: 'directory' must be an absolute path",
                                  field="options")
        if not 1 <= options["keep"] <= MAX_KEEP:
            raise ValidationError(f"options: 'keep' must be between 1 and {MAX_KEEP}",
                                  field="options")

    def do(self, options: dict) -> bool:
        if self.context.location == ":memory:":
            self.say("an in-memory database cannot be backed up")
            return False
        directory = options["directory"]
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as error:
            self.say(f"cannot create the directory {directory}: {error.strerror or error}")
            return False
        stamp = self.context.now().astimezone(timezone.utc)
        target = os.path.join(directory, f"picron-{stamp:%Y%m%dT%H%M%SZ}.db")
        store = self.context.store()
        try:
            store.backup(target)
        except PicronError as error:
            self.say(error.message)
            return False
        finally:
            store.close()
        self.say(f"backup written to {target}")
        try:
            removed = rotate_backups(directory, options["keep"])
        except OSError as error:
            self.say(f"cannot remove old backups: {error.strerror or error}")
            return False
        if removed:
            self.say(f"removed {len(removed)} older backups: {', '.join(removed)}")
        return True


def rotate_backups(directory: str, keep: int) -> list[str]:
    """Delete all but the ``keep`` (>= 1) newest picron backups in ``directory``.

    Returns the names deleted, oldest first; raises ``OSError`` if one cannot be.
    Only files named like picron's own backups are considered; others are never touched.
    """
    names = sorted(name for name in os.listdir(directory) if BACKUP_NAME.fullmatch(name))
    old = names[:-keep]
    for name in old:
        os.unlink(os.path.join(directory, name))
    return old
