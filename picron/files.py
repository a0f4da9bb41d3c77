"""Files picron writes beside the database: private (mode 0600) from the moment they exist."""
from __future__ import annotations

import os


def private_temporary(path: str) -> tuple[int, str]:
    """Create a new temporary file beside ``path``, mode 0600, exclusively; return its
    descriptor and name (the caller fills it and renames it into place).

    Exclusive creation (``O_EXCL``, which also refuses a symbolic link) means the file is
    never one that someone else made, or opened, before: nobody can read what is written
    into it. A stale one of a crashed run with the same PID is removed first. Raises
    ``OSError``.
    """
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(temporary, flags, 0o600), temporary


def same_file(path: str, other: str) -> bool:
    """Whether two names are one file: the same inode (through symbolic or hard links,
    or another spelling), or the same resolved name when either does not exist yet."""
    try:
        return os.path.samefile(path, other)
    except OSError:
        return os.path.realpath(path) == os.path.realpath(other)
