"""The Risk page: limits and usage."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine import risk
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

    sym_risk = {s: _f0(v) for s, v in p.risk_by_symbol.items()}
    sector_dd = {s or "(none)": float(v) for s, v in p.delta_dollars_by_sector.items()}
    top_sym = max(sym_risk.items(), key=lambda kv: kv[1], default=("-", 0.0))
    top_sector = max(p.delta_dollars_by_sector.items(), key=lambda kv: kv[1], default=("", 0.0))
    heat = _f0(p.heat) + _f0(p.pending_risk)
    day_start = _f0(p.day_start_equity)
    day_pnl = _f0(p.day_pnl)
    loss_pct = max(0.0, -100 * day_pnl / day_start) if day_start else 0.0
    bp = _f0(p.buying_power)
    # The table is the gate's own rule checks (risk.limit_checks), each on the smallest new entry: for the
    # symbol and sector that use the most, so "ok" means the gate would take one more trade there.
    checks = {c.rule: c for c in risk.limit_checks(p, limits)}
    by_top_symbol = {c.rule: c for c in risk.limit_checks(p, limits, underlying=top_sym[0])} if sym_risk else {}
    by_top_sector = {c.rule: c for c in risk.limit_checks(p, limits, sector=top_sector[0])}
    measured = {
        "kill_switch": ("kill switch", "n",
                        "on: no new entries" if p.kill_switch else "off"),
        "daily_loss": ("loss today", "%", f"day P&L ${day_pnl:,.2f} from ${day_start:,.2f}"),
        "equity": ("account equity", "n", f"${equity:,.2f}"),
        "risk_per_trade": ("a new trade's risk", "%",
                           f"a new trade may risk ${equity * limits.risk_per_trade_pct / 100:,.2f}"),
        "symbol_risk": (f"largest symbol ({top_sym[0]}), open + working entries", "%",
                        f"${top_sym[1]:,.2f} at risk in {top_sym[0]}"),
        "heat": ("open risk + working entry orders", "%",
                 f"${_f0(p.heat):,.2f} open + ${_f0(p.pending_risk):,.2f} pending"),
        "open_positions": ("symbols held or with a working entry", "n",
                           f"{p.open_positions} of {limits.max_open_positions}"),
        "sector_exposure": (f"largest sector ({top_sector[0] or '(none)'}), delta dollars", "%",
                            f"${top_sector[1]:,.0f} delta dollars"),
        "buying_power": ("buying power in use", "%", f"${bp:,.2f} available"),
    }
    table = []
    for rule, (what, unit, detail) in measured.items():
        c = (by_top_symbol if rule == "symbol_risk" else by_top_sector if rule == "sector_exposure"
             else checks).get(rule, checks.get(rule))
        if c is None:
            continue
        used, limit = c.current, c.limit
        if rule == "buying_power":  # shown as the share of equity in use; the verdict stays the gate's
            used, limit = (max(0.0, 100 * (1 - bp / equity)) if equity > 0 else 0.0), 100.0
        table.append({"rule": rule, "what": what, "limit": limit, "used": used, "unit": unit,
                      "use_of_limit": used / limit if limit else 0.0, "ok": c.passed,
                      "detail": f"{detail}; gate: {c.message}"})
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
