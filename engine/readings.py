"""Reads and labels that reports (Discord) and the console both show: one implementation each, so the
Morning Brew and the Overview page can never disagree about "the latest snapshot" or an expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from engine.models import AccountSnapshot, Position, ScanRun


def position_r(pos: Position) -> float | None:
    """A position's realized result in R: realized P&L over the risk taken at entry (None without one)."""
    risk = Decimal(str(pos.initial_risk or 0))
    return float(Decimal(str(pos.realized_pnl or 0)) / risk) if risk > 0 else None


def latest_scan(session: Session, source: str | None = None) -> ScanRun | None:
    """The newest successful scan (by the data date it ran on, then by id)."""
    query = select(ScanRun).where(ScanRun.status == "ok")
    if source:
        query = query.where(ScanRun.data_source == source)
    return session.exec(query.order_by(col(ScanRun.data_date).desc(), col(ScanRun.id).desc())).first()


def latest_snapshot(session: Session, up_to: date | None = None) -> AccountSnapshot | None:
    """The engine's newest account snapshot (optionally on or before ``up_to``): by trade date, then time."""
    query = select(AccountSnapshot).where(AccountSnapshot.source == "engine")
    if up_to is not None:
        query = query.where(AccountSnapshot.trade_date <= up_to)
    return session.exec(query.order_by(col(AccountSnapshot.trade_date).desc(), col(AccountSnapshot.at).desc(),
                                       col(AccountSnapshot.id).desc())).first()


def nearest_expiry(legs: Sequence[dict[str, Any]]) -> date | None:
    """The first expiry among a structure's option legs (stock legs have none)."""
    expiries = [date.fromisoformat(str(leg["expiry"])[:10]) for leg in legs if leg.get("expiry")]
    return min(expiries) if expiries else None


def legs_text(legs: Sequence[dict[str, Any]]) -> str:
    """``+ 2026-12-18 100C, − 2026-12-18 110C``: each leg's side (+ buy, − sell), ratio, expiry, strike, right."""
    out = []
    for leg in legs:
        side = "+" if leg.get("side") == "buy" else "−"
        ratio = int(leg.get("ratio", 1) or 1)
        qty = f"{side}{ratio if ratio != 1 else ''}"
        if leg.get("asset") == "stock":
            out.append(f"{qty} {leg.get('instrument')} shares")
        else:
            strike = leg.get("strike")
            out.append(f"{qty} {leg.get('expiry')} {float(strike):g}{leg.get('right')}" if strike is not None
                       else f"{qty} {leg.get('instrument')}")
    return ", ".join(out)
