"""Crontab validation, timestamps, and next_fire against a brute-force model of SPEC §2.2."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from picron.errors import ValidationError
from picron.schedule import (from_db, get_zone, next_fire, parse_instant, to_db, upcoming,
                             validate_interval)

UTC = timezone.utc


@pytest.mark.parametrize("expr, normal", [
    ("*/30 * * * *", "*/30 * * * *"),
    ("0 8 * * 1-5", "0 8 * * 1-5"),
    ("0 0 * * WED", "0 0 * * WED"),
    ("0 0 1 AUG *", "0 0 1 AUG *"),
    ("  5   0 *  8 * ", "5 0 * 8 *"),
    ("@Daily", "@daily"),
    ("@annually", "@annually"),
    ("@midnight", "@midnight"),
    ("0 0 L * *", "0 0 L * *"),
    ("0 9 * * 5#2", "0 9 * * 5#2"),
])
def test_valid_intervals_are_normalised(expr, normal):
    assert validate_interval(expr) == normal


@pytest.mark.parametrize("expr", [
    "every two days", "* * *", "* * * * * *", "0 0 1 1 * 2026", "60 * * * *", "*/0 * * * *",
    "5-1 * * * *", "0 0 * * FRI-MON", "0 0 31 2 *", "0 0 30 2 *", "@reboot", "", "   ",
    "x" * 1_000_000, "61 * * * *", "* 24 * * *", "H * * * *", "0 0 * * 8", "１ * * * *",
])
def test_invalid_intervals_are_rejected_naming_the_field(expr):
    with pytest.raises(ValidationError) as caught:
        validate_interval(expr)
    assert caught.value.field == "interval"


def test_non_string_interval_is_rejected():
    with pytest.raises(ValidationError):
        validate_interval(5)


def test_timestamps_round_trip_and_naive_is_refused():
    instant = datetime(2018, 6, 24, 8, 0, 30, 999, tzinfo=ZoneInfo("Europe/Berlin"))
    text = to_db(instant)
    assert text == "2018-06-24T06:00:30+00:00"
    assert from_db(text) == instant.replace(microsecond=0)
    with pytest.raises(ValueError):
        to_db(datetime(2018, 6, 24))


def test_parse_instant_reads_local_times_in_the_given_zone():
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_instant("2026-03-29T03:00", berlin) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert parse_instant("2026-03-29T03:00Z", berlin) == datetime(2026, 3, 29, 3, tzinfo=UTC)
    with pytest.raises(ValidationError):
        parse_instant("yesterday")


def test_zone_lookup_uses_tzdata_and_rejects_unknown_names():
    assert get_zone("Europe/Moscow").utcoffset(datetime(2018, 6, 1)) == timedelta(hours=3)
    for bad in ("Mars/Olympus", "../etc/passwd", "", " UTC"):
        with pytest.raises(ValidationError) as caught:
            get_zone(bad)
        assert caught.value.field == "timezone"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# privacyIDEA's own calculate_next_timestamp cases (tests/test_lib_periodictask.py).
@pytest.mark.parametrize("expr, after, zone, want", [
    ("0 8 * * *", "2018-06-25 08:04:30+00:00", "UTC", "2018-06-26 08:00+00:00"),
    ("0 8 * * *", "2018-06-24 07:05:37+00:00", "UTC", "2018-06-24 08:00+00:00"),
    ("0 0 * * 1-5", "2018-06-29 00:00+00:00", "UTC", "2018-07-02 00:00+00:00"),
    ("5 0 * 8 *", "2017-08-31 00:06+00:00", "UTC", "2018-08-01 00:05+00:00"),
    ("0 8 * * *", "2018-06-25 05:04:30+00:00", "Europe/Moscow", "2018-06-26 05:00+00:00"),
    ("0 8 * * *", "2018-06-25 04:04:30+00:00", "Europe/Moscow", "2018-06-25 05:00+00:00"),
    ("0 0 * * *", "2018-06-25 21:01+00:00", "Europe/Moscow", "2018-06-26 21:00+00:00"),
    ("0 0 * * 3", "2018-06-24 21:00+00:00", "Europe/Moscow", "2018-06-26 21:00+00:00"),
    ("0 1 15 * *", "2018-05-15 00:00+00:00", "Europe/Moscow", "2018-06-14 22:00+00:00"),
    ("0 1 15 * *", "2018-05-14 21:59+00:00", "Europe/Moscow", "2018-05-14 22:00+00:00"),
])
def test_privacyidea_next_timestamps(expr, after, zone, want):
    assert next_fire(expr, utc(after), ZoneInfo(zone)) == utc(want)


def test_next_fire_is_strictly_after_the_reference():
    tz = ZoneInfo("UTC")
    assert next_fire("*/5 * * * *", utc("2026-01-01 00:05+00:00"), tz) == \
        utc("2026-01-01 00:10+00:00")


def test_spring_forward_gap_slot_runs_at_the_end_of_the_gap():
    berlin = ZoneInfo("Europe/Berlin")  # 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC)
    got = next_fire("30 2 * * *", utc("2026-03-28 03:00+01:00"), berlin)
    assert got == utc("2026-03-29 01:00+00:00")
    # the day after it is back at 02:30 local
    assert next_fire("30 2 * * *", got, berlin) == utc("2026-03-30 02:30+02:00")


def test_fall_back_repeated_slot_runs_once():
    new_york = ZoneInfo("America/New_York")  # 2026-11-01 02:00 EDT -> 01:00 EST
    first = next_fire("30 1 * * *", utc("2026-11-01 00:00-04:00"), new_york)
    assert first == utc("2026-11-01 01:30-04:00")
    assert next_fire("30 1 * * *", first, new_york) == utc("2026-11-02 01:30-05:00")


# -- an oracle of SPEC §2.2 that shares no code with croniter -------------------------------

def _cron_sets(expr: str):
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    sets = []
    for text, (low, high) in zip(expr.split(), limits):
        values = set()
        for part in text.split(","):
            base, _, step = part.partition("/")
            first, last = (low, high) if base == "*" else map(int, (base.split("-") * 2)[:2])
            values.update(range(first, last + 1, int(step or 1)))
        sets.append((values, text != "*"))
    return sets


def _matches(sets, wall: datetime) -> bool:
    (minutes, _), (hours, _), (days, day_set), (months, _), (weekdays, weekday_set) = sets
    if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
        return False
    day_ok, weekday_ok = wall.day in days, wall.isoweekday() % 7 in weekdays
    return (day_ok or weekday_ok) if (day_set and weekday_set) else (day_ok and weekday_ok)


def oracle(expr: str, after: datetime, tz: ZoneInfo) -> datetime:
    """Walk UTC minute by minute: a due minute is the first whose wall time matches, or
    whose jump forward skipped a matching wall time; second occurrences never match."""
    sets = _cron_sets(expr)
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous = (t - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
    while True:
        local = t.astimezone(tz)
        wall = local.replace(tzinfo=None)
        repeated = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        if not repeated:
            skipped = previous + timedelta(minutes=1)
            while skipped <= wall:
                if _matches(sets, skipped):
                    return t
                skipped += timedelta(minutes=1)
        previous = max(previous, wall)
        t += timedelta(minutes=1)


def _around_transitions(zone: str, year: int):
    tz = ZoneInfo(zone)
    t = datetime(year, 1, 1, tzinfo=UTC)
    offset = t.astimezone(tz).utcoffset()
    while t.year == year:
        if t.astimezone(tz).utcoffset() != offset:
            offset = t.astimezone(tz).utcoffset()
            for minutes in range(-200, 201, 17):
                yield t + timedelta(minutes=minutes, seconds=minutes % 7)
        t += timedelta(hours=1)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 * * * *", "*/5 * * * *", "15 1 * * 0",
                                  "0,30 2-3 * * *", "59 1 * * *", "0 3 * * *"])
def test_next_fire_matches_the_oracle_around_dst_changes(zone, expr):
    tz = ZoneInfo(zone)
    for after in _around_transitions(zone, 2026):
        assert next_fire(expr, after, tz) == oracle(expr, after, tz), (expr, zone, after)


def test_stepping_every_five_minutes_across_dst_runs_every_slot_once():
    """A tick every 5 minutes through both 2026 changes in Berlin: each daily slot once."""
    tz = ZoneInfo("Europe/Berlin")
    for day in ("2026-03-28", "2026-10-24"):
        now = utc(f"{day} 00:00+00:00")
        reference = now
        runs = []
        for _ in range(3 * 24 * 12):
            if next_fire("30 2 * * *", reference, tz) <= now:
                runs.append(now)
                reference = now
            now += timedelta(minutes=5)
        assert len(runs) == 3, runs  # one per local day, incl. the gap and the repeated day
        assert len({run.astimezone(tz).date() for run in runs}) == 3


def test_upcoming_lists_successive_times():
    times = upcoming("@hourly", utc("2026-01-01 00:00+00:00"), ZoneInfo("UTC"), 3)
    assert times == [utc(f"2026-01-01 0{h}:00+00:00") for h in (1, 2, 3)]
