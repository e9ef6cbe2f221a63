"""NYSE trading sessions (holidays, early closes) from ``pandas_market_calendars``.

The whole schedule for a wide fixed range is computed once and kept as numpy arrays, so every
function here is a binary search: they sit on hot paths (the simulated market, the clock, the
scheduler). Trading dates are exchange dates in America/New_York: a timezone-aware datetime is
first converted to New York time and its date used; naive datetimes are taken as New York time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

__all__ = [
    "FIRST_DAY",
    "LAST_DAY",
    "NEW_YORK",
    "is_open",
    "is_session",
    "last_session_on_or_before",
    "next_session",
    "previous_session",
    "session_index",
    "session_minutes",
    "session_times",
    "sessions",
    "sessions_back",
    "to_session_day",
]

NEW_YORK = ZoneInfo("America/New_York")
# The cached span. Outside it every function raises ValueError rather than guess.
FIRST_DAY = date(1990, 1, 1)
LAST_DAY = date(2040, 12, 31)

DayLike = date | datetime | np.datetime64 | pd.Timestamp | str


class _Schedule(NamedTuple):
    days: np.ndarray  # datetime64[D], every session in [FIRST_DAY, LAST_DAY]
    open_ns: np.ndarray  # int64 UTC epoch nanoseconds of each session's open
    close_ns: np.ndarray  # ... and close (early closes included)


@lru_cache(maxsize=1)
def _schedule() -> _Schedule:
    import pandas_market_calendars as mcal

    sched = mcal.get_calendar("XNYS").schedule(FIRST_DAY.isoformat(), LAST_DAY.isoformat())
    days = np.asarray(sched.index.values, dtype="datetime64[D]")
    open_ns = sched["market_open"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    close_ns = sched["market_close"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    return _Schedule(days, open_ns.astype(np.int64), close_ns.astype(np.int64))


def to_session_day(d: DayLike) -> np.datetime64:
    """The exchange date of ``d`` as datetime64[D] (tz-aware datetimes are read in New York time)."""
    if isinstance(d, np.datetime64):
        return d.astype("datetime64[D]")
    if isinstance(d, str):
        return np.datetime64(pd.Timestamp(d).date(), "D")
    if isinstance(d, datetime):  # pd.Timestamp is a datetime
        if d.tzinfo is not None:
            d = d.astimezone(NEW_YORK)
        return np.datetime64(date(d.year, d.month, d.day), "D")
    if isinstance(d, date):
        return np.datetime64(d, "D")
    raise TypeError(f"not a date: {d!r}")


def _check(day: np.datetime64) -> None:
    if not (np.datetime64(FIRST_DAY, "D") <= day <= np.datetime64(LAST_DAY, "D")):
        raise ValueError(f"{day} is outside the cached NYSE calendar ({FIRST_DAY}..{LAST_DAY})")


def _as_date(day: np.datetime64) -> date:
    return day.astype(object)


def sessions(start: DayLike, end: DayLike) -> np.ndarray:
    """NYSE sessions in [start, end] as an ascending datetime64[D] array (empty when start > end)."""
    days = _schedule().days
    lo, hi = to_session_day(start), to_session_day(end)
    _check(lo)
    _check(hi)
    i = int(np.searchsorted(days, lo, side="left"))
    j = int(np.searchsorted(days, hi, side="right"))
    return days[i:j].copy()


@lru_cache(maxsize=16384)
def _position(day: np.datetime64) -> int:
    """Index of ``day`` in the cached schedule, -1 when it is no session (memoised: the venue, the clock and
    the simulated market ask about the same few days thousands of times a session)."""
    _check(day)
    days = _schedule().days
    i = int(np.searchsorted(days, day))
    return i if i < len(days) and days[i] == day else -1


@lru_cache(maxsize=16384)
def _times(i: int) -> tuple[datetime, datetime]:
    sched = _schedule()
    return _ns_to_ny(int(sched.open_ns[i])), _ns_to_ny(int(sched.close_ns[i]))


def session_index(d: DayLike) -> int:
    """Position of session ``d`` in the cached schedule; ValueError when ``d`` is not a session."""
    day = to_session_day(d)
    i = _position(day)
    if i < 0:
        raise ValueError(f"{day} is not an NYSE session")
    return i


def is_session(d: DayLike) -> bool:
    return _position(to_session_day(d)) >= 0


def session_times(d: DayLike) -> tuple[datetime, datetime] | None:
    """(open, close) of session ``d`` as America/New_York datetimes, None when ``d`` is no session."""
    i = _position(to_session_day(d))
    return None if i < 0 else _times(i)


def _ns_to_ny(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=ZoneInfo("UTC")).astimezone(NEW_YORK)


def session_minutes(d: DayLike) -> int:
    """Length of session ``d`` in minutes (390 normally, 210 on an early close, 0 when closed)."""
    i = _position(to_session_day(d))
    if i < 0:
        return 0
    sched = _schedule()
    return int((sched.close_ns[i] - sched.open_ns[i]) // 60_000_000_000)


def is_open(at: datetime) -> bool:
    """True when the exchange is in its regular session at tz-aware ``at`` (open <= at < close)."""
    if at.tzinfo is None:
        raise ValueError("is_open needs a timezone-aware datetime")
    times = session_times(at)
    return times is not None and times[0] <= at < times[1]


def next_session(d: DayLike) -> date:
    """The first session strictly after ``d``."""
    day = to_session_day(d)
    _check(day)
    days = _schedule().days
    i = int(np.searchsorted(days, day, side="right"))
    if i >= len(days):
        raise ValueError(f"no session after {day} in the cached calendar")
    return _as_date(days[i])


def previous_session(d: DayLike) -> date:
    """The last session strictly before ``d``."""
    day = to_session_day(d)
    _check(day)
    days = _schedule().days
    i = int(np.searchsorted(days, day, side="left"))
    if i == 0:
        raise ValueError(f"no session before {day} in the cached calendar")
    return _as_date(days[i - 1])


def sessions_back(end: DayLike, n: int) -> np.ndarray:
    """The ``n`` sessions ending at or before ``end`` (ascending datetime64[D])."""
    if n < 0:
        raise ValueError("n must be >= 0")
    day = to_session_day(end)
    _check(day)
    days = _schedule().days
    j = int(np.searchsorted(days, day, side="right"))
    if j < n:
        raise ValueError(f"fewer than {n} sessions before {day} in the cached calendar")
    return days[j - n : j].copy()


def last_session_on_or_before(d: DayLike) -> date:
    """``d`` itself when it is a session, else the previous session."""
    return _as_date(sessions_back(d, 1)[0])


def last_completed_session(now: datetime, delay: timedelta = timedelta(0)) -> date:
    """The newest session whose daily bar is final at ``now`` (tz-aware): today once its close (plus
    ``delay``, e.g. a data vendor's publishing lag) has passed, else the previous session."""
    ny = now.astimezone(NEW_YORK)
    times = session_times(ny.date())
    if times is not None and ny >= times[1] + delay:
        return ny.date()
    return previous_session(ny.date())
