"""Portfolio digest, trade statistics, drawdown, tomorrow's plan and the post-market report."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import not_
from sqlmodel import Session, col, select

from engine.clock import NEW_YORK
from engine.config import Settings
from engine.data import calendar
from engine.models import (
    AccountSnapshot,
    Fill,
    Order,
    OrderEvent,
    Position,
    ScanResult,
    ScanRun,
)
from engine.notify.embeds import GREY, Message
from engine.notify.reports.format import (
    PLAN_ABOVE,
    PLAN_BELOW,
    TOP_LIST,
    TOP_POSITIONS,
    Report,
    _day_bounds,
    _dec,
    _lines,
    big_money,
    market_date,
    money,
    net,
    plural,
    pnl_color,
    price,
    r_multiple,
    session_line,
    share,
    signed_pct,
)
from engine.notify.reports.reads import open_positions, strategy_params
from engine.readings import latest_scan, latest_snapshot, position_r


def _greek(pos: Position, name: str) -> float:
    try:
        return float(pos.greeks.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def position_line(pos: Position) -> str:
    total = _dec(pos.realized_pnl) + _dec(pos.unrealized_pnl)
    return (f"**{pos.symbol}** {pos.structure} x{pos.quantity} · entry {net(pos.entry_price)} · "
            f"mark {net(pos.mark)} · P&L {money(total, signed=True)} "
            f"(unrealized {money(pos.unrealized_pnl, signed=True)}) · "
            f"Δ {_greek(pos, 'delta'):.1f} Θ {_greek(pos, 'theta'):.2f} V {_greek(pos, 'vega'):.2f} · "
            f"stop {price(pos.stop)}")


def portfolio_digest(session: Session, settings: Settings, now: datetime) -> Report:
    today = market_date(now)
    key = f"digest:{today.isoformat()}"
    snap = latest_snapshot(session, today)
    if snap is None:
        return Report("portfolio", key, Message(title=f"Portfolio digest: {today.isoformat()}",
                                                description="No account snapshot stored yet.", color=GREY,
                                                kind="digest"))
    starting = _dec(settings.starting_cash)
    day_pnl = _dec(snap.detail.get("day_pnl", 0))
    prev_equity = _dec(snap.equity) - day_pnl
    total = _dec(snap.equity) - starting
    positions = open_positions(session)
    heat = _dec(snap.open_risk)
    heat_pct = float(heat / _dec(snap.equity) * 100) if snap.equity > 0 else None
    listed = _lines((position_line(p) for p in positions[:TOP_POSITIONS]), "No open positions.")
    if len(positions) > TOP_POSITIONS:
        listed += f"\n... and {len(positions) - TOP_POSITIONS} more"
    greeks = ", ".join(f"{name} {sum(_greek(p, key_) for p in positions):,.2f}"
                       for name, key_ in (("delta", "delta"), ("theta/day", "theta"), ("vega", "vega")))
    return Report("portfolio", key, Message(
        title=f"Portfolio digest: {today.isoformat()}",
        description=(f"Equity **{money(snap.equity)}** = cash {money(snap.cash)} + positions "
                     f"{money(snap.positions_value)}"),
        fields=[
            ("Day P&L", f"{money(day_pnl, signed=True)} "
                        f"({signed_pct(day_pnl / prev_equity * 100 if prev_equity > 0 else None)})", True),
            ("Total P&L", f"{money(total, signed=True)} ({signed_pct(total / starting * 100)}) "
                          f"since {money(starting)}", True),
            ("Realized today", money(snap.realized_pnl_day, signed=True), True),
            ("Unrealized", money(snap.unrealized_pnl, signed=True), True),
            ("Heat", f"{money(heat)} = {'n/a' if heat_pct is None else f'{heat_pct:.2f}%'} of equity "
                     f"(limit {settings.risk.max_heat_pct:.2f}%)", True),
            ("Open positions", f"{len(positions)} / {settings.risk.max_open_positions}", True),
            ("Portfolio greeks", greeks if positions else "n/a", False),
            ("Positions", listed, False),
        ],
        color=pnl_color(day_pnl), footer=f"snapshot #{snap.id} at {snap.trade_date.isoformat()}",
        timestamp=snap.at, kind="digest",
    ))


# --- post-market report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeStats:
    closed: int
    winners: int
    r_multiples: list[float]
    realized: Decimal

    @property
    def win_rate(self) -> float | None:
        return self.winners / self.closed if self.closed else None


def trade_stats(session: Session) -> TradeStats:
    rows = session.exec(select(Position).where(Position.status == "closed")).all()
    rs = [r for r in (position_r(p) for p in rows) if r is not None]
    return TradeStats(len(rows), sum(1 for p in rows if _dec(p.realized_pnl) > 0), rs,
                      sum((_dec(p.realized_pnl) for p in rows), Decimal("0")))


def stats_text(stats: TradeStats) -> str:
    if not stats.closed:
        return "No closed positions yet."
    lines = [f"Win rate {stats.winners}/{stats.closed} = {share(stats.win_rate)}",
             f"Realized on closed positions {money(stats.realized, signed=True)}"]
    if stats.r_multiples:
        rs = stats.r_multiples
        lines.append(f"R multiples: average {r_multiple(statistics.fmean(rs))}, total {r_multiple(sum(rs))}, "
                     f"best {r_multiple(max(rs))}, worst {r_multiple(min(rs))}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Drawdown:
    equity: Decimal
    peak: Decimal
    peak_date: date
    max_drawdown_pct: float

    @property
    def amount(self) -> Decimal:
        return self.equity - self.peak

    @property
    def pct(self) -> float:
        return float(self.amount / self.peak * 100) if self.peak > 0 else 0.0


def drawdown(session: Session, up_to: date) -> Drawdown | None:
    snaps = session.exec(select(AccountSnapshot).where(AccountSnapshot.source == "engine",
                                                       AccountSnapshot.trade_date <= up_to)
                         .order_by(AccountSnapshot.trade_date, col(AccountSnapshot.at), col(AccountSnapshot.id))).all()
    if not snaps:
        return None
    peak, peak_date, worst = _dec(snaps[0].equity), snaps[0].trade_date, 0.0
    for s in snaps:
        eq = _dec(s.equity)
        if eq > peak:
            peak, peak_date = eq, s.trade_date
        if peak > 0:
            worst = min(worst, float((eq - peak) / peak * 100))
    return Drawdown(_dec(snaps[-1].equity), peak, peak_date, worst)


def plan_candidates(session: Session, run: ScanRun, settings: Settings) -> list[tuple[ScanResult, str]]:
    """Tomorrow's watch list from ``run``: names one step from an entry signal.

    A symbol that passed the data gate and has no signal qualifies when exactly one entry rule fails and that
    rule is either the zone with atr_distance in [-0.5, 0) or (4, 4.5], or any other filter (ATR%, range
    position, close, dollar volume, close > SMA20, aligned MAs) while the symbol is inside the entry zone."""
    p = strategy_params(run, settings)
    lo, hi = float(p.get("entry_min_distance", 0.0)), float(p.get("entry_max_distance", 4.0))
    rows = session.exec(select(ScanResult).where(
        ScanResult.scan_run_id == run.id, col(ScanResult.excluded_reason).is_(None), not_(col(ScanResult.signal)),
        col(ScanResult.atr_distance) >= lo - PLAN_BELOW, col(ScanResult.atr_distance) <= hi + PLAN_ABOVE,
    ).order_by(col(ScanResult.rank))).all()
    out = []
    for r in rows:
        failing = _failing_filters(r, p, lo, hi)
        if len(failing) == 1:
            out.append((r, failing[0]))
    return out


def _failing_filters(r: ScanResult, p: dict[str, Any], lo: float, hi: float) -> list[str]:
    def below(value: float | None, limit: float) -> bool:
        return value is None or value < limit

    fails = []
    d = r.atr_distance
    if d is None or not lo <= d <= hi:
        fails.append(f"ATR distance {d:+.2f} outside [{lo:g}, {hi:g}]" if d is not None else "no ATR distance")
    if below(r.atr_pct, float(p.get("min_atr_pct", 0))):
        fails.append(f"ATR% {r.atr_pct or 0:.2f}% < {float(p.get('min_atr_pct', 0)):g}%")
    if below(r.range_pos_20, float(p.get("min_range_pos", 0))):
        fails.append(f"range position {r.range_pos_20 or 0:.1f} < {float(p.get('min_range_pos', 0)):g}")
    if below(r.close, float(p.get("min_close", 0))):
        fails.append(f"close {price(r.close)} < {float(p.get('min_close', 0)):g}")
    if below(r.dollar_volume_20, float(p.get("min_dollar_volume", 0))):
        fails.append(f"dollar volume {big_money(r.dollar_volume_20)} < "
                     f"{big_money(float(p.get('min_dollar_volume', 0)))}")
    if p.get("require_close_above_sma_fast", True) and (r.close is None or r.sma20 is None or r.close <= r.sma20):
        fails.append(f"close {price(r.close)} <= SMA20 {price(r.sma20)}")
    if p.get("require_ma_aligned", True) and not r.ma_aligned:
        fails.append("MAs not aligned")
    return fails


def plan_text(session: Session, settings: Settings, today: date) -> str:
    try:
        nxt = calendar.next_session(today)
        head = f"Next session {session_line(nxt)}"
    except ValueError:
        head = "No next session in the calendar"
    run = latest_scan(session)
    if run is None:
        return head + "\nNo scan stored: no watch list."
    picks = plan_candidates(session, run, settings)
    if not picks:
        return head + f"\nNo symbols one step from an entry in the {run.data_date.isoformat()} scan."
    lines = [f"**{r.symbol}** {price(r.close)} · ATR distance {r.atr_distance:+.2f} · missing: {why}"
             for r, why in picks[:TOP_LIST]]
    more = f"\n... and {len(picks) - TOP_LIST} more" if len(picks) > TOP_LIST else ""
    return (head + f"\nOne step from an entry signal (scan of {run.data_date.isoformat()}; "
            f"tomorrow's pre-market rescans with today's bars):\n" + "\n".join(lines) + more)


def last_reason(session: Session, order: Order, limit: int = 160) -> str:
    event = session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id)
                         .order_by(col(OrderEvent.id).desc())).first()
    text = event.reason if event is not None and event.reason else "no reason recorded"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def postmarket_report(session: Session, settings: Settings, now: datetime) -> Report:
    today = market_date(now)
    start, end = _day_bounds(today, now.tzinfo)
    orders = list(session.exec(select(Order).where(Order.created_at >= start, Order.created_at < end)
                               .order_by(col(Order.id))).all())
    day_fills = list(session.exec(select(Fill).where(Fill.filled_at >= start, Fill.filled_at < end)).all())
    snap = latest_snapshot(session, today)
    by_status = Counter(f"{o.intent} {o.status}" for o in orders)
    order_lines = [f"{o.symbol} {o.intent} {o.structure} x{o.quantity} · {o.status}"
                   + (f" · filled {o.filled_quantity} at {net(o.avg_fill_price)}" if o.filled_quantity else
                      f" · limit {net(o.limit_price)}")
                   + (f" ({last_reason(session, o)})" if o.status in ("rejected", "cancelled", "expired") else "")
                   for o in orders[:TOP_LIST]]
    if len(orders) > TOP_LIST:
        order_lines.append(f"... and {len(orders) - TOP_LIST} more")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
    fees = sum((_dec(f.commission) + _dec(f.fees) for f in day_fills), Decimal("0"))
    contracts = sum(f.quantity for f in day_fills)
    pnl_lines = ["No account snapshot for today."]
    color = GREY
    if snap is not None and snap.trade_date == today:
        day_pnl = _dec(snap.detail.get("day_pnl", 0))
        color = pnl_color(day_pnl)
        pnl_lines = [f"Day P&L {money(day_pnl, signed=True)}",
                     f"Realized today {money(snap.realized_pnl_day, signed=True)}",
                     f"Unrealized (open positions) {money(snap.unrealized_pnl, signed=True)}",
                     f"Equity {money(snap.equity)}"]
    dd = drawdown(session, today)
    dd_text = "No account snapshots yet." if dd is None else (
        f"{signed_pct(dd.pct)} ({money(dd.amount, signed=True)}) from the peak {money(dd.peak)} of "
        f"{dd.peak_date.isoformat()}\nMax drawdown to date {signed_pct(dd.max_drawdown_pct)}")
    return Report("morning_brew", f"postmarket:{today.isoformat()}", Message(
        title=f"Post-market report: {today.isoformat()}",
        description=(f"{plural(len(orders), 'order')} today ({summary or 'none'}); {plural(len(day_fills), 'fill')}, "
                     f"{plural(contracts, 'contract')}, fees {money(fees)}"),
        fields=[
            ("Orders", _lines(order_lines, "No orders today."), False),
            ("P&L", "\n".join(pnl_lines), False),
            ("Closed positions to date", stats_text(trade_stats(session)), False),
            ("Drawdown", dd_text, False),
            ("Tomorrow's plan", plan_text(session, settings, today), False),
        ],
        color=color, footer=f"QuantMatrix · market time {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET",
        timestamp=now, kind="postmarket",
    ))


# --- system status ----------------------------------------------------------------------------------
