"""Account snapshots, equity history, mode and reconciliation queries."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.models import (
    AccountSnapshot,
    Position,
    ReconciliationRun,
    SettingOverride,
)
from engine.queries._common import _f0


def account_history(engine: Engine) -> pd.DataFrame:
    """One row per trading date: the day's last account snapshot (equity curve)."""
    with Session(engine) as session:
        rows = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.trade_date, AccountSnapshot.id)).all()
    by_day: dict[date, AccountSnapshot] = {}
    for r in rows:
        by_day[r.trade_date] = r
    data = [{"trade_date": d, "at": r.at, "equity": _f0(r.equity), "cash": _f0(r.cash),
             "positions_value": _f0(r.positions_value), "buying_power": _f0(r.buying_power),
             "realized_pnl_day": _f0(r.realized_pnl_day), "unrealized_pnl": _f0(r.unrealized_pnl),
             "open_risk": _f0(r.open_risk), "day_pnl": _f0((r.detail or {}).get("day_pnl"))}
            for d, r in by_day.items()]
    return pd.DataFrame(data, columns=["trade_date", "at", "equity", "cash", "positions_value", "buying_power",
                                       "realized_pnl_day", "unrealized_pnl", "open_risk", "day_pnl"])


def latest_snapshot(engine: Engine) -> AccountSnapshot | None:
    """The engine's newest snapshot, by the same rule as the reports (engine.readings)."""
    from engine.readings import latest_snapshot as newest

    with Session(engine) as session:
        return newest(session)


def account_summary(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Equity, today's and total P&L and open risk from the newest account snapshot."""
    starting = float(settings.starting_cash)
    snap = latest_snapshot(engine)
    with Session(engine) as session:
        n_open = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
        heat = session.exec(select(func.sum(Position.max_loss)).where(Position.status == "open")).one()
    if snap is None:
        return {"has_snapshot": False, "trade_date": None, "at": None, "equity": starting, "cash": starting,
                "positions_value": 0.0, "buying_power": starting, "day_pnl": 0.0, "day_pnl_pct": 0.0,
                "total_pnl": 0.0, "total_pnl_pct": 0.0, "unrealized_pnl": 0.0, "open_risk": _f0(heat),
                "open_positions": int(n_open), "starting_cash": starting}
    equity = _f0(snap.equity)
    day_pnl = _f0((snap.detail or {}).get("day_pnl"))
    prev = equity - day_pnl
    return {
        "has_snapshot": True, "trade_date": snap.trade_date, "at": snap.at, "equity": equity,
        "cash": _f0(snap.cash), "positions_value": _f0(snap.positions_value), "buying_power": _f0(snap.buying_power),
        "day_pnl": day_pnl, "day_pnl_pct": 100 * day_pnl / prev if prev else 0.0,
        "total_pnl": equity - starting, "total_pnl_pct": 100 * (equity - starting) / starting,
        "unrealized_pnl": _f0(snap.unrealized_pnl), "open_risk": _f0(heat),
        "open_positions": int(n_open), "starting_cash": starting,
    }


def mode_summary(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Paper/live, the approval mode in force (console choice over the environment), the kill switch."""
    from engine.operator import APPROVAL_MODE_KEY, KILL_SWITCH_KEY

    with Session(engine) as session:
        kill = session.get(SettingOverride, KILL_SWITCH_KEY)
        mode = session.get(SettingOverride, APPROVAL_MODE_KEY)
    return {
        "trading_mode": settings.trading_mode.value,
        "broker": settings.broker.value,
        "data_source": settings.data_source.value,
        "approval_mode": str(mode.value.get("value")) if mode else settings.approval_mode.value,
        "approval_mode_source": "console" if mode else "environment",
        "kill_switch": bool(kill and kill.value.get("value")),
        "kill_switch_by": kill.updated_by if kill else None,
        "kill_switch_at": kill.updated_at if kill else None,
    }


def last_reconciliation(engine: Engine) -> dict[str, Any] | None:
    with Session(engine) as session:
        run = session.exec(select(ReconciliationRun).order_by(ReconciliationRun.id.desc())).first()  # type: ignore[union-attr]
        if run is None:
            return None
        recent_bad = session.exec(select(func.count()).select_from(ReconciliationRun)
                                  .where(ReconciliationRun.ok == False)).one()  # noqa: E712
    return {"at": run.at, "broker": run.broker, "ok": run.ok, "orders_checked": run.orders_checked,
            "events_applied": run.events_applied, "differences": list(run.differences or []),
            "runs_with_differences": int(recent_bad)}


# --- scans ---------------------------------------------------------------------------------------------
