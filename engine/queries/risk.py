"""The Risk page: limits and usage."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.models import (
    Position,
)
from engine.queries._common import _f0


def risk_overview(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Every risk limit with its use now, exposure by symbol and sector, net greeks, daily loss.

    The numbers come from the same portfolio view the gate uses (``portfolio_risk_offline``: equity and
    buying power from the newest account snapshot), against ``settings.risk``."""
    from engine.portfolio.exposure import portfolio_risk_offline

    now = now or datetime.now(UTC)
    limits = settings.risk
    with Session(engine) as session:
        p = portfolio_risk_offline(session, settings, now)
        rows = session.exec(select(Position.symbol, Position.sector, Position.max_loss, Position.delta_dollars,
                                   Position.greeks).where(Position.status == "open")).all()
    equity = _f0(p.equity)

    def pct(x: float) -> float:
        return 100 * x / equity if equity > 0 else math.inf

    biggest_trade = max((_f0(r[2]) for r in rows), default=0.0)
    sym_risk = {s: _f0(v) for s, v in p.risk_by_symbol.items()}
    sector_dd = {s or "(none)": float(v) for s, v in p.delta_dollars_by_sector.items()}
    top_sym = max(sym_risk.items(), key=lambda kv: kv[1], default=("-", 0.0))
    top_sector = max(sector_dd.items(), key=lambda kv: kv[1], default=("-", 0.0))
    heat = _f0(p.heat) + _f0(p.pending_risk)
    day_start = _f0(p.day_start_equity)
    day_pnl = _f0(p.day_pnl)
    loss_pct = max(0.0, -100 * day_pnl / day_start) if day_start else 0.0
    bp = _f0(p.buying_power)
    bp_used_pct = max(0.0, 100 * (1 - bp / equity)) if equity > 0 else 0.0

    def row(rule: str, what: str, limit: float, used: float, unit: str, detail: str) -> dict[str, Any]:
        return {"rule": rule, "what": what, "limit": limit, "used": used, "unit": unit,
                "use_of_limit": used / limit if limit else 0.0, "ok": used <= limit + 1e-9, "detail": detail}

    table = [
        row("risk_per_trade", "largest open position's risk", limits.risk_per_trade_pct, pct(biggest_trade), "%",
            f"${biggest_trade:,.2f} at risk; a new trade may risk ${equity * limits.risk_per_trade_pct / 100:,.2f}"),
        row("symbol_risk", f"largest symbol ({top_sym[0]})", limits.max_symbol_risk_pct, pct(top_sym[1]), "%",
            f"${top_sym[1]:,.2f} at risk in {top_sym[0]}"),
        row("heat", "open risk + working entry orders", limits.max_heat_pct, pct(heat), "%",
            f"${_f0(p.heat):,.2f} open + ${_f0(p.pending_risk):,.2f} pending"),
        row("open_positions", "symbols held", float(limits.max_open_positions), float(p.open_positions), "n",
            f"{p.open_positions} of {limits.max_open_positions}"),
        row("sector_exposure", f"largest sector ({top_sector[0]}), delta dollars", limits.max_sector_exposure_pct,
            pct(top_sector[1]), "%", f"${top_sector[1]:,.0f} delta dollars"),
        row("daily_loss", "loss today", limits.daily_loss_limit_pct, loss_pct, "%",
            f"day P&L ${day_pnl:,.2f} from ${day_start:,.2f}"),
        row("buying_power", "buying power in use", 100.0, bp_used_pct, "%", f"${bp:,.2f} available"),
    ]
    by_symbol = pd.DataFrame([{"symbol": s, "risk": v, "risk_pct": pct(v)} for s, v in sym_risk.items()],
                             columns=["symbol", "risk", "risk_pct"]).sort_values("risk", ascending=False)
    by_sector = pd.DataFrame([{"sector": s, "delta_dollars": v, "exposure_pct": pct(v)} for s, v in sector_dd.items()],
                             columns=["sector", "delta_dollars", "exposure_pct"]).sort_values("delta_dollars",
                                                                                              ascending=False)
    greeks = dict.fromkeys(("delta", "gamma", "theta", "vega", "delta_dollars"), 0.0)
    for r in rows:
        g = r[4] or {}
        for k in greeks:
            greeks[k] += _f0(g.get(k))
    return {"equity": equity, "buying_power": bp, "day_start_equity": day_start, "day_pnl": day_pnl,
            "daily_loss_pct": loss_pct, "heat": heat, "pending_risk": _f0(p.pending_risk),
            "open_positions": p.open_positions, "kill_switch": p.kill_switch, "limits": table,
            "by_symbol": by_symbol, "by_sector": by_sector, "greeks": greeks}


# --- notifications ---------------------------------------------------------------------------------------
