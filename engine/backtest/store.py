"""Backtest runs in the database: one BacktestRun row (spec, data range, source, code version, metrics,
equity curve) and its BacktestTrade rows, written once at the end of a run (no per-order round trips)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from engine.models import BacktestRun, BacktestTrade

__all__ = ["list_runs", "load_run", "load_trades", "save_run"]

_MAX_CURVE_POINTS = 5000  # the stored curve is for charts; longer curves are thinned evenly


def _curve(dates: np.ndarray, equity: np.ndarray) -> dict[str, list]:
    idx = np.arange(len(dates))
    if len(idx) > _MAX_CURVE_POINTS:
        idx = np.unique(np.r_[np.linspace(0, len(idx) - 1, _MAX_CURVE_POINTS).astype(np.int64), len(idx) - 1])
    return {"dates": [str(d) for d in dates[idx].astype("datetime64[D]")],
            "equity": [round(float(x), 6) for x in equity[idx]]}


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def save_run(engine: Engine, result: Any, code_version: str | None = None) -> int:
    """Store a finished :class:`engine.backtest.runner.BacktestResult`; returns the run id."""
    from engine.backtest.runner import code_version as git_version

    spec = result.spec
    run = BacktestRun(
        strategy=spec.strategy, params={**spec.params, "symbols": spec.symbols, "seed": spec.seed},
        start=spec.start, end=spec.end, status="finished", metrics=result.metrics,
        finished_at=datetime.now(UTC), mode=spec.mode, data_source=spec.source, data_start=result.data_start,
        data_end=result.data_end, n_symbols=result.n_symbols, code_version=code_version or git_version(),
        seconds=float(result.seconds), equity=_curve(result.dates, result.equity),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(run)
        session.flush()
        run_id = int(run.id)  # type: ignore[arg-type]
        rows = _trade_rows(run_id, result.trades)
        if rows:
            session.execute(insert(BacktestTrade), rows)
        session.commit()
    return run_id


def _trade_rows(run_id: int, trades: pd.DataFrame) -> list[dict[str, Any]]:
    if trades.empty:
        return []
    t = trades
    fill = t["fill_source"] if "fill_source" in t else pd.Series("bars", index=t.index)
    entry_reason = t["entry_reason"] if "entry_reason" in t else pd.Series("signal", index=t.index)
    detail = t["detail"] if "detail" in t else pd.Series([{}] * len(t), index=t.index)
    stop = t["stop"] if "stop" in t else pd.Series(np.nan, index=t.index)
    return [
        {"run_id": run_id, "symbol": str(sym), "entry_date": pd.Timestamp(ed).date(), "entry_price": float(ep),
         "exit_date": None if pd.isna(xd) else pd.Timestamp(xd).date(), "exit_price": _num(xp),
         "quantity": float(q), "exit_reason": str(reason), "entry_reason": str(er), "stop": _num(st),
         "pnl": float(pnl), "fill_source": str(fs), "detail": dt if isinstance(dt, dict) else {}}
        for sym, ed, ep, xd, xp, q, reason, er, st, pnl, fs, dt in zip(
            t["symbol"], t["entry_date"], t["entry_price"], t["exit_date"], t["exit_price"], t["quantity"],
            t["exit_reason"], entry_reason, stop, t["pnl"], fill, detail, strict=True)
    ]


def list_runs(engine: Engine, limit: int = 100) -> list[BacktestRun]:
    with Session(engine) as session:
        return list(session.exec(select(BacktestRun).order_by(BacktestRun.id.desc()).limit(limit)))  # type: ignore[union-attr]


def load_run(engine: Engine, run_id: int) -> BacktestRun | None:
    with Session(engine) as session:
        return session.get(BacktestRun, run_id)


def load_trades(engine: Engine, run_id: int) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(BacktestTrade).where(BacktestTrade.run_id == run_id)
                            .order_by(BacktestTrade.entry_date, BacktestTrade.symbol)).all()
    return pd.DataFrame([r.model_dump() for r in rows])
