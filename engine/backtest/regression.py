"""Regression statistics (the way LEAN's regression algorithms work): fixed backtests on the simulated
market whose statistics and trade-list hash are stored in the repository.

``tests/backtest/test_regression.py`` fails when a change alters them. When a change is meant to alter
them, regenerate on purpose and commit the new file with the change that explains it::

    .venv/bin/python -m engine.backtest.regression --update
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from engine.backtest.report import trades_hash
from engine.backtest.runner import BacktestSpec, run_backtest

__all__ = ["CASES", "EXPECTED_DIR", "STAT_KEYS", "compute"]

EXPECTED_DIR = Path(__file__).resolve().parents[2] / "tests" / "backtest" / "regression"
STAT_KEYS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
             "max_drawdown_duration", "trades", "closed_trades", "win_rate", "avg_win", "avg_loss", "expectancy_r",
             "profit_factor", "exposure", "turnover", "fees", "slippage", "end_equity")

CASES: dict[str, BacktestSpec] = {
    "ref_sma_atr_stock_sim": BacktestSpec(strategy="ref_sma_atr", mode="stock", source="sim", symbols=80, seed=7,
                                          start=date(2022, 1, 3), end=date(2025, 12, 31)),
    "atr_matrix_stock_sim": BacktestSpec(strategy="atr_matrix", mode="stock", source="sim", symbols=120, seed=7,
                                         start=date(2024, 1, 2), end=date(2025, 12, 31)),
    # the option path: selection, structures, the paper fill (mid plus spread fraction) and the fee model
    "atr_matrix_options_sim": BacktestSpec(strategy="atr_matrix", mode="options", source="sim", symbols=60,
                                           seed=7, start=date(2025, 1, 2), end=date(2025, 6, 30)),
}


def compute(name: str) -> dict[str, Any]:
    result = run_backtest(CASES[name])
    stats = {k: result.metrics.get(k) for k in STAT_KEYS}
    return {"case": name, "stats": stats, "trades_sha256": trades_hash(result.trades)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--update", action="store_true", help="rewrite the expected files")
    args = ap.parse_args(argv)
    for name in CASES:
        got = compute(name)
        path = EXPECTED_DIR / f"{name}.json"
        if args.update:
            path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
            print(f"wrote {path}")
        else:
            print(json.dumps(got))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
