"""Issue 13 item 4: retries run inside the rate limit. Every HTTP attempt takes a limiter slot and is
counted, the backoff between attempts is the documented 2, 4, 8 s (no immediate first retry), a 429
waits its Retry-After, and a persistent 429 costs 1 + 3 attempts per call, not 15. Local fake server."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bench.data import GroupedDayGenerator
from engine.data.ratelimit import Backoff, DataSourceUnavailable, RateLimiter
from tests.data.fake_massive import FakeMassive, rate_limited, server_error
from tests.data.test_massive import END, market_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _market(fake: FakeMassive, tmp_path: Path, clock: FakeClock, limit: int | None = None, **kw):
    limiter = RateLimiter(limit, 60.0, clock=clock, sleep=clock.sleep)
    return market_for(fake, tmp_path, cache=False, limiter=limiter, backoff=Backoff.none(),
                      retry=None, sleep=clock.sleep, **kw), limiter


def test_the_backoff_is_2_4_8_seconds_and_every_attempt_takes_a_limiter_slot(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeMassive(grouped=GroupedDayGenerator(50, seed=1)) as fake:
        fake.fault("2024-03-01", server_error(), server_error(), server_error())
        market, limiter = _market(fake, tmp_path, clock)
        report = market.backfill(days=1, end=END)
    assert [s.status for s in fake.seen] == [500, 500, 500, 200] and report.days_stored == 1
    assert market.retry_waits == [2.0, 4.0, 8.0]  # documented schedule, first retry not immediate
    assert clock.sleeps == [2.0, 4.0, 8.0]
    assert limiter.acquired == 4 and market.requests_made == 4


def test_a_persistent_429_costs_four_attempts_inside_the_plan(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeMassive(grouped=GroupedDayGenerator(50, seed=1)) as fake:
        fake.fault("2024-03-01", *[rate_limited()] * 30)
        market, limiter = _market(fake, tmp_path, clock, limit=2)  # 2 requests a minute
        with pytest.raises(DataSourceUnavailable, match="429"):
            market.backfill(days=1, end=END)
        assert fake.count() == 4 and limiter.acquired == 4 and market.requests_made == 4
    # Backoff waits 2 then 4 s; after 2 attempts in 6 s the limiter holds the third until second 60,
    # the fourth until 60 s after the second attempt: the plan's 2/min is never exceeded.
    assert limiter.waited_seconds > 0
    assert clock.now >= 60.0 + 2.0 - 1e-9


def test_a_persistent_429_costs_four_attempts_with_the_production_default_backoff(tmp_path: Path) -> None:
    # No backoff= and no retry=: what from_settings builds. Only the clock and sleep are injected.
    clock = FakeClock()
    with FakeMassive(grouped=GroupedDayGenerator(50, seed=1)) as fake:
        fake.fault("2024-03-01", *[rate_limited()] * 30)
        limiter = RateLimiter(5, 60.0, clock=clock, sleep=clock.sleep)  # the free plan
        market = market_for(fake, tmp_path, cache=False, limiter=limiter, backoff=None, retry=None,
                            sleep=clock.sleep)
        with pytest.raises(DataSourceUnavailable, match="429") as err:
            market.backfill(days=1, end=END)
        assert fake.count() == 4 and limiter.acquired == 4 and market.requests_made == 4
    assert market.retry_waits == [2.0, 4.0, 8.0]
    assert clock.sleeps == [2.0, 4.0, 8.0]  # no outer 15 s / 60 s rounds on top
    assert "4 attempts" in str(err.value)


def test_a_429_waits_the_servers_retry_after(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeMassive(grouped=GroupedDayGenerator(50, seed=1)) as fake:
        fake.fault("2024-03-01", rate_limited(retry_after=7), rate_limited(retry_after=500))
        market, _ = _market(fake, tmp_path, clock)
        market.backfill(days=1, end=END)
    assert market.retry_waits == [7.0, 120.0]  # honoured, capped at 2 minutes
    assert [s.status for s in fake.seen] == [429, 429, 200]
