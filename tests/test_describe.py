"""Plain-words readings of crontab intervals (``picron.describe``)."""
from __future__ import annotations

import pytest

from picron.describe import describe_interval


@pytest.mark.parametrize("expr, words", [
    # aliases
    ("@daily", "every day at midnight"),
    ("@midnight", "every day at midnight"),
    ("@hourly", "every hour, on the hour"),
    ("@weekly", "every Sunday at midnight"),
    ("@monthly", "on day 1 of every month at midnight"),
    ("@yearly", "every year on January 1 at midnight"),
    ("@ANNUALLY", "every year on January 1 at midnight"),
    # steps
    ("* * * * *", "every minute"),
    ("*/5 * * * *", "every 5 minutes"),
    ("0 */2 * * *", "every 2 hours, on the hour"),
    ("10 */6 * * *", "every 6 hours at minute 10"),
    ("0-30/5 * * * *", "every 5 minutes from minute 0 through 30 past every hour"),
    ("*/5 */3 * * *", "every 5 minutes of every 3rd hour"),
    # numbers and lists
    ("15 * * * *", "every hour at minute 15"),
    ("0,30 * * * *", "at minutes 0 and 30 past every hour"),
    ("0 0 * * *", "every day at midnight"),
    ("30 8 * * *", "every day at 08:30"),
    ("0 12 * * *", "every day at noon"),
    ("0 8,17 * * *", "every day at 08:00 and 17:00"),
    ("0 8-18/2 * * *", "every day at 08:00, 10:00, noon, 14:00, 16:00 and 18:00"),
    # ranges
    ("0 8-17 * * *", "every hour from 08:00 through 17:00"),
    ("23 0-20/2 * * *", "every 2 hours from 00:23 through 20:23"),
    ("* 9-17 * * *", "every minute from 09:00 through 17:59"),
    ("*/10 9 * * *", "every 10 minutes from 09:00 through 09:59"),
    ("*/15 8-17 * * MON-FRI",
     "every 15 minutes from 08:00 through 17:59 on Monday through Friday"),
    # days, weekdays, months, names
    ("0 8 * * 1-5", "at 08:00 on Monday through Friday"),
    ("0 0 * * MON,WED,FRI", "at midnight on Monday, Wednesday and Friday"),
    ("5 4 * * sun", "at 04:05 on Sunday"),
    ("0 2 * * 7", "at 02:00 on Sunday"),
    ("0 9 1 * *", "at 09:00 on day 1 of the month"),
    ("0 9 1,15 * *", "at 09:00 on days 1 and 15 of the month"),
    ("0 4 8-14 * *", "at 04:00 on days 8 through 14 of the month"),
    ("0 0 */2 * *", "at midnight on every other day of the month"),
    ("0 0 1 1 *", "at midnight on January 1"),
    ("0 12 * jan,jul *", "at noon in January and July"),
    ("0 8 * 1-3 *", "at 08:00 in January through March"),
    ("0 0 1 */2 *", "at midnight on day 1 of the month in every other month"),
    # a step with few values is read as those values; a whole-field range as "every"
    ("0 0 1 */3 *", "at midnight on day 1 of the month in January, April, July and October"),
    ("0 0 * * 1-5/2", "at midnight on Monday, Wednesday and Friday"),
    ("0 */12 * * *", "every day at midnight and noon"),
    ("1-5/2 * * * *", "at minutes 1, 3 and 5 past every hour"),
    ("0-59/15 * * * *", "every 15 minutes"),
    ("0 0-23 * * *", "every hour, on the hour"),
    # cron runs when either the day of month or the weekday matches
    ("0 0 1,15 * 1-5",
     "at midnight on days 1 and 15 of the month or on Monday through Friday"),
    ("0 0 1 1 0", "at midnight on day 1 of the month or on Sunday in January"),
    # spacing is normalised
    ("  */5   *  * * * ", "every 5 minutes"),
])
def test_plain_words(expr, words):
    assert describe_interval(expr) == words


@pytest.mark.parametrize("expr", [
    "0 0 L * *",       # last day of the month
    "0 0 * * 5#2",     # second Friday
    "0 0 ? * *",
    "0 0 15W * *",
    "every two days",
    "* * *",
    "61 * * * *",      # out of range: never guess
    "0 0 * * FOO",
    "5-1 * * * *",     # reversed range
    "*,5 * * * *",
    "",
])
def test_unsure_falls_back_to_the_expression(expr):
    assert describe_interval(expr) == " ".join(expr.split())
