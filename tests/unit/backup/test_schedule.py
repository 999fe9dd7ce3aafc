"""backup.schedule: daily UTC run times and the catch-up run at start."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from backup.schedule import due_at_start, next_run, parse_times

pytestmark = pytest.mark.unit

AT_0230 = (time(2, 30, tzinfo=UTC),)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2025, 1, 31, 1, 0), utc(2025, 1, 31, 2, 30)),  # later today
        (utc(2025, 1, 31, 2, 30), utc(2025, 2, 1, 2, 30)),  # exactly now: the next one
        (utc(2025, 1, 31, 2, 30, 1), utc(2025, 2, 1, 2, 30)),  # just missed: tomorrow
        (utc(2025, 12, 31, 23, 59), utc(2026, 1, 1, 2, 30)),  # across the year
    ],
)
def test_next_run_daily(now, expected):
    assert next_run(now, AT_0230) == expected


def test_next_run_converts_other_timezones_to_utc():
    berlin = datetime(2025, 1, 31, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert next_run(berlin, AT_0230) == utc(2025, 1, 31, 2, 30)  # 03:00 CET is 02:00 UTC


def test_several_times_a_day():
    times = parse_times("14:30, 02:30")
    assert times == (time(2, 30, tzinfo=UTC), time(14, 30, tzinfo=UTC))
    assert next_run(utc(2025, 1, 31, 3, 0), times) == utc(2025, 1, 31, 14, 30)
    assert next_run(utc(2025, 1, 31, 15, 0), times) == utc(2025, 2, 1, 2, 30)


@pytest.mark.parametrize("bad", ["24:00", "2:3", "02:60", "0230", "", "noon"])
def test_bad_times_are_refused(bad):
    with pytest.raises(ValueError):
        parse_times(bad)


def test_catch_up_at_start():
    now = utc(2025, 1, 31, 12, 0)
    assert due_at_start(None, now, 26)  # a fresh stack gets a dump at once
    assert not due_at_start(now - timedelta(hours=25), now, 26)
    assert due_at_start(now - timedelta(hours=27), now, 26)
    assert not due_at_start(None, now, 0)  # disabled
