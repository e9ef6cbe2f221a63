"""Performance metrics of a backtest: one function per figure, one ``compute_metrics`` for the report.

Conventions (stated in every report under ``conventions``):

* daily returns r_t = equity_t / equity_{t-1} - 1 of the close-to-close equity curve;
* 252 periods a year; volatility and Sharpe use the sample standard deviation (ddof=1);
  risk-free rate 0;
* Sortino's downside deviation is sqrt(mean(min(r_t, 0)^2)) over ALL observations (not only the
  negative ones), annualised by sqrt(252); Sortino = 252 * mean(r) / that;
* CAGR = (equity_end / equity_start) ** (252 / number of returns) - 1; Calmar = CAGR / |max drawdown|;
* max drawdown = min over t of equity_t / max(equity_0..t) - 1 (the starting equity counts as a
  peak); its duration is the longest run of sessions spent below a previous peak (unrecovered at the
  end counts up to the last session);
* trade statistics use closed trades only (exit_reason != "open"): win rate = share with P&L > 0,
  expectancy in R = mean of P&L / initial risk (quantity x entry-to-stop distance, or the structure's
  max loss), profit factor = gross profit / gross loss;
* exposure = mean over sessions of gross market value / equity; turnover = traded notional (both
  sides) / mean equity per year.

These match ``empyrical`` (tested): annual_volatility, sharpe_ratio, sortino_ratio, cagr,
max_drawdown, calmar_ratio.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CONVENTIONS",
    "PERIODS_PER_YEAR",
    "cagr",
    "compute_metrics",
    "daily_returns",
    "drawdown_curve",
    "max_drawdown",
    "max_drawdown_duration",
    "monthly_returns",
    "sharpe",
    "sortino",
    "trade_stats",
    "volatility",
]

PERIODS_PER_YEAR = 252
CONVENTIONS = {
    "periods_per_year": PERIODS_PER_YEAR,
    "std_ddof": 1,
    "sortino_downside": "sqrt(mean(min(r,0)^2)) over all observations",
    "risk_free_rate": 0.0,
    "returns": "close-to-close equity",
}


def daily_returns(equity: np.ndarray) -> np.ndarray:
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1 or eq.size < 2:
        return np.empty(0)
    if not np.all(eq[:-1] > 0):
        raise ValueError("equity must stay > 0 for returns to be defined")
    return eq[1:] / eq[:-1] - 1.0


def volatility(r: np.ndarray) -> float:
    return float(np.std(r, ddof=1) * math.sqrt(PERIODS_PER_YEAR)) if len(r) > 1 else math.nan


def sharpe(r: np.ndarray) -> float:
    if len(r) < 2:
        return math.nan
    sd = np.std(r, ddof=1)
    return float(np.mean(r) / sd * math.sqrt(PERIODS_PER_YEAR)) if sd > 0 else math.nan


def sortino(r: np.ndarray) -> float:
    if len(r) < 1:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(PERIODS_PER_YEAR)
    return float(np.mean(r) * PERIODS_PER_YEAR / downside) if downside > 0 else math.nan


def cagr(equity: np.ndarray) -> float:
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size < 2 or eq[0] <= 0:
        return math.nan
    ratio = eq[-1] / eq[0]
    return float(ratio ** (PERIODS_PER_YEAR / (eq.size - 1)) - 1.0) if ratio > 0 else -1.0


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    eq = np.asarray(equity, dtype=np.float64)
    return eq / np.maximum.accumulate(eq) - 1.0 if eq.size else np.empty(0)


def max_drawdown(equity: np.ndarray) -> float:
    dd = drawdown_curve(equity)
    return float(dd.min()) if dd.size else math.nan


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Longest run of sessions below a previous peak."""
    under = drawdown_curve(equity) < 0
    if not under.any():
        return 0
    # lengths of runs of True
    edges = np.diff(np.r_[0, under.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def monthly_returns(dates: np.ndarray, equity: np.ndarray) -> pd.DataFrame:
    """Year x month table of compounded returns (month-end equity over previous month-end)."""
    s = pd.Series(np.asarray(equity, dtype=np.float64), index=pd.DatetimeIndex(np.asarray(dates, "datetime64[ns]")))
    month_end = s.groupby([s.index.year, s.index.month]).last()
    prev = month_end.shift(1)
    prev.iloc[0] = s.iloc[0]
    rets = (month_end / prev - 1.0).rename("return")
    table = rets.unstack(level=1)
    table.index.name, table.columns.name = "year", "month"
    return table.reindex(columns=range(1, 13))


def trade_stats(trades: pd.DataFrame) -> dict[str, float | int]:
    closed = trades[trades["exit_reason"] != "open"] if len(trades) else trades
    n = len(closed)
    out: dict[str, float | int] = {"trades": len(trades), "closed_trades": n}
    if n == 0:
        return out | {"win_rate": math.nan, "avg_win": math.nan, "avg_loss": math.nan, "expectancy_r": math.nan,
                      "profit_factor": math.nan}
    pnl = closed["pnl"].to_numpy(dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    risk = closed["risk"].to_numpy(dtype=np.float64)
    r_mult = np.where(risk > 0, pnl / np.where(risk > 0, risk, 1.0), np.nan)
    gross_loss = -losses.sum()
    return out | {
        "win_rate": float(wins.size / n),
        "avg_win": float(wins.mean()) if wins.size else math.nan,
        "avg_loss": float(losses.mean()) if losses.size else math.nan,
        "expectancy_r": float(np.nanmean(r_mult)) if np.isfinite(r_mult).any() else math.nan,
        "profit_factor": float(wins.sum() / gross_loss) if gross_loss > 0 else math.nan,
    }


def compute_metrics(
    dates: np.ndarray,
    equity: np.ndarray,
    trades: pd.DataFrame,
    gross_exposure: np.ndarray | None = None,
    traded_notional: float = 0.0,
    fees: float = 0.0,
    slippage: float = 0.0,
) -> dict[str, Any]:
    """All scalar metrics of one run (JSON-ready: NaN becomes None)."""
    eq = np.asarray(equity, dtype=np.float64)
    r = daily_returns(eq)
    mdd = max_drawdown(eq)
    growth = cagr(eq)
    years = max(len(r), 1) / PERIODS_PER_YEAR
    m: dict[str, Any] = {
        "start": str(np.datetime64(dates[0], "D")) if len(dates) else None,
        "end": str(np.datetime64(dates[-1], "D")) if len(dates) else None,
        "sessions": len(eq),
        "start_equity": float(eq[0]) if eq.size else math.nan,
        "end_equity": float(eq[-1]) if eq.size else math.nan,
        "total_return": float(eq[-1] / eq[0] - 1.0) if eq.size else math.nan,
        "cagr": growth,
        "volatility": volatility(r),
        "sharpe": sharpe(r),
        "sortino": sortino(r),
        "calmar": float(growth / abs(mdd)) if mdd < 0 else math.nan,
        "max_drawdown": mdd,
        "max_drawdown_duration": max_drawdown_duration(eq),
        "exposure": float(np.mean(np.asarray(gross_exposure) / eq)) if gross_exposure is not None and eq.size
        else math.nan,
        "turnover": float(traded_notional / np.mean(eq) / years) if eq.size else math.nan,
        "fees": float(fees),
        "slippage": float(slippage),
    }
    m.update(trade_stats(trades))
    m["conventions"] = CONVENTIONS
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}
