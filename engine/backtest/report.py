"""Human and machine outputs of a run: the metrics table, the trade list CSV, the trade-list hash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TRADES_CSV_COLUMNS", "format_metrics", "trades_csv_frame", "trades_hash", "write_trades_csv"]

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
