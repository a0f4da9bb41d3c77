"""Time and crontab arithmetic: the only module that imports croniter.

Inside picron every instant is an aware UTC ``datetime``; the database stores them as
ISO 8601 text at seconds precision, written by ``to_db`` and read by ``from_db`` (defined
in ``picron.timestamps``, which an idle tick can import without ``re``).
croniter is imported lazily so that a cron tick that finds nothing due never pays for it.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache

from picron.errors import ValidationError
from picron.timestamps import UTC, from_db, to_db, utcnow  # noqa: F401 - re-exported
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MAX_INTERVAL_LENGTH = 200
_NAMES = {name: number for number, name in enumerate(
    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_NAMES.update({name: number for number, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)})
_RANGE = re.compile(r"^(\w+)-(\w+)$")


def parse_instant(text: str, tz: tzinfo | None = None, field: str = "at") -> datetime:
    """Parse a user-given time; a time without offset is read in ``tz`` (default UTC).

    Accepts ISO 8601 (``2026-03-29T02:30``, ``2026-03-29 02:30:00+02:00``, ``...Z``).
    Raises ``ValidationError(field=field)`` when the text is not a time.
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{field}: not an ISO 8601 time: {text!r}", field=field) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz or UTC)
    return value.astimezone(UTC)


def get_zone(name: str | None, default: tzinfo | None = None) -> tzinfo:
    """The ``tzinfo`` for an IANA name; None gives ``default`` (else the system's local zone).

    Raises ``ValidationError(field="timezone")`` for an unknown name.
    """
    if name is None:
        return default if default is not None else local_zone()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"timezone: unknown time zone {name!r}", field="timezone") from None


def local_zone() -> tzinfo:
    """The system's local time zone (the one ``date`` uses)."""
    return datetime.now().astimezone().tzinfo


def validate_interval(expr: object) -> str:
    """Check a crontab interval against SPEC §1 and return its normal form.

    Accepts five fields (numbers, ranges, steps, lists, month and weekday names, and
    croniter's ``L``/``#``/``?`` day extensions) or one of the ``@`` aliases. Rejects
    seconds or year fields, out-of-range values, reversed ranges, expressions that never
    fire (``0 0 31 2 *``) and anything else, with ``ValidationError(field="interval")``.
    """
    if not isinstance(expr, str):
        raise ValidationError("interval: must be a string", field="interval")
    if len(expr) > MAX_INTERVAL_LENGTH:
        raise ValidationError(
            f"interval: longer than {MAX_INTERVAL_LENGTH} characters", field="interval")
    normal = " ".join(expr.split())
    if normal.lower() in ALIASES:
        return normal.lower()
    fields = normal.split(" ")
    if len(fields) != 5 or not normal.isascii():
        raise ValidationError(
            f"interval: {normal!r} is not a 5-field crontab expression or an @ alias",
            field="interval")
    from croniter import croniter
    from croniter.croniter import CroniterError

    try:
        valid = croniter.is_valid(normal, strict=True) and len(croniter(normal).expanded) == 5
    except (CroniterError, ValueError, KeyError, OverflowError):
        valid = False
    if not valid or any(_is_reversed(field) for field in fields):
        raise ValidationError(f"interval: {normal!r} is not a valid crontab expression "
                              "(or never fires)", field="interval")
    return normal


def _is_reversed(field: str) -> bool:
    for part in field.split(","):
        match = _RANGE.match(part.split("/")[0])
        if match:
            low, high = (_NAMES.get(v.lower(), v) for v in match.groups())
            if str(low).isdigit() and str(high).isdigit() and int(low) > int(high):
                return True
    return False


def next_fire(expr: str, after: datetime, tz: tzinfo) -> datetime:
    """The first instant strictly after ``after`` that matches ``expr`` in zone ``tz`` (SPEC §2.2).

    A wall-clock slot that a DST jump skips runs at the first instant after the gap; a
    wall-clock time that occurs twice matches only its first occurrence. Returns UTC.
    """
    local_after = after.astimezone(tz)
    candidate = _cron(expr, local_after).get_next(datetime).astimezone(tz)
    while _is_second_occurrence(candidate):
        candidate = _cron(expr, candidate).get_next(datetime).astimezone(tz)
    # croniter skips wall times that do not exist; SPEC wants them at the end of the gap.
    wall = _cron(expr, local_after.replace(tzinfo=None)).get_next(datetime)
    gap_end = _gap_end(wall, tz)
    if gap_end is not None and after < gap_end < candidate:
        return gap_end
    return candidate.astimezone(UTC)


def _cron(expr: str, start: datetime):
    """A croniter for ``expr`` from ``start``: a copy of a cached one, set to ``start``.

    Parsing the expression is most of croniter's cost (~0.2 ms); a tick that runs many
    tasks, or a page that previews many next runs, parses each expression once.
    """
    from copy import copy

    cron = copy(_parsed(expr))
    cron.set_current(start, force=True)
    return cron


@lru_cache(maxsize=1024)
def _parsed(expr: str):
    from croniter import croniter

    return croniter(expr, 0)


def _is_second_occurrence(local: datetime) -> bool:
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _gap_end(wall: datetime, tz: tzinfo) -> datetime | None:
    """If naive ``wall`` does not exist in ``tz``, the first instant after its gap (UTC)."""
    before_jump = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    after_jump = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if before_jump.astimezone(tz).replace(tzinfo=None) == wall:
        return None
    low, high = sorted((before_jump, after_jump))
    # Invariant: wall(low) <= wall < wall(high); zone transitions fall on whole minutes.
    while high - low > timedelta(minutes=1):
        middle = (low + (high - low) / 2).replace(second=0, microsecond=0)
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high


def upcoming(expr: str, after: datetime, tz: tzinfo, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (for previews and ``picron next``)."""
    times: list[datetime] = []
    for _ in range(count):
        after = next_fire(expr, after, tz)
        times.append(after)
    return times
