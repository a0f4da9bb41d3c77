"""``next_fire`` answers once per (expression, minute, zone): the same as computing each time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from picron.schedule import _next_fire, next_fire

UTC = timezone.utc
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
EXPRESSIONS = ["*/5 * * * *", "30 2 * * *", "0 * * * *", "@daily", "59 1 * * 0"]
# around both 2026 DST changes in Europe and the US, and Lord Howe's half-hour ones
DAYS = [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC),
        datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC),
        datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)]


def uncached(expr, after, tz):
    return _next_fire(expr, after, after.astimezone(tz), tz)


@pytest.mark.parametrize("zone", ZONES)
def test_every_instant_of_a_minute_gets_the_uncached_answer(zone):
    tz = ZoneInfo(zone)
    for day in DAYS:
        after = day - timedelta(hours=14)
        while after < day + timedelta(hours=14):
            for expr in EXPRESSIONS:
                for offset in (timedelta(0), timedelta(seconds=1), timedelta(seconds=59.999999)):
                    assert next_fire(expr, after + offset, tz) == \
                        uncached(expr, after + offset, tz), (expr, after + offset, zone)
            after += timedelta(minutes=17)


def test_an_offset_with_seconds_is_computed_each_time():
    """In summer 1930 Amsterdam was +01:19:32: local noon fell at 10:40:28 UTC."""
    tz = ZoneInfo("Europe/Amsterdam")
    after = datetime(1930, 6, 1, 10, 40, 30, tzinfo=UTC)  # 12:00:02 local: noon has passed
    assert next_fire("0 12 * * *", after, tz) == datetime(1930, 6, 2, 10, 40, 28, tzinfo=UTC)
