"""Crontab intervals in plain words, for the web page ("0 8 * * 1-5" → "at 08:00 on Monday
through Friday").

A reading is a hint next to the expression, never its replacement: whatever this module
does not fully understand (``L``, ``#``, ``W``, ``?``, odd steps) falls back to the
expression itself rather than saying something wrong.
"""
from __future__ import annotations

import re

from picron.schedule import CRON_FIELDS

_ALIASES = {
    "@yearly": "every year on January 1 at midnight",
    "@annually": "every year on January 1 at midnight",
    "@monthly": "on day 1 of every month at midnight",
    "@weekly": "every Sunday at midnight",
    "@daily": "every day at midnight",
    "@midnight": "every day at midnight",
    "@hourly": "every hour, on the hour",
}
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_NAMES = {name[:3].lower(): number for number, name in enumerate(_DAYS)}
_NAMES.update({name[:3].lower(): number for number, name in enumerate(_MONTHS, start=1)})
# (lowest, highest) value per field: minute, hour, day of month, month, day of week.
_BOUNDS = [(low, high) for _, low, high in CRON_FIELDS]
# Steps yielding at most this many values are read as a list of those values.
_EXPAND = [1, 2, 4, 4, 4]
_PART = re.compile(r"^(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


class _Unsure(Exception):
    """The expression uses something this module does not put into words."""


def describe_interval(expr: str) -> str:
    """A plain-words reading of a crontab interval, or ``expr`` itself when unsure."""
    text = " ".join(str(expr).split())
    if text.lower() in _ALIASES:
        return _ALIASES[text.lower()]
    fields = text.split(" ")
    if len(fields) != 5:
        return text
    try:
        return _sentence(*(_parse_field(field, *_BOUNDS[i], _EXPAND[i])
                           for i, field in enumerate(fields)))
    except _Unsure:
        return text


def _parse_field(field: str, low: int, high: int, expand: int) -> list[tuple]:
    """A field as a list of parts: ("*", step) or ("range", start, end, step).

    A step that yields at most ``expand`` values becomes those values (``1-5/2`` →
    1, 3, 5), and a range over the whole field becomes ``*``, so that the words say
    exactly what runs.
    """
    parts = []
    for part in field.split(","):
        match = _PART.match(part)
        if not match:
            raise _Unsure(part)
        star, start, end, step = match.groups()
        step = int(step) if step else 1
        if step < 1:
            raise _Unsure(part)
        first = low if star else _number(start, low, high)
        last = high if star or (step > 1 and not end) else \
            (_number(end, low, high) if end else first)
        if last < first:
            raise _Unsure(part)
        values = range(first, last + 1, step)
        whole = first == low and last == high
        if step > 1 and len(values) <= (expand if whole else 6):
            parts.extend(("range", value, value, 1) for value in values)
        elif whole and (star or step > 1 or high - low > 7):
            parts.append(("*", step))
        else:
            parts.append(("range", first, last, step))
    return parts


def _number(text: str, low: int, high: int) -> int:
    value = _NAMES.get(text.lower()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise _Unsure(text)
    return value


def _is_any(parts: list[tuple]) -> bool:
    return parts == [("*", 1)]


def _single(parts: list[tuple]) -> int | None:
    """The one value of a field like ``8``, else None."""
    if len(parts) == 1 and parts[0][0] == "range" and parts[0][1] == parts[0][2]:
        return parts[0][1]
    return None


def _values(parts: list[tuple]) -> list[int] | None:
    """The few values of a list like ``8,12,18`` or ``3-4,6``, else None (ranges read better)."""
    if len(parts) == 1 and parts[0][0] == "range" and parts[0][1] != parts[0][2]:
        return None
    values = _expand(parts)
    return values if values is not None and len(values) <= 6 else None


def _expand(parts: list[tuple]) -> list[int] | None:
    """Every value of a field without ``*`` (``8-18/2`` → 8, 10, …, 18), else None."""
    if any(part[0] == "*" for part in parts):
        return None
    return sorted({v for _, first, last, step in parts for v in range(first, last + 1, step)})


def _sentence(minute, hour, day, month, weekday) -> str:
    phrase, at_clock = _time_phrase(minute, hour)
    days = _day_phrase(day, month, weekday)
    if days is None:
        return "every day " + phrase if at_clock else phrase
    return f"{phrase} {days}"


def _time_phrase(minute, hour) -> tuple[str, bool]:
    """The time of day in words, and whether it names clock times ("at 08:00")."""
    minutes, hours = _values(minute), _expand(hour)
    if minutes and hours and len(minutes) * len(hours) <= 6:
        return "at " + _join([_clock(h, m) for h in hours for m in minutes]), True
    if _is_any(hour):
        return _minute_phrase(minute, hourly=True), False
    single = _single(minute)
    if single is not None and len(hour) == 1:
        kind, *rest = hour[0]
        step = rest[-1]
        every = "every hour" if step == 1 else f"every {step} hours"
        if kind == "*":
            return every + (", on the hour" if single == 0 else f" at minute {single}"), False
        first, last = rest[0], rest[0] + (rest[1] - rest[0]) // step * step
        return (f"{every} from {_clock(first, single, words=False)} through "
                f"{_clock(last, single, words=False)}"), False
    return f"{_minute_phrase(minute, hourly=False)} {_hour_phrase(hour)}", False


def _minute_phrase(parts, hourly: bool) -> str:
    if _is_any(parts):
        return "every minute"
    if len(parts) == 1 and parts[0][0] == "*":
        return f"every {parts[0][1]} minutes"
    single = _single(parts)
    if single is not None:
        if hourly:
            return "every hour, on the hour" if single == 0 else f"every hour at minute {single}"
        return "on the hour" if single == 0 else f"at minute {single}"
    values = _values(parts)
    of_hour = " past every hour" if hourly else ""
    if values is not None:
        return f"at minutes {_join([str(v) for v in values])}{of_hour}"
    if len(parts) == 1:
        _, first, last, step = parts[0]
        every = "every minute" if step == 1 else f"every {step} minutes"
        return f"{every} from minute {first} through {last}{of_hour}"
    raise _Unsure("minute")


def _hour_phrase(parts) -> str:
    if len(parts) == 1 and parts[0][0] == "*":
        return f"of every {_ordinal(parts[0][1])} hour"
    values = _values(parts)
    if values is not None and len(values) == 1:
        return f"from {values[0]:02d}:00 through {values[0]:02d}:59"
    if values is not None:
        return "during the hours " + _join([f"{h:02d}:00" for h in values])
    if len(parts) == 1 and parts[0][3] == 1:
        return f"from {parts[0][1]:02d}:00 through {parts[0][2]:02d}:59"
    raise _Unsure("hour")


def _day_phrase(day, month, weekday) -> str | None:
    """"on Monday through Friday in March", or None for every day of every month."""
    day_text = None if _is_any(day) else _days_of_month(day)
    weekday_text = None if _is_any(weekday) else _list_phrase(weekday, _weekday, "weekday")
    month_text = None if _is_any(month) else _list_phrase(month, _month, "month")
    if day_text and month_text and not weekday_text and _single(day) and _single(month):
        day_text, month_text = f"{_month(_single(month))} {_single(day)}", None
    pieces = []
    if day_text and weekday_text:  # cron runs when either matches
        pieces.append(f"on {day_text} or on {weekday_text}")
    elif day_text or weekday_text:
        pieces.append(f"on {day_text or weekday_text}")
    if month_text:
        pieces.append(f"in {month_text}")
    return " ".join(pieces) or None


def _days_of_month(parts) -> str:
    if len(parts) == 1 and parts[0][0] == "*":
        return f"every {_ordinal(parts[0][1])} day of the month"
    if any(part[0] == "*" for part in parts):
        raise _Unsure("day")
    text = _list_phrase(parts, str, "day")
    return f"{'day' if _single(parts) else 'days'} {text} of the month"


def _list_phrase(parts, name, unit: str) -> str:
    words = []
    for part in parts:
        if part[0] == "*":
            if part[1] == 1:
                raise _Unsure(unit)
            words.append(f"every {_ordinal(part[1])} {unit}")
        elif part[1] == part[2]:
            words.append(name(part[1]))
        elif part[3] == 1:
            words.append(f"{name(part[1])} through {name(part[2])}")
        else:
            words.append(f"every {_ordinal(part[3])} {unit} from {name(part[1])} "
                         f"through {name(part[2])}")
    return _join(list(dict.fromkeys(words)))  # weekday 7 is 0 again: Sunday


def _month(number: int) -> str:
    return _MONTHS[number - 1]


def _weekday(number: int) -> str:
    return _DAYS[number % 7]


def _ordinal(number: int) -> str:
    if number == 2:
        return "other"
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10,
                                                                                  "th")
    return f"{number}{suffix}"


def _clock(hour: int, minute: int, words: bool = True) -> str:
    if words and hour == 0 and minute == 0:
        return "midnight"
    if words and hour == 12 and minute == 0:
        return "noon"
    return f"{hour:02d}:{minute:02d}"


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
