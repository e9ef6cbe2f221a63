"""Reads several reports share: the day's scan, candidates, orders, open positions, exit kinds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from engine.config import Settings
from engine.data import calendar
from engine.models import (
    OptionCandidate,
    Order,
    Position,
    ScanResult,
    ScanRun,
    Signal,
)
from engine.notify.reports.format import ATTENTION_ATR, ATTENTION_DTE, STOP_CODES, money, net, occ, price, signed_pct
from engine.readings import nearest_expiry as option_expiry


def scan_for_day(session: Session, day: date) -> ScanRun | None:
    """The scan the pre-market of ``day`` uses: the newest successful one on data up to the previous session."""
    as_of = calendar.previous_session(day)
    return session.exec(
        select(ScanRun).where(ScanRun.status == "ok", ScanRun.data_date <= as_of)
        .order_by(col(ScanRun.data_date).desc(), col(ScanRun.id).desc())
    ).first()


def scan_rows(session: Session, run_id: int, symbols: Sequence[str]) -> dict[str, ScanResult]:
    if not symbols:
        return {}
    rows = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run_id,
                                                 col(ScanResult.symbol).in_(list(symbols)))).all()
    return {r.symbol: r for r in rows}


def strategy_params(run: ScanRun | None, settings: Settings) -> dict[str, Any]:
    """The thresholds the scan used (stored with the run), else the configured ones."""
    params = settings.strategy.model_dump(mode="json")
    if run is not None and run.params:
        params.update(run.params)
    return params


def chosen_candidate(session: Session, signal_id: int) -> OptionCandidate | None:
    return session.exec(select(OptionCandidate).where(OptionCandidate.signal_id == signal_id, OptionCandidate.chosen)
                        .order_by(col(OptionCandidate.id).desc())).first()


def entry_order(session: Session, signal_id: int) -> Order | None:
    return session.exec(select(Order).where(Order.signal_id == signal_id, Order.intent == "open")
                        .order_by(col(Order.id).desc())).first()


def open_positions(session: Session) -> list[Position]:
    return list(session.exec(select(Position).where(Position.status == "open").order_by(Position.symbol,
                                                                                       col(Position.id))).all())


def reason_codes(reason: str) -> list[str]:
    """``"stop_hit: price 45.73 <= stop 46.78; premium_stop: ..."`` -> ``["stop_hit", "premium_stop"]``."""
    codes = []
    for part in (reason or "").split("; "):
        head = part.split(":", 1)[0].strip()
        if head:
            codes.append(head)
    return codes


def exit_kind(reason: str) -> str:
    """``stop`` (stop or premium stop), ``scale_out`` (a target) or ``exit`` (trend, time, exhaustion...)."""
    codes = reason_codes(reason)
    if any(c in STOP_CODES for c in codes):
        return "stop"
    lowered = (reason or "").lower()
    if lowered.startswith(("target", "scale-out", "scale_out")):
        return "scale_out"
    return "exit"


# --- Morning Brew -----------------------------------------------------------------------------------


def candidate_text(cand: OptionCandidate | None) -> str:
    if cand is None:
        return "no option candidate"
    legs = "; ".join(f"{'BUY' if int(leg.get('qty', 1)) > 0 else 'SELL'} {abs(int(leg.get('qty', 1)))} "
                     f"{occ(leg.get('occ_symbol', ''))}" for leg in cand.legs)
    parts = [f"{cand.structure}: {legs}", f"net {net(cand.net_mid)}",
             f"max loss {money(cand.max_loss)}/contract"]
    if cand.breakevens:
        parts.append("breakeven " + ", ".join(price(b) for b in cand.breakevens))
    if cand.iv_rank is not None:
        parts.append(f"IV rank {cand.iv_rank:.0f}")
    return " · ".join(parts)


def order_text(order: Order | None, signal: Signal) -> str:
    if order is None:
        return f"not ordered (signal {signal.status})"
    limit = net(order.limit_price) if order.limit_price is not None else "market"
    text = f"order x{order.quantity} limit {limit}, max loss {money(order.max_loss)}: {order.status}"
    if order.filled_quantity:
        text += f", filled {order.filled_quantity} at {net(order.avg_fill_price)}"
    return text


def levels_text(entry: float, stop: float, targets: Sequence[float]) -> str:
    stop_pct = 100 * (stop / entry - 1) if entry else None
    tgt = " / ".join(price(t) for t in targets) or "n/a"
    return f"entry {price(entry)} · stop {price(stop)} ({signed_pct(stop_pct, 1)}) · targets {tgt}"


def attention_items(positions: Sequence[Position], rows: dict[str, ScanResult], today: date) -> list[str]:
    """Why each open position needs a look: near its stop, at its next target, close to expiry."""
    out = []
    for pos in positions:
        row = rows.get(pos.symbol)
        close = row.close if row is not None and row.close is not None else pos.greeks.get("underlying_price")
        atr = row.atr if row is not None and row.atr else pos.entry_atr
        why = []
        if close is not None and atr:
            gap = (float(close) - pos.stop) / float(atr)
            if gap <= 0:
                why.append(f"close {price(close)} at or below stop {price(pos.stop)}")
            elif gap <= ATTENTION_ATR:
                why.append(f"{gap:.2f} ATR above stop {price(pos.stop)} (close {price(close)})")
        if close is not None and pos.targets_hit < len(pos.targets) and float(close) >= pos.targets[pos.targets_hit]:
            why.append(f"at target {pos.targets_hit + 1} {price(pos.targets[pos.targets_hit])} "
                       f"(close {price(close)})")
        expiry = option_expiry(pos.legs)
        if expiry is not None and (expiry - today).days <= ATTENTION_DTE:
            why.append(f"{(expiry - today).days} DTE (expires {expiry.isoformat()})")
        if why:
            out.append(f"**{pos.symbol}** {pos.structure} x{pos.quantity}: " + "; ".join(why))
    return out
