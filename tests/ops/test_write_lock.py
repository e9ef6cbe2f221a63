"""Issue 12 item 2: the write lock is taken only for writes, and never across a slow market-data call."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from engine import pipeline, runtime
from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.db import read_scope, session_scope
from engine.models import JobRun, Position
from engine.operator import kill_switch_on, set_kill_switch

SLOW_SECONDS = 5.0


def _timed_kill_switch(engine) -> float:  # type: ignore[no-untyped-def]
    """What the console's kill-switch button does (app.actions.set_kill_switch), timed."""
    started = time.monotonic()
    with session_scope(engine) as s:
        set_kill_switch(s, True, "operator", datetime.now(UTC))
    return time.monotonic() - started


def test_a_long_read_does_not_hold_the_write_lock(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    reading, done = threading.Event(), threading.Event()

    def slow_reader() -> None:
        with read_scope(migrated_sqlite) as s:
            s.exec(select(JobRun)).all()
            reading.set()
            done.wait(10)  # e.g. a report built while a chain request waits on the rate limiter

    t = threading.Thread(target=slow_reader)
    t.start()
    try:
        assert reading.wait(10)
        assert _timed_kill_switch(migrated_sqlite) < 1.0
    finally:
        done.set()
        t.join()
    with read_scope(migrated_sqlite) as s:
        assert kill_switch_on(s)
        s.add(JobRun(job_id="x", trigger="t"))
        with pytest.raises(RuntimeError, match="read-only"):
            s.flush()


class SlowMarket:
    """The configured market, with every quote and chain request taking SLOW_SECONDS (Massive waiting on its
    rate limiter or backing off)."""

    def __init__(self, inner, entered: threading.Event) -> None:  # type: ignore[no-untyped-def]
        self._inner, self.entered = inner, entered

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self._inner, name)
        if name not in ("quotes", "option_chain"):
            return attr

        def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.entered.set()
            time.sleep(SLOW_SECONDS)
            return attr(*args, **kwargs)
        return slow


@pytest.fixture
def trading_ctx(tmp_path):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=300, scan_top_n=2)
    initialise(settings, sessions=300, progress=False)
    clock = ReplayClock(datetime(2026, 11, 2, 8, 30, tzinfo=NEW_YORK))
    return build_context(settings, clock=clock), clock


def _kill_switch_during(ctx, job) -> float:  # type: ignore[no-untyped-def]
    entered = threading.Event()
    fast = ctx.market
    ctx.market = SlowMarket(fast, entered)
    t = threading.Thread(target=job, args=(ctx,))
    t.start()
    try:
        assert entered.wait(120), "the job never asked the market for quotes or chains"
        time.sleep(0.5)  # well inside the 5 s call
        return _timed_kill_switch(ctx.db)
    finally:
        t.join(300)
        ctx.market = fast


@pytest.mark.slow
@pytest.mark.xfail(reason="passes once pipeline._candidate_and_order / manage_positions fetch before they write "
                          "(issue 12 item 2, done on other branches); remove this mark after the merge", strict=False)
def test_kill_switch_commits_fast_while_the_premarket_waits_on_chains(trading_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = trading_ctx
    assert _kill_switch_during(ctx, pipeline.run_premarket) < 1.0


@pytest.mark.slow
@pytest.mark.xfail(reason="passes once pipeline._candidate_and_order / manage_positions fetch before they write "
                          "(issue 12 item 2, done on other branches); remove this mark after the merge", strict=False)
def test_kill_switch_commits_fast_while_positions_are_managed(trading_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, clock = trading_ctx
    state = runtime.RuntimeState(instance="t")
    day = datetime(2026, 11, 2).date()
    runtime.replay(ctx, clock, state, day, day, speed=0, intraday_every=timedelta(minutes=60))
    with read_scope(ctx.db) as s:
        assert s.exec(select(Position).where(Position.status == "open")).first() is not None
    clock.set(datetime(2026, 11, 3, 10, 0, tzinfo=NEW_YORK))
    assert _kill_switch_during(ctx, runtime.intraday_cycle) < 1.0
