"""The day plan on the NYSE calendar: New York times across DST, holidays, early closes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from engine.schedule import plan_day, plan_range


def _times(day: date, job: str) -> list[datetime]:
    return [r.at for r in plan_day(day) if r.job_id == job]


def test_a_regular_day_in_new_york_time() -> None:
    day = date(2026, 10, 30)  # Friday, EDT (UTC-4)
    (pre,) = _times(day, "premarket")
    assert pre.astimezone(UTC) == datetime(2026, 10, 30, 12, 30, tzinfo=UTC)  # 08:30 EDT
    intraday = _times(day, "intraday")
    assert intraday[0].astimezone(UTC) == datetime(2026, 10, 30, 13, 35, tzinfo=UTC)  # 09:35 EDT
    assert intraday[-1].astimezone(UTC) == datetime(2026, 10, 30, 19, 55, tzinfo=UTC)  # 15:55 EDT
    assert len(intraday) == 77  # 09:35..15:55 every 5 minutes: (380 / 5) + 1
    (post,) = _times(day, "postmarket")
    assert post.astimezone(UTC) == datetime(2026, 10, 30, 20, 30, tzinfo=UTC)  # 16:30 EDT


def test_the_dst_change_moves_utc_times_not_new_york_times() -> None:
    before, after = date(2026, 10, 30), date(2026, 11, 2)  # DST ends Sunday 2026-11-01
    (pre_before,), (pre_after,) = _times(before, "premarket"), _times(after, "premarket")
    assert pre_before.astimezone(UTC).hour == 12 and pre_after.astimezone(UTC).hour == 13  # 08:30 EDT / EST
    assert _times(after, "intraday")[0].astimezone(UTC) == datetime(2026, 11, 2, 14, 35, tzinfo=UTC)
    # 72 hours of wall clock plus the hour given back when DST ended
    assert pre_after.astimezone(UTC) - pre_before.astimezone(UTC) == timedelta(days=3, hours=1)


def test_holidays_get_only_the_nightly_upkeep() -> None:
    thanksgiving = date(2026, 11, 26)
    assert [r.job_id for r in plan_day(thanksgiving)] == ["nightly"]
    weekend = date(2026, 11, 28)
    assert [r.job_id for r in plan_day(weekend)] == ["nightly"]


def test_early_close_the_day_after_thanksgiving() -> None:
    day = date(2026, 11, 27)  # NYSE closes at 13:00 EST
    intraday = _times(day, "intraday")
    assert intraday[-1].astimezone(UTC) == datetime(2026, 11, 27, 17, 55, tzinfo=UTC)  # 12:55 EST
    (post,) = _times(day, "postmarket")
    assert post.astimezone(UTC) == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 13:30 EST
    assert len(intraday) == 41  # 09:35..12:55: (200 / 5) + 1


def test_plan_range_is_in_time_order() -> None:
    runs = plan_range(date(2026, 11, 25), date(2026, 11, 30))
    assert [r.at for r in runs] == sorted(r.at for r in runs)
    assert {r.at.date() for r in runs if r.job_id == "premarket"} == {
        date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)}
