"""Run whole trading days on a replay clock: the same pipeline steps the scheduler calls, in order.

Used by `python -m engine run-day`, by the scheduler's replay mode, by the chaos test and by benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlmodel import func, select

from engine import pipeline
from engine.clock import NEW_YORK, ReplayClock
from engine.context import EngineContext
from engine.data import calendar
from engine.db import session_scope
from engine.models import AccountSnapshot, Fill, Order, Position, Signal

PREMARKET = time(8, 30)
POSTMARKET_DELAY = timedelta(minutes=30)


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
    lines: list[str] = field(default_factory=list)

    def headline(self) -> str:
        orders = ", ".join(f"{k} {v}" for k, v in sorted(self.orders.items())) or "none"
        return (f"{self.day}: {self.signals} signals; orders: {orders}; {self.fills} fills; {self.exits} exits; "
                f"equity ${self.equity:,.2f} (cash ${self.cash:,.2f} + positions ${self.positions_value:,.2f})")


def cycle_times(day: date, every_minutes: int) -> list[datetime]:
    """Intraday cycle times: from 5 minutes after the open to 5 minutes before the (early) close."""
    times = calendar.session_times(day)
    if times is None:
        return []
    open_, close = times
    out, t = [], open_ + timedelta(minutes=5)
    while t <= close - timedelta(minutes=5):
        out.append(t)
        t += timedelta(minutes=every_minutes)
    return out


def run_day(ctx: EngineContext, clock: ReplayClock, day: date, every_minutes: int = 30,
            echo: Callable[[str], None] | None = None) -> DaySummary:
    """Pre-market, the intraday cycles, post-market; returns what happened."""
    summary = DaySummary(day)
    times = calendar.session_times(day)
    if times is None:
        summary.lines.append(f"{day}: not a trading day")
        return summary
    say = echo or (lambda _line: None)
    started = datetime.combine(day, PREMARKET, NEW_YORK)
    clock.set(started)
    report = pipeline.run_premarket(ctx)
    _emit(report, say, summary)
    for t in cycle_times(day, every_minutes):
        clock.set(t)
        for step in (pipeline.execute_orders, pipeline.manage_positions, pipeline.execute_orders):
            _emit(step(ctx), say, summary)
    clock.set(times[1] + POSTMARKET_DELAY)
    _emit(pipeline.run_postmarket(ctx), say, summary)
    _summarise(ctx, summary, started)
    return summary


def _emit(report: pipeline.StepReport, say: Callable[[str], None], summary: DaySummary) -> None:
    for line in report.lines:
        say(f"  [{report.at.astimezone(NEW_YORK):%H:%M}] {report.step}: {line}")
        summary.lines.append(line)


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
        snap = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.id.desc())).first()
        if snap is not None:
            summary.equity, summary.cash, summary.positions_value = snap.equity, snap.cash, snap.positions_value
        held = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
        summary.lines.append(f"open positions: {held}")


def run_days(ctx: EngineContext, clock: ReplayClock, start: date, days: int, every_minutes: int = 30,
             echo: Callable[[str], None] | None = None, detail: bool = True) -> list[DaySummary]:
    sessions = calendar.sessions(start, start + timedelta(days=days * 2 + 10))[:days]
    out = []
    for d in sessions:
        summary = run_day(ctx, clock, d.astype(object), every_minutes, echo if detail else None)
        if echo:
            echo(summary.headline())
        out.append(summary)
    return out
