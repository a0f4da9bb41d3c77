"""``picron doctor``: which config, database and node a command would use, and why.

The question every "it runs nothing" report starts with: the cron line runs as another
user, with another environment, and may be reading another database than the
administrator's commands. Everything here only looks: no file is created or changed.
"""
from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field
from datetime import datetime

from picron.config import explain_config
from picron.errors import StorageError
from picron.schedule import to_db
from picron.storage import SchemaBehind, open_store


@dataclass
class Diagnosis:
    """Lines to print; ``problems`` are what would make a ``run_scheduled`` tick fail."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        self.lines.append(f"{label + ':':<10} {text}")

    def problem(self, text: str) -> None:
        self.problems.append(text)


def diagnose(config_path: str | None, db_path: str | None, now: datetime) -> Diagnosis:
    """Explain the configuration this process resolves (SPEC §3) and check its database.

    ``config_path``/``db_path`` are the command-line values. Raises ``ConfigError`` only
    if the config file itself is unusable (that error names the file and key).
    """
    config, why = explain_config(config_path, db_path)
    report = Diagnosis()
    report.add("user", _user_name(os.geteuid()))
    report.add("config", f"{config.path or '(none)'}  <- {why['config']}")
    report.add("database", f"{config.database}  <- {why['database']}")
    report.add("node", f"{config.node}  <- {why['node']}")
    if config.database == ":memory:" or "://" in config.database:
        report.add("file", "not a file: nothing to check here")
        return report
    path = os.path.abspath(config.database)
    if _check_file(report, path):
        _check_contents(report, path, config.node, now)
    return report


def _check_file(report: Diagnosis, path: str) -> bool:
    """File, owner, permissions; True when the file exists and can be opened."""
    directory = os.path.dirname(path)
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        existing = directory
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            report.add("file", "does not exist, and cannot be created here")
            report.problem(f"{existing} is not a directory: the database {path} cannot be "
                           "created")
        elif os.access(existing, os.W_OK | os.X_OK):
            report.add("file", f"does not exist yet; the first command creates it, owned by "
                               f"{_user_name(os.geteuid())} (run commands as the user that "
                               "runs the cron line)")
        else:
            report.add("file", "does not exist, and cannot be created here")
            report.problem(f"{existing} is not writable by {_user_name(os.geteuid())}: "
                           f"the database {path} cannot be created")
        return False
    except OSError as error:
        report.problem(f"cannot look at {path}: {error.strerror}")
        return False
    if not stat.S_ISREG(status.st_mode):
        report.problem(f"{path} is not a regular file")
        return False
    readable, writable = os.access(path, os.R_OK), os.access(path, os.W_OK)
    report.add("file", f"owner {_user_name(status.st_uid)}, mode "
                       f"{stat.S_IMODE(status.st_mode):04o}, {status.st_size} bytes; "
                       f"readable {_yes(readable)}, writable {_yes(writable)} by this user")
    if status.st_uid != os.geteuid():
        owner = _login(status.st_uid)
        report.add("note", f"the database belongs to {owner}, not to this user: `sudo -u "
                           f"{owner} picron doctor` shows what that user's ticks see")
    if not readable or not writable or not status.st_mode & 0o222:
        report.problem(f"{path} is not {'readable and writable' if not readable else 'writable'}"
                       f" by {_user_name(os.geteuid())}: a tick as this user fails")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix) and not os.access(path + suffix, os.R_OK | os.W_OK):
            report.problem(f"{path}{suffix} belongs to {_user_name(os.stat(path + suffix).st_uid)}"
                           f" and is not writable by {_user_name(os.geteuid())}")
    if not os.access(directory, os.W_OK | os.X_OK):
        report.problem(f"the directory {directory} is not writable by "
                       f"{_user_name(os.geteuid())}: SQLite cannot create {path}-wal there")
    return readable


def _check_contents(report: Diagnosis, path: str, node: str, now: datetime) -> None:
    """Schema, pages, this node's last tick and tasks, read without writing anything."""
    try:
        store = open_store(path, create=False, read_only=True)
    except SchemaBehind as error:
        report.add("schema", error.message.removeprefix(f"database {path}: "))
        return
    except StorageError as error:
        report.problem(error.message)
        return
    try:
        last = store.last_tick(node)
        ago = "" if last is None else f" ({int((now - last).total_seconds() // 60)} min ago)"
        report.add("last tick", f"{to_db(last) + ago} on node {node}" if last else
                   f"never on node {node}: is the cron line or picron.timer installed?")
        tasks = store.list_tasks()
        here = [task for task in tasks if node in task.nodes]
        others = sorted({n for task in tasks for n in task.nodes} - {node})
        report.add("tasks", f"{len(tasks)} in all, {sum(t.active for t in here)} active on "
                            f"node {node}" + (f"; other nodes: {', '.join(others)}"
                                              if others else ""))
    except StorageError as error:
        report.problem(error.message)
    finally:
        store.close()


def _login(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user_name(uid: int) -> str:
    return f"{_login(uid)} (uid {uid})"


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"
