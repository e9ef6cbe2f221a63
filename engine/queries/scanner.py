"""Scan runs, scan results and bars for the Scanner page family."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.data.sources import bar_store
from engine.models import (
    ScanResult,
)
from engine.readings import latest_scan as newest_scan

INDEX_PROXIES = ("SPY", "QQQ", "IWM", "DIA")

def index_proxies(settings: Settings, lookback_days: int = 30) -> pd.DataFrame:
    """Last close and change for SPY/QQQ/IWM/DIA from the bar store (missing proxies are left out)."""
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) < 2:
        return pd.DataFrame(columns=["symbol", "date", "close", "change_pct"])
    start = (dates[-1] - np.timedelta64(lookback_days, "D")).astype(object)
    panel = store.load(start, dates[-1].astype(object), symbols=list(INDEX_PROXIES), dtype=np.float64)
    rows = []
    for symbol in INDEX_PROXIES:
        if symbol not in set(panel.symbols):
            continue
        bars = panel.frame(symbol)["close"].dropna()
        if len(bars) >= 2:
            rows.append(
                {
                    "symbol": symbol,
                    "date": bars.index[-1].date(),
                    "close": float(bars.iloc[-1]),
                    "change_pct": float(100 * (bars.iloc[-1] / bars.iloc[-2] - 1)),
                }
            )
    return pd.DataFrame(rows, columns=["symbol", "date", "close", "change_pct"])


def latest_scan(engine: Engine) -> dict[str, Any] | None:
    with Session(engine) as session:
        run = newest_scan(session)
    if run is None:
        return None
    return {"id": run.id, "strategy": run.strategy, "data_source": run.data_source, "data_date": run.data_date,
            "finished_at": run.finished_at, "n_scanned": run.n_scanned, "n_excluded": run.n_excluded,
            "n_signals": run.n_signals, "excluded_by_reason": dict(run.excluded_by_reason or {}),
            "breadth": dict(run.breadth or {}), "seconds": run.load_seconds + run.compute_seconds + run.store_seconds}


SCAN_COLUMNS = ("rank", "symbol", "sector", "zone", "score", "signal", "close", "atr", "atr_distance", "atr_pct",
                "ma_aligned", "range_pos_20", "dollar_volume_20", "sma20", "sma50", "sma200", "stop", "target_1",
                "target_2", "target_3", "target_4", "excluded_reason")


def scan_results(engine: Engine, run_id: int) -> pd.DataFrame:
    """Every result row of a scan run (tens of thousands for the whole universe), in rank order."""
    cols = [getattr(ScanResult, c) for c in SCAN_COLUMNS]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).where(ScanResult.scan_run_id == run_id).order_by(ScanResult.rank)).all()
    frame = pd.DataFrame.from_records(rows, columns=list(SCAN_COLUMNS))
    for c in ("score", "close", "atr", "atr_distance", "atr_pct", "range_pos_20", "dollar_volume_20", "sma20",
              "sma50", "sma200", "stop", "target_1", "target_2", "target_3", "target_4"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    frame["signal"] = frame["signal"].fillna(False).astype(bool)
    frame["ma_aligned"] = frame["ma_aligned"].astype("boolean")
    frame["zone"] = frame["zone"].fillna("excluded" if len(frame) else None)
    frame.loc[frame["excluded_reason"].isna() & (frame["zone"] == "excluded"), "zone"] = "n/a"
    return frame


def symbol_setup(engine: Engine, run_id: int, symbol: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run_id,
                                                    ScanResult.symbol == symbol)).first()
    return None if row is None else row.model_dump()


def symbol_bars(settings: Settings, symbol: str, end: date | None = None, sessions: int = 260,
                band_multiples: tuple[float, ...] = (4.0, 7.0, 10.0)) -> pd.DataFrame:
    """Daily bars of one symbol with SMA20/50/200, ATR and the matrix bands SMA50 +/- k x ATR.

    Loads enough extra history for SMA200 to be defined over the whole window shown."""
    from engine import indicators as ind
    from engine.data import calendar

    params = settings.strategy
    store = bar_store(settings)
    stored = store.stored_dates(end=end)
    if len(stored) == 0:
        return pd.DataFrame()
    last = stored[-1].astype(object)
    first = calendar.sessions_back(last, sessions + params.sma_slow + 10)[0].astype(object)
    panel = store.load(first, last, symbols=[symbol], dtype=np.float64)
    if panel.n_symbols == 0 or symbol not in set(panel.symbols):
        return pd.DataFrame()
    bars = panel.frame(symbol).dropna(subset=["close"])
    if bars.empty:
        return bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    bars["sma20"] = ind.sma(close, params.sma_fast)
    bars["sma50"] = ind.sma(close, params.sma_trend)
    bars["sma200"] = ind.sma(close, params.sma_slow)
    bars["atr"] = ind.atr(high, low, close, params.atr_period)
    for k in band_multiples:
        bars[f"band_up_{k:g}"] = bars["sma50"] + k * bars["atr"]
        bars[f"band_dn_{k:g}"] = bars["sma50"] - k * bars["atr"]
    return bars.tail(sessions)


# --- signals and option candidates -----------------------------------------------------------------------
