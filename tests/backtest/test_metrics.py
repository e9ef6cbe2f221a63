"""Metrics against hand calculation and against empyrical-reloaded on the same equity curves."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import pytest

from engine.backtest import metrics as M
from engine.backtest.stock import run_ref_sma_atr
from engine.data.panel import Panel

_EQ = np.array([100.0, 110.0, 99.0, 99.0, 108.9])  # returns +10%, -10%, 0, +10%
_DATES = np.array(["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-29", "2024-03-01"], dtype="datetime64[D]")


def _trades() -> pd.DataFrame:
    return pd.DataFrame({
        "pnl": [100.0, -50.0, 30.0, -20.0, 999.0],
        "risk": [50.0, 50.0, 30.0, 40.0, 10.0],
        "exit_reason": ["trend", "stop", "trend", "stop", "open"],
    })


def test_by_hand() -> None:
    m = M.compute_metrics(_DATES, _EQ, _trades(), gross_exposure=np.array([0, 55, 49.5, 0, 54.45]),
                          traded_notional=218.0, fees=1.5, slippage=0.25)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["cagr"] == pytest.approx(1.089 ** (252 / 4) - 1)
    # mean 0.025; deviations .075 -.125 -.025 .075 -> sum of squares 0.0275, ddof=1
    sd = math.sqrt(0.0275 / 3)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(0.025 / sd * math.sqrt(252))
    # downside over all 4 observations: mean(0, .01, 0, 0) = .0025
    assert m["sortino"] == pytest.approx(0.025 * 252 / (0.05 * math.sqrt(252)))
    assert m["max_drawdown"] == pytest.approx(99 / 110 - 1)
    assert m["max_drawdown_duration"] == 3  # 99, 99, 108.9 are all below the 110 peak
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)
    assert m["exposure"] == pytest.approx(np.mean([0, 0.5, 0.5, 0, 0.5]))
    assert m["turnover"] == pytest.approx(218.0 / np.mean(_EQ) / (4 / 252))
    assert (m["fees"], m["slippage"]) == (1.5, 0.25)
    assert (m["trades"], m["closed_trades"]) == (5, 4)
    assert m["win_rate"] == 0.5
    assert (m["avg_win"], m["avg_loss"]) == (65.0, -35.0)
    assert m["expectancy_r"] == pytest.approx((2 - 1 + 1 - 0.5) / 4)
    assert m["profit_factor"] == pytest.approx(130 / 70)
    assert m["conventions"]["periods_per_year"] == 252 and m["conventions"]["std_ddof"] == 1


def test_monthly_table_by_hand() -> None:
    table = M.monthly_returns(_DATES, _EQ)
    assert table.loc[2024, 1] == pytest.approx(0.10)  # 100 -> 110
    assert table.loc[2024, 2] == pytest.approx(99 / 110 - 1)
    assert table.loc[2024, 3] == pytest.approx(0.10)
    assert np.isnan(table.loc[2024, 4])


def test_flat_curve_has_no_ratios() -> None:
    m = M.compute_metrics(_DATES, np.full(5, 100.0), _trades().iloc[:0])
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0 and m["win_rate"] is None


def _curves(sample_panel: Panel) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    walks = [100 * np.exp(np.cumsum(rng.normal(mu, sig, 800))) for mu, sig in ((0.0004, 0.01), (-0.0002, 0.02))]
    return [*walks, run_ref_sma_atr(sample_panel).equity]


def test_against_empyrical(sample_panel: Panel) -> None:
    for eq in _curves(sample_panel):
        r = M.daily_returns(eq)
        assert M.volatility(r) == pytest.approx(empyrical.annual_volatility(r), rel=1e-12)
        assert M.sharpe(r) == pytest.approx(empyrical.sharpe_ratio(r), rel=1e-12)
        assert M.sortino(r) == pytest.approx(empyrical.sortino_ratio(r), rel=1e-12)
        assert M.cagr(eq) == pytest.approx(empyrical.cagr(r), rel=1e-10)
        assert M.max_drawdown(eq) == pytest.approx(empyrical.max_drawdown(r), rel=1e-12)
        m = M.compute_metrics(np.arange(len(eq)).astype("datetime64[D]"), eq, _trades())
        assert m["calmar"] == pytest.approx(empyrical.calmar_ratio(r), rel=1e-10)
        assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(r), rel=1e-12)
