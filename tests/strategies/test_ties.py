"""Ties at thresholds have one answer (issue 11, item 12; DESIGN §4 precision): close == SMA50 exactly and a
range position of exactly 50 give the same zone and signal on a float32 scan (borderline symbols recomputed
in float64) as on a float64 scan, and the answer is the rules' inclusive one."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from engine.data.panel import Panel
from engine.scanning import scan_with_float64_ties
from engine.strategies.atr_matrix import ATR_MATRIX, ATRMatrixParams, scan

# Short windows so a few bars decide; the filters that do not matter here are off.
P = ATRMatrixParams(atr_period=3, ema_period=3, sma_fast=4, sma_trend=6, sma_mid=6, sma_slow=6, range_period=4,
                    volume_period=3, min_history=8, gate_lookback=None, min_atr_pct=0.0, min_close=0.0,
                    min_dollar_volume=0.0, require_ma_aligned=False, require_close_above_sma_fast=False)

# Closes whose last value is exactly the mean of the last six (hand check in Decimal below): in float64 the
# computed SMA lands 1.4e-14 above the close, in float32 exactly on it: the two scans disagreed.
TIE_CLOSES = [150.0, 151.0, 170.44, 97.9, 157.21, 20.38, 100.17, 109.22]


class _NoGate:
    """The strategy without the data-quality gate (these few hand-made bars would trip its jump checks)."""

    def scan(self, panel: Panel, params: ATRMatrixParams):  # type: ignore[no-untyped-def]
        return ATR_MATRIX.scan(panel, params, gate=False)


def _panel(closes: list[list[float]], highs: list[list[float]], lows: list[list[float]],
           dtype: type) -> Panel:
    c = np.array(closes, dtype=np.float64).T
    h = np.array(highs, dtype=np.float64).T
    lo = np.array(lows, dtype=np.float64).T
    days, n = c.shape
    dates = np.arange(np.datetime64("2026-01-05"), np.datetime64("2026-01-05") + days).astype("datetime64[D]")
    return Panel(dates=dates, symbols=np.array([f"S{j}" for j in range(n)], dtype=object),
                 open=c.astype(dtype), high=h.astype(dtype), low=lo.astype(dtype), close=c.astype(dtype),
                 volume=np.full((days, n), 1e6, dtype=dtype))


def _tie_panels() -> tuple[Panel, Panel]:
    # S0: close == SMA6 exactly; S1: close exactly half-way in its 4-day range (range position 50)
    closes0 = TIE_CLOSES
    highs0 = [c + 1.0 for c in closes0]
    lows0 = [c - 1.0 for c in closes0]
    closes1 = [99.8, 100.0, 100.1, 100.3, 100.7, 100.9, 101.3, 100.75]
    highs1 = [100.0, 100.2, 100.2, 100.4, 101.1, 101.1, 101.3, 100.9]
    lows1 = [99.7, 99.9, 100.0, 100.1, 100.5, 100.6, 100.2, 100.5]
    args = ([closes0, closes1], [highs0, highs1], [lows0, lows1])
    return _panel(*args, dtype=np.float32), _panel(*args, dtype=np.float64)


def test_the_fixtures_are_exact_ties_by_hand() -> None:
    last6 = [Decimal(str(x)) for x in TIE_CLOSES[-6:]]
    assert sum(last6) / 6 == Decimal("109.22")  # close == SMA6
    # S1's last four bars: highs 101.1 101.1 101.3 100.9, lows 100.5 100.6 100.2 100.5 -> range 100.2..101.3;
    # the close 100.75 is half-way: 100 x 0.55 / 1.1 = 50
    hi, lo, close = Decimal("101.3"), Decimal("100.2"), Decimal("100.75")
    assert 100 * (close - lo) / (hi - lo) == 50


def test_exact_ties_give_one_answer_in_float32_and_float64() -> None:
    p32, p64 = _tie_panels()
    f64 = scan(p64, P, gate=False).set_index("symbol")
    f32 = scan_with_float64_ties(_NoGate(), p32, P, lambda syms: p64.select(syms)).set_index("symbol")
    assert scan(p32, P, gate=False).loc[0, "atr_distance"] != 0.0  # float32 input rounding alone misses the tie
    # the rules' inclusive answers: atr_distance exactly 0 is the entry zone; range position 50 passes >= 50
    assert f64.loc["S0", "atr_distance"] == 0.0 and f64.loc["S0", "zone"] == "entry"
    assert f64.loc["S1", "range_pos_20"] == 50.0
    for sym in ("S0", "S1"):
        assert f32.loc[sym, "zone"] == f64.loc[sym, "zone"]
        assert bool(f32.loc[sym, "signal"]) == bool(f64.loc[sym, "signal"])
        assert f32.loc[sym, "atr_distance"] == f64.loc[sym, "atr_distance"]
        assert f32.loc[sym, "range_pos_20"] == f64.loc[sym, "range_pos_20"]
