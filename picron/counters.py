"""Event counters (SPEC §5): named integers that applications increase.

From Python::

    import picron
    picron.increase_counter("logins_failed")                 # the configured database
    picron.increase_counter("logins_failed", 5, database="/var/lib/picron/picron.db")
    picron.decrease_counter("sessions_open")

Every change is one atomic SQL statement in its own ``BEGIN IMMEDIATE`` transaction,
so concurrent processes never lose a count. The ``eventcounter`` task module turns a
counter into monitoring stats.
"""
from __future__ import annotations


from picron.errors import NotFound, ValidationError

# The largest step, for the CLI, the API and Python alike: far beyond any real count, and
# the largest integer that JSON readers with doubles (JavaScript) still get exactly.
MAX_STEP = 2**53 - 1


def check_counter_name(name: object) -> str:
    """A counter name follows the rules of a task name (1-64 characters, no control
    characters, trimmed); else ``ValidationError(field="name")``."""
    from picron.tasks import check_name

    return check_name(name)


def _check_step(by: object) -> int:
    if isinstance(by, bool) or not isinstance(by, int) or abs(by) > MAX_STEP:
        raise ValidationError(f"by: must be an integer between -{MAX_STEP} and {MAX_STEP}",
                              field="by")
    return by


def change_counter(store, name: str, by: int) -> int:
    """Add ``by`` (negative to decrease) to counter ``name``; returns the new value.

    A counter that does not exist yet starts at 0. Raises ``ValidationError`` for a bad
    name or a ``by`` that is not an integer of magnitude at most ``MAX_STEP``.
    """
    return store.change_counter(check_counter_name(name), _check_step(by))


def reset_counter(store, name: str) -> None:
    """Set counter ``name`` to 0 (creating it if needed)."""
    store.set_counter(check_counter_name(name), 0)


def read_counter(store, name: str) -> int:
    """The counter's value; raises ``NotFound`` if it was never set."""
    value = store.get_counter(check_counter_name(name))
    if value is None:
        raise NotFound(f"counter {name!r} not found", field="name")
    return value


def increase_counter(name: str, by: int = 1, database: str | None = None) -> int:
    """Increase a counter in a picron database from any Python program; returns the value.

    ``database`` defaults to the configured one (``PICRON_DB``, config file, default path).
    Opens and closes its own connection. Raises ``ValidationError`` for a bad name or
    step, ``StorageError`` when the database is unusable (or busy for over 5 s).
    """
    from picron.config import load_config
    from picron.storage import open_store

    _check_step(by)
    with open_store(database or load_config().database) as store:
        return change_counter(store, name, by)


def decrease_counter(name: str, by: int = 1, database: str | None = None) -> int:
    """Decrease a counter (see ``increase_counter``); returns the new value."""
    return increase_counter(name, -_check_step(by), database)
