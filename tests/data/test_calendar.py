"""NYSE calendar: holidays, early closes and DST, with expected values from the published NYSE schedule."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from engine.data import calendar

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def test_thanksgiving_closed_and_black_friday_closes_at_one() -> None:
    assert not calendar.is_session(date(2026, 11, 26))
    assert calendar.session_times(date(2026, 11, 26)) is None
    opened, closed = calendar.session_times(date(2026, 11, 27))
    assert (opened.hour, opened.minute) == (9, 30)
    assert (closed.hour, closed.minute) == (13, 0)
    assert closed.utcoffset() == timedelta(hours=-5)  # EST in November
    assert closed.astimezone(UTC) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert calendar.session_minutes(date(2026, 11, 27)) == 210
    assert calendar.session_minutes(date(2026, 11, 25)) == 390
    assert calendar.session_minutes(date(2026, 11, 26)) == 0


def test_other_2026_holidays_and_early_closes() -> None:
    # Good Friday, Independence Day observed on Friday 3 July (the 4th is a Saturday), Christmas
    for closed in (date(2026, 4, 3), date(2026, 7, 3), date(2026, 12, 25), date(2026, 1, 19)):
        assert not calendar.is_session(closed), closed
    assert calendar.session_times(date(2026, 12, 24))[1].hour == 13
    assert not calendar.is_session(date(2026, 11, 28))  # Saturday
    # 2025 had an unscheduled closure (national day of mourning, 9 January)
    assert not calendar.is_session(date(2025, 1, 9))


def test_session_counts_per_year() -> None:
    # 2025: 261 weekdays - 11 closures (incl. 9 Jan); 2026: 261 weekdays - 10 holidays
    assert len(calendar.sessions(date(2025, 1, 1), date(2025, 12, 31))) == 250
    assert len(calendar.sessions(date(2026, 1, 1), date(2026, 12, 31))) == 251


def test_dst_switch_keeps_nine_thirty_new_york() -> None:
    before = calendar.session_times(date(2026, 3, 6))  # EST
    after = calendar.session_times(date(2026, 3, 9))  # EDT (clocks changed on Sunday 8 March)
    assert before[0].tzinfo is not None and after[0].tzinfo is not None
    assert before[0].astimezone(UTC).hour == 14 and before[0].astimezone(UTC).minute == 30
    assert after[0].astimezone(UTC).hour == 13 and after[0].astimezone(UTC).minute == 30
    assert before[0].astimezone(NY).hour == after[0].astimezone(NY).hour == 9
    assert after[1].astimezone(UTC).hour == 20


def test_sessions_range_and_navigation() -> None:
    got = calendar.sessions(date(2026, 11, 20), date(2026, 12, 1))
    want = np.array(["2026-11-20", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27",
                     "2026-11-30", "2026-12-01"], dtype="datetime64[D]")
    assert got.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(got, want)
    assert len(calendar.sessions(date(2026, 12, 1), date(2026, 11, 20))) == 0
    assert calendar.next_session(date(2026, 11, 25)) == date(2026, 11, 27)
    assert calendar.next_session(date(2026, 11, 27)) == date(2026, 11, 30)
    assert calendar.previous_session(date(2026, 11, 27)) == date(2026, 11, 25)
    assert calendar.previous_session(date(2026, 11, 30)) == date(2026, 11, 27)
    np.testing.assert_array_equal(
        calendar.sessions_back(date(2026, 11, 29), 3),
        np.array(["2026-11-24", "2026-11-25", "2026-11-27"], dtype="datetime64[D]"),
    )
    np.testing.assert_array_equal(
        calendar.sessions_back(date(2026, 11, 27), 2),
        np.array(["2026-11-25", "2026-11-27"], dtype="datetime64[D]"),
    )
    assert calendar.last_session_on_or_before(date(2026, 11, 26)) == date(2026, 11, 25)


def test_aware_datetimes_use_the_new_york_date() -> None:
    late_utc = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 21:00 on Friday 27th in New York
    assert calendar.is_session(late_utc)
    assert calendar.next_session(late_utc) == date(2026, 11, 30)
    assert calendar.is_open(datetime(2026, 11, 27, 12, 59, tzinfo=NY))
    assert not calendar.is_open(datetime(2026, 11, 27, 13, 0, tzinfo=NY))
    assert not calendar.is_open(datetime(2026, 11, 27, 9, 29, tzinfo=NY))
    assert calendar.is_open(datetime(2026, 11, 27, 14, 30, tzinfo=UTC))  # 09:30 New York


def test_outside_cached_range_raises() -> None:
    with pytest.raises(ValueError):
        calendar.sessions(date(1980, 1, 1), date(1980, 2, 1))
    with pytest.raises(ValueError):
        calendar.is_session(date(2050, 1, 3))


def test_calls_read_the_cached_schedule() -> None:
    # Cheap because the exchange schedule is built once; calls after the first never rebuild it.
    calendar.is_session(date(2026, 1, 2))
    builds = calendar._schedule.cache_info().misses
    for k in range(5000):
        calendar.is_session(date(2026, 1, 1) + timedelta(days=k % 300))
        calendar.session_times(date(2026, 11, 27))
    assert calendar._schedule.cache_info().misses == builds
