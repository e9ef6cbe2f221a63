"""Run whole trading days on a replay clock through the scheduler's own job table.

``run_day`` walks ``schedule.plan_day`` and runs each planned job with ``runtime.run_job``: the same jobs,
in the same order, with the same bookkeeping (job runs, settings refresh, reports) as the scheduler process,
so `python -m engine run-day`, the scheduler and the backtester's validation cannot drift apart.
Used by `python -m engine run-day`, by tests and by benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import func, select

from engine.clock import NEW_YORK, ReplayClock
from engine.context import EngineContext
from engine.data import calendar
from engine.db import session_scope
from engine.execution.reconcile import SETTLEMENT_KINDS, engine_cash
from engine.models import AccountSnapshot, Fill, Order, Position, Signal, Transaction
from engine.portfolio.accounting import cents
from engine.portfolio.marks import positions_value
from engine.schedule import plan_day

STUCK_AFTER_ATTEMPTS = 3  # an exit tried more often than this is stuck (refused or never filling)


@dataclass
class DaySummary:
    day: date
    signals: int = 0
    orders: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    exits: int = 0
    equity: Decimal | None = None
    cash: Decimal | None = None
    positions_value: Decimal | None = None
    job_errors: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def headline(self) -> str:
        orders = ", ".join(f"{k} {v}" for k, v in sorted(self.orders.items())) or "none"
        errors = f"; {len(self.job_errors)} job errors" if self.job_errors else ""
        if self.equity is None:
            return f"{self.day}: {self.signals} signals; orders: {orders}{errors}"
        return (f"{self.day}: {self.signals} signals; orders: {orders}; {self.fills} fills; {self.exits} exits; "
                f"equity ${self.equity:,.2f} (cash ${self.cash:,.2f} + positions ${self.positions_value:,.2f})"
                f"{errors}")


def run_day(ctx: EngineContext, clock: ReplayClock, day: date, every_minutes: int = 30,
            echo: Callable[[str], None] | None = None, state: Any = None) -> DaySummary:
    """Every job the scheduler plans for ``day`` (pre-market, intraday cycles, post-market, nightly)."""
    from engine import runtime

    summary = DaySummary(day)
    say = echo or (lambda _line: None)
    state = state or runtime.RuntimeState(instance="run-day", mode="replay")
    runs = plan_day(day, timedelta(minutes=every_minutes))
    if calendar.session_times(day) is None:
        summary.lines.append(f"{day}: not a trading day")
    started = runs[0].at if runs else datetime.combine(day, datetime.min.time(), NEW_YORK)
    for planned in runs:
        clock.set(planned.at)
        run = runtime.run_job(ctx, state, planned.job_id, f"replay@{planned.at.isoformat()}")
        if run is None:
            continue
        for line in (run.detail or {}).get("lines", []):
            say(f"  [{planned.at.astimezone(NEW_YORK):%H:%M}] {planned.job_id}: {line}")
            summary.lines.append(line)
        if run.outcome != "ok":
            summary.job_errors.append(f"{planned.job_id}@{planned.at:%H:%M}: {run.error}")
            say(f"  [{planned.at.astimezone(NEW_YORK):%H:%M}] {planned.job_id} FAILED: {run.error}")
    _summarise(ctx, summary, started)
    return summary


def _summarise(ctx: EngineContext, summary: DaySummary, since: datetime) -> None:
    with session_scope(ctx.db) as session:
        summary.signals = session.exec(select(func.count()).select_from(Signal)
                                       .where(Signal.data_date == calendar.previous_session(summary.day))).one()
        rows = session.exec(select(Order.status, func.count()).where(Order.created_at >= since)
                            .group_by(Order.status)).all()
        summary.orders = dict(rows)
        summary.fills = session.exec(select(func.count()).select_from(Fill).where(Fill.filled_at >= since)).one()
        summary.exits = session.exec(select(func.count()).select_from(Order)
                                     .where(Order.intent != "open", Order.created_at >= since)).one()
        snap = session.exec(select(AccountSnapshot).where(AccountSnapshot.trade_date == summary.day)
                            .order_by(AccountSnapshot.id.desc())).first()
        if snap is not None:
            summary.equity, summary.cash, summary.positions_value = snap.equity, snap.cash, snap.positions_value
        held = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
        summary.lines.append(f"open positions: {held}")


def run_days(ctx: EngineContext, clock: ReplayClock, start: date, days: int, every_minutes: int = 30,
             echo: Callable[[str], None] | None = None, detail: bool = True) -> list[DaySummary]:
    from engine import runtime

    state = runtime.RuntimeState(instance="run-day", mode="replay")
    sessions = calendar.sessions(start, start + timedelta(days=days * 2 + 10))[:days]
    out = []
    for d in sessions:
        summary = run_day(ctx, clock, d.astype(object), every_minutes, echo if detail else None, state)
        if echo:
            echo(summary.headline())
        out.append(summary)
    return out


def books_summary(ctx: EngineContext) -> dict[str, Any]:
    """The engine's books against the broker's at the clock's time: the run-day JSON line."""
    with session_scope(ctx.db) as session:
        cash = cents(engine_cash(session, Decimal(str(ctx.settings.starting_cash))))
        value = cents(positions_value(session))
        expiries = session.exec(select(func.count()).select_from(Transaction)
                                .where(Transaction.type.in_(SETTLEMENT_KINDS))).one()
        attempts = session.exec(select(Order.decision_key, func.max(Order.attempt)).where(Order.intent != "open")
                                .group_by(Order.decision_key)).all()
        stuck = sum(1 for _, n in attempts if (n or 0) > STUCK_AFTER_ATTEMPTS)
        kinds = dict(session.exec(select(Position.structure, func.count()).group_by(Position.structure)).all())
        open_positions = session.exec(select(func.count()).select_from(Position)
                                      .where(Position.status == "open")).one()
        snap = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.id.desc())).first()
    account = ctx.broker.account()
    # Both equities at one instant: the post-market snapshot holds the engine's and the broker's side by side
    # (marks move after it); without one, both are read now.
    if snap is not None and snap.detail.get("broker_equity") is not None:
        equity_engine, equity_broker = snap.equity, Decimal(str(snap.detail["broker_equity"]))
    else:
        equity_engine, equity_broker = cash + value, account.equity
    return {
        "equity_engine": float(equity_engine), "equity_broker": float(equity_broker),
        "difference": float(cents(equity_engine - equity_broker)),
        "cash_engine": float(cash), "cash_broker": float(account.cash),
        "expiries_settled": int(expiries), "stuck_exits": stuck,
        "structures": {k: int(v) for k, v in sorted(kinds.items())}, "open_positions": int(open_positions),
    }
