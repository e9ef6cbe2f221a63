"""The Clock port: real time in production, a replay clock that jumps through simulated sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ReplayClock:
    """A clock that only moves when told to (``set``/``advance``), or at ``speed`` x real time."""

    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("ReplayClock needs a timezone-aware start time")
        self._lock = threading.Lock()
        self._anchor = start
        self._speed = speed
        self._real_anchor = datetime.now(timezone.utc)

    def now(self) -> datetime:
        with self._lock:
            return self.now_unlocked()

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ReplayClock.set needs a timezone-aware time")
        with self._lock:
            self._anchor = when
            self._real_anchor = datetime.now(timezone.utc)

    def freeze(self) -> None:
        """Stop following real time: the clock now moves only by set/advance (a replay)."""
        with self._lock:
            self._anchor = self.now_unlocked()
            self._speed = 0.0

    def follow_wall_clock(self) -> None:
        """Jump to the real time and follow it from now on (live after a replay)."""
        with self._lock:
            self._anchor = datetime.now(timezone.utc)
            self._real_anchor = self._anchor
            self._speed = 1.0

    @contextmanager
    def held_at(self, when: datetime) -> Iterator[None]:
        """Stand still at ``when`` meanwhile (a caught-up job runs as of its planned time), then resume the
        course the clock was on: following real time (so it reads the real time again) or frozen where it was."""
        if when.tzinfo is None:
            raise ValueError("ReplayClock.held_at needs a timezone-aware time")
        with self._lock:
            saved = (self._anchor, self._real_anchor, self._speed)
            self._anchor, self._real_anchor, self._speed = when, datetime.now(timezone.utc), 0.0
        try:
            yield
        finally:
            with self._lock:
                self._anchor, self._real_anchor, self._speed = saved

    def now_unlocked(self) -> datetime:
        if self._speed <= 0:
            return self._anchor
        return self._anchor + (datetime.now(timezone.utc) - self._real_anchor) * self._speed

    def advance(self, delta: timedelta) -> datetime:
        self.set(self.now() + delta)
        return self.now()


def new_york(dt: datetime) -> datetime:
    return dt.astimezone(NEW_YORK)
