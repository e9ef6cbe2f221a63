"""Whole trading days on the simulated market: the same steps the scheduler runs, end to end."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.execution.reconcile import engine_cash, reconcile
from engine.models import AccountSnapshot, Order, Position
from engine.replay import run_days

START = date(2026, 8, 3)
DAYS = 20


@pytest.fixture(scope="module")
def twenty_days(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data_dir: Path = tmp_path_factory.mktemp("twenty-days")
    settings = load_settings(data_dir=data_dir, sim_symbols=1500)
    initialise(settings, sessions=330, progress=False)
    clock = ReplayClock(datetime.combine(START, time(8, 0), NEW_YORK))
    ctx = build_context(settings, clock=clock)
    summaries = run_days(ctx, clock, START, DAYS, every_minutes=30)
    return ctx, summaries


def test_twenty_days_trade_enter_scale_out_stop_and_expire(twenty_days) -> None:  # type: ignore[no-untyped-def]
    ctx, summaries = twenty_days
    assert len(summaries) == DAYS
    with Session(ctx.db) as s:
        orders = s.exec(select(Order)).all()
    entries = [o for o in orders if o.intent == "open" and o.status == "filled"]
    scale_outs = [o for o in orders if ":t" in o.decision_key and o.filled_quantity > 0]
    stops = [o for o in orders if o.intent == "close" and "stop_hit" in o.reason and o.filled_quantity > 0]
    expired = [o for o in orders if o.status == "expired"]
    assert len(entries) >= 5
    assert scale_outs, "no scale-out filled"
    assert stops, "no stop filled"
    assert expired, "no day order expired"
    # every order ended in a terminal state after the last post-market
    assert {o.status for o in orders} <= {"filled", "cancelled", "rejected", "expired"}


def test_final_equity_is_cash_plus_marks_to_the_cent_and_matches_the_broker(twenty_days) -> None:  # type: ignore[no-untyped-def]
    ctx, summaries = twenty_days
    start_cash = Decimal(str(ctx.settings.starting_cash))
    with Session(ctx.db) as s:
        snap = s.exec(select(AccountSnapshot).order_by(AccountSnapshot.id.desc())).first()
        positions = s.exec(select(Position)).all()
        cash = engine_cash(s, start_cash)
    assert snap is not None
    open_value = sum((p.mark * p.quantity * 100 for p in positions if p.status == "open"), Decimal(0))
    assert snap.cash == cash.quantize(Decimal("0.01"))
    assert snap.positions_value == open_value.quantize(Decimal("0.01"))
    assert snap.equity == snap.cash + snap.positions_value
    # accounting identity: start + realized + unrealized = cash + positions
    realized = sum((p.realized_pnl for p in positions), Decimal(0))
    unrealized = sum((p.unrealized_pnl for p in positions if p.status == "open"), Decimal(0))
    assert (start_cash + realized + unrealized).quantize(Decimal("0.01")) == snap.equity
    # the paper broker, marking the same positions at the same time, agrees to the cent
    assert Decimal(snap.detail["broker_equity"]) == snap.equity
    assert summaries[-1].equity == snap.equity


def test_engine_and_broker_books_agree(twenty_days) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = twenty_days
    run = reconcile(ctx.db, ctx.broker, Decimal(str(ctx.settings.starting_cash)), ctx.now)
    assert run.differences == []
    assert ctx.broker.check_books() == []


def test_run_day_runs_the_schedulers_own_job_table(twenty_days) -> None:  # type: ignore[no-untyped-def]
    """run-day walks schedule.plan_day through runtime.run_job: one recorded run per planned job."""
    from datetime import timedelta

    from engine.data import calendar
    from engine.models import JobRun
    from engine.schedule import plan_day

    ctx, _ = twenty_days
    days = [d.astype(object) for d in calendar.sessions(START, START + timedelta(days=DAYS * 2 + 10))[:DAYS]]
    planned = [(r.job_id, f"replay@{r.at.isoformat()}") for d in days for r in plan_day(d, timedelta(minutes=30))]
    with Session(ctx.db) as s:
        ran = [(j.job_id, j.trigger) for j in s.exec(select(JobRun).where(JobRun.trigger.like("replay@%"))
                                                     .order_by(JobRun.id)).all() if not j.job_id.startswith("notify:")]
        outcomes = {j.outcome for j in s.exec(select(JobRun).where(JobRun.trigger.like("replay@%"))).all()}
    assert ran == planned
    assert outcomes == {"ok"}
