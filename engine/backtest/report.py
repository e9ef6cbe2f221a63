"""Human and machine outputs of a run: the metrics table, the trade list CSV, the trade-list hash, and what
the console's price chart of a run shows (the run's bars and its trades' markers)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TRADES_CSV_COLUMNS", "format_metrics", "run_bars", "trade_markers", "trades_csv_frame", "trades_hash",
           "write_trades_csv"]

TRADES_CSV_COLUMNS = ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "quantity", "exit_reason"]


def trades_csv_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """The trade list in the interface's columns, dates as YYYY-MM-DD, sorted by symbol then entry."""
    if trades.empty:
        return pd.DataFrame(columns=TRADES_CSV_COLUMNS)
    out = trades[TRADES_CSV_COLUMNS].copy()
    for col in ("entry_date", "exit_date"):
        out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%d")
    return out.sort_values(["symbol", "entry_date"], kind="stable").reset_index(drop=True)


def write_trades_csv(trades: pd.DataFrame, path: Path | str) -> int:
    frame = trades_csv_frame(trades)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.10g")
    return len(frame)


def trades_hash(trades: pd.DataFrame) -> str:
    """SHA-256 of the trade list CSV with prices rounded to 1e-6 (stable across platforms)."""
    frame = trades_csv_frame(trades)
    for col in ("entry_price", "exit_price"):
        frame[col] = np.round(frame[col].astype(float), 6)
    text = frame.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v * 100:,.2f}%" if pct else f"{v:,.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


_PCT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure"}


def format_metrics(metrics: dict[str, Any], title: str) -> str:
    keys = ["start", "end", "sessions", "start_equity", "end_equity", "total_return", "cagr", "volatility", "sharpe",
            "sortino", "calmar", "max_drawdown", "max_drawdown_duration", "trades", "closed_trades", "win_rate",
            "avg_win", "avg_loss", "expectancy_r", "profit_factor", "exposure", "turnover", "fees", "slippage"]
    width = max(len(k) for k in keys)
    lines = [title, "-" * len(title)]
    lines += [f"{k:<{width}}  {_fmt(metrics.get(k), k in _PCT)}" for k in keys if k in metrics]
    conv = metrics.get("conventions") or {}
    if conv:
        lines.append(f"conventions: {conv.get('periods_per_year')} periods/yr, std ddof={conv.get('std_ddof')}, "
                     f"Sortino downside {conv.get('sortino_downside')}")
    return "\n".join(lines)


def run_bars(run: Any, symbol: str, bar_store_dir: Path) -> pd.DataFrame | None:
    """Daily bars of one symbol over a stored run's range from the run's source (regenerated for sim runs,
    the bar store for csv/massive), indexed by timestamp; None when the store does not have them."""
    if run.data_source == "sim":
        from engine.data.sim import SimMarket

        market = SimMarket(seed=int(run.params.get("seed", 7)), n_symbols=max(run.n_symbols, 1))
        bars = market.daily_bars(run.start, run.end, symbols=[symbol]).frame(symbol)
    else:
        from engine.data.barstore import BarStore

        try:
            panel = BarStore(bar_store_dir, run.data_source).load(run.start, run.end)
        except (LookupError, OSError, ValueError):
            return None
        if symbol not in set(panel.symbols):
            return None
        bars = panel.frame(symbol)
    bars.index = pd.to_datetime(bars.index)
    return bars


def trade_markers(run: Any, trades: pd.DataFrame, bars: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """Entry, stop and exit points (columns x, y and, for exits, text) on a run's price chart. Stock trades
    are priced in shares; options trades in premium, so they are placed on the underlying: entry at the
    underlying's price at entry (the signal close), the stop level, and the exit at the underlying's close
    on the exit day. Positions still open have no exit marker."""
    if run.mode == "stock":
        entry = pd.DataFrame({"x": trades["entry_date"], "y": trades["entry_price"]})
        exit_ = pd.DataFrame({"x": trades["exit_date"], "y": trades["exit_price"], "text": trades["exit_reason"]})
    else:
        under = trades["detail"].map(lambda d: (d or {}).get("underlying_entry", np.nan)).astype(float)
        entry = pd.DataFrame({"x": trades["entry_date"], "y": under})
        closes = None if bars is None else bars["close"]
        ys = [np.nan if closes is None or pd.Timestamp(x) not in closes.index else float(closes[pd.Timestamp(x)])
              for x in trades["exit_date"]]
        exit_ = pd.DataFrame({"x": trades["exit_date"], "y": ys,
                              "text": trades["exit_reason"] + " (" + trades["detail"].map(
                                  lambda d: str((d or {}).get("structure", ""))) + ")"})
    stop = pd.DataFrame({"x": trades["entry_date"], "y": trades["stop"]})
    return {"entry": entry, "stop": stop, "exit": exit_[trades["exit_reason"] != "open"]}
