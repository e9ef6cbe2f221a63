"""Issue 12 items 4 and 7 with the real jobs on the simulated market: a restart the next morning catches the
previous session's post-market up as of that session, and a pre-market that fails after placing orders
still reports what it did."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from engine import pipeline, runtime
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import EngineContext, build_context
from engine.data.sources import bar_store
from engine.data.universe import sync_universe
from engine.db import migrate, session_scope
from engine.models import AccountSnapshot, JobRun, NotificationOutbox, Order, Signal
from engine.portfolio.exposure import day_start_equity

TUE, WED = date(2026, 11, 3), date(2026, 11, 4)


def _ny(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=NEW_YORK)


def _sim(tmp_path: Path, at: datetime) -> tuple[EngineContext, ReplayClock]:
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=300)
    migrate(settings.db_url)
    clock = ReplayClock(at)  # frozen: stands in for the wall clock the scheduler's clock follows
    ctx = build_context(settings, clock=clock)
    with session_scope(ctx.db) as s:  # sectors, so the sector limit lets entries through as a real run does
        sync_universe(s, ctx.market.universe(), ctx.market.name)
    return ctx, clock


def _run_at(ctx: EngineContext, clock: ReplayClock, state: runtime.RuntimeState, job_id: str,
            at: datetime) -> JobRun:
    clock.set(at)
    run = runtime.run_job(ctx, state, job_id, "schedule")
    assert run is not None
    # record_run stamps the wall clock; the run happened at ``at`` on the clock this test stands in for
    with session_scope(ctx.db) as s:
        for row in s.exec(select(JobRun).where(col(JobRun.id) >= run.id)).all():
            row.started_at = row.finished_at = at
            s.add(row)
    return run


def test_a_restart_next_morning_catches_up_the_post_market_as_of_its_session(tmp_path: Path) -> None:
    ctx, clock = _sim(tmp_path, _ny(TUE, 8, 30))
    state = runtime.RuntimeState(instance="before-the-kill")
    # Tuesday: pre-market and one intraday cycle ran, then the scheduler was killed before the 16:30 post-market
    assert _run_at(ctx, clock, state, "premarket", _ny(TUE, 8, 30)).outcome == "ok"
    assert _run_at(ctx, clock, state, "intraday", _ny(TUE, 10)).outcome == "ok"
    # restarted on Wednesday at 08:00, before Wednesday's session has traded
    restart = _ny(WED, 8)
    clock.set(restart)
    state = runtime.RuntimeState(instance="after-the-restart")
    done = runtime.catch_up(ctx, state, restart.astimezone(UTC))
    assert [(r.job_id, r.at) for r in done] == [("postmarket", _ny(TUE, 16, 30)), ("nightly", _ny(TUE, 20))]
    assert clock.now() == restart  # back on its own course after the catch-up
    with Session(ctx.db) as s:
        runs = s.exec(select(JobRun).where(col(JobRun.job_id).in_(("postmarket", "nightly")))).all()
        assert [r.outcome for r in runs] == ["ok", "ok"], [r.error for r in runs]
        snaps = s.exec(select(AccountSnapshot)).all()
        # the caught-up post-market's snapshot is Tuesday's, taken as of Tuesday's close
        assert [(x.trade_date, x.at.replace(tzinfo=UTC)) for x in snaps] == [(TUE, _ny(TUE, 16, 30).astimezone(UTC))]
        # Wednesday's daily-loss limit measures from it (not from an older snapshot or the starting cash)
        assert day_start_equity(s, _ny(WED, 10)) == snaps[0].equity
    # no bar of Wednesday, a session that has not traded yet, was stored (look-ahead)
    stored = bar_store(ctx.settings).stored_dates()
    assert stored[-1].astype(object) == TUE


def test_a_pre_market_that_fails_after_placing_orders_still_reports_them(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _clock = _sim(tmp_path, _ny(TUE, 8, 30))

    def premarket_then_fail(c: EngineContext) -> None:
        pipeline.run_premarket(c)  # the real pre-market: scan, candidates, entry orders
        raise RuntimeError("pre-market broke after placing its orders")

    monkeypatch.setitem(runtime.JOBS, "premarket", premarket_then_fail)
    run = runtime.run_job(ctx, runtime.RuntimeState(instance="t"), "premarket", "schedule")  # the real after_job
    assert run is not None and run.outcome == "error"
    with Session(ctx.db) as s:
        orders = s.exec(select(Order).where(Order.intent == "open")).all()
        ordered = s.exec(select(Signal).where(Signal.status == "ordered")).all()
        box = {r.idempotency_key: r for r in s.exec(select(NotificationOutbox)).all()}
    assert orders and ordered  # it did place orders before failing
    brew = box.get(f"morning_brew:{TUE.isoformat()}")
    assert brew is not None and brew.channel == "morning_brew"
    for sig in ordered:
        assert sig.symbol in str(brew.payload)
    assert any(r.kind == "job_failure" and r.channel == "system_status" for r in box.values())
