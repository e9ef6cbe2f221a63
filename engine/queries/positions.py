"""Open and closed positions, their next action and trade statistics."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.execution.ports import Leg
from engine.models import (
    Position,
)
from engine.portfolio.accounting import structure_multiplier
from engine.queries._common import _f, _f0
from engine.readings import legs_text as _legs_text
from engine.readings import nearest_expiry as _nearest_expiry
from engine.readings import position_r


def next_action(pos: Position, underlying: float | None, today: date, close_at_dte: int,
                premium_stop_pct: float = 50.0, params: Any = None) -> str:
    """The next thing position management will do, in the operator's words, read off the position
    manager's own decision (``manager.next_steps``): an exit due now, the stop, the next target and what it
    sells, the whole scale-out plan, and when the time exit comes."""
    from engine.portfolio import manager
    from engine.strategies.atr_matrix import ATRMatrixParams

    expiry = _nearest_expiry(list(pos.legs or []))
    view = manager.PositionView(
        quantity=pos.quantity, initial_quantity=pos.initial_quantity, entry_price=pos.entry_price,
        underlying_entry=pos.underlying_entry, entry_atr=pos.entry_atr, stop=pos.stop or 0.0,
        targets=tuple(pos.targets or ()), targets_hit=pos.targets_hit, highest_close=pos.highest_close,
        expiry=expiry, structure=pos.structure, short_stock=manager.is_short_stock(pos.structure, list(pos.legs or [])))
    # Intraday the console knows the price, not today's SMA50 or ATR: the daily rules wait for the engine.
    price = underlying if underlying is not None else float("nan")
    mkt = manager.MarketView(today=today, price=price, close=float("nan"), sma50=float("nan"), atr=float("nan"),
                             mark=pos.mark)
    steps = manager.next_steps(view, mkt, params or ATRMatrixParams(), premium_stop_pct, close_at_dte)
    parts = [f"exit now: {a.reason}" for a in steps.due_now if a.kind == "close_all"]
    parts += [f"sell {a.quantity} now: {a.reason}" for a in steps.due_now if a.kind == "scale_out"]
    if steps.condor is not None:  # the condor's own three levels, never the ATR stop, targets or time exit
        lv = steps.condor
        parts.append(f"take profit at buy-back ≤ {lv.take_profit_cost:,.2f} (+${lv.profit_usd:,.2f})")
        parts.append(f"stop at buy-back ≥ {lv.stop_cost:,.2f} (−${lv.loss_usd:,.2f})")
        if lv.close_on is not None and steps.days_to_expiry is not None:
            dte = steps.days_to_expiry
            parts.append(f"time exit now ({dte} DTE)" if dte <= manager.CONDOR_CLOSE_AT_DTE
                         else f"time exit {lv.close_on:%b %d} ({dte} DTE)")
        return " · ".join(dict.fromkeys(parts))
    if steps.rule:
        return " · ".join(dict.fromkeys(parts + ([] if steps.due_now else [steps.rule]))) or steps.rule
    if steps.stop:
        dist = f" ({100 * (steps.stop / underlying - 1):+.1f}%)".replace("-", "−") if underlying else ""
        parts.append(f"stop at {steps.stop:,.2f}{dist}")
    if steps.next_target is not None:
        nxt = steps.next_target
        dist = f" ({100 * (nxt / underlying - 1):+.1f}%)" if underlying else ""
        parts.append(f"next target {nxt:,.2f}{dist} sells {steps.next_target_sells}" if steps.next_target_sells > 0
                     else f"next target {nxt:,.2f}{dist}")
        parts.append("plan " + "/".join(f"T{k + 1}:{n}" for k, n in enumerate(steps.plan)))
    elif steps.plan:
        parts.append("all targets hit: trailing stop")
    if steps.days_to_expiry is not None and steps.time_exit_on is not None:
        dte = steps.days_to_expiry
        parts.append(f"time exit now ({dte} DTE)" if dte <= close_at_dte
                     else f"time exit {steps.time_exit_on:%b %d} ({dte} DTE)")
    return " · ".join(parts) or "no levels"


POSITION_COLUMNS = ["id", "symbol", "sector", "strategy", "structure", "expiry", "quantity", "initial_quantity",
                    "entry_price", "mark", "underlying_price", "unrealized_pnl", "realized_pnl", "pnl_pct",
                    "max_loss", "initial_risk", "r_now", "delta", "gamma", "theta", "vega", "delta_dollars", "stop",
                    "stop_distance_pct", "targets", "targets_hit", "next_action", "opened_at", "legs_text"]


def open_positions(engine: Engine, settings: Settings, today: date | None = None) -> pd.DataFrame:
    from engine.clock import NEW_YORK

    today = today or datetime.now(NEW_YORK).date()
    with Session(engine) as session:
        rows = session.exec(select(Position).where(Position.status == "open").order_by(Position.id)).all()
    data = []
    for p in rows:
        greeks = p.greeks or {}
        und = _f(greeks.get("underlying_price"))
        mult = structure_multiplier([Leg.from_dict(d) for d in p.legs or []])
        cost = abs(_f0(p.entry_price)) * mult * p.quantity
        unreal = _f0(p.unrealized_pnl)
        initial_risk = _f0(p.initial_risk)
        data.append({
            "id": p.id, "symbol": p.symbol, "sector": p.sector, "strategy": p.strategy, "structure": p.structure,
            "expiry": _nearest_expiry(list(p.legs or [])), "quantity": p.quantity,
            "initial_quantity": p.initial_quantity, "entry_price": _f0(p.entry_price), "mark": _f(p.mark),
            "underlying_price": und, "unrealized_pnl": unreal, "realized_pnl": _f0(p.realized_pnl),
            "pnl_pct": 100 * unreal / cost if cost else None, "max_loss": _f0(p.max_loss),
            "initial_risk": initial_risk,
            "r_now": (unreal + _f0(p.realized_pnl)) / initial_risk if initial_risk else None,
            **{g: _f(greeks.get(g)) for g in ("delta", "gamma", "theta", "vega")},
            "delta_dollars": _f(greeks.get("delta_dollars")),
            "stop": p.stop or None,
            "stop_distance_pct": 100 * (p.stop / und - 1) if p.stop and und else None,
            "targets": ", ".join(f"{t:,.2f}" for t in p.targets or []), "targets_hit": p.targets_hit,
            "next_action": next_action(p, und, today, settings.exits.close_at_dte, settings.exits.premium_stop_pct,
                                       settings.strategy),
            "opened_at": p.opened_at, "legs_text": _legs_text(list(p.legs or [])),
        })
    return pd.DataFrame(data, columns=POSITION_COLUMNS)


CLOSED_COLUMNS = ["id", "symbol", "sector", "strategy", "structure", "expiry", "initial_quantity", "opened_at",
                  "closed_at", "days_held", "realized_pnl", "initial_risk", "r_multiple", "exit_reason", "legs_text"]


def closed_positions(engine: Engine, limit: int = 2000) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(Position).where(Position.status == "closed")
                            .order_by(Position.closed_at.desc(), Position.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    data = []
    for p in rows:
        risk = _f0(p.initial_risk)
        opened, closed = p.opened_at, p.closed_at
        data.append({
            "id": p.id, "symbol": p.symbol, "sector": p.sector, "strategy": p.strategy, "structure": p.structure,
            "expiry": _nearest_expiry(list(p.legs or [])), "initial_quantity": p.initial_quantity,
            "opened_at": opened, "closed_at": closed,
            "days_held": (closed - opened).days if opened and closed else None,
            "realized_pnl": _f0(p.realized_pnl), "initial_risk": risk,
            "r_multiple": position_r(p), "exit_reason": p.exit_reason or "",
            "legs_text": _legs_text(list(p.legs or [])),
        })
    return pd.DataFrame(data, columns=CLOSED_COLUMNS)


def trade_stats(closed: pd.DataFrame) -> dict[str, Any]:
    if closed.empty:
        return {"trades": 0, "win_rate": None, "avg_r": None, "total_pnl": 0.0, "expectancy": None}
    r = closed["r_multiple"].dropna()
    return {"trades": len(closed), "win_rate": float((closed["realized_pnl"] > 0).mean()),
            "avg_r": float(r.mean()) if len(r) else None, "total_pnl": float(closed["realized_pnl"].sum()),
            "expectancy": float(closed["realized_pnl"].mean())}


# --- risk ------------------------------------------------------------------------------------------------
