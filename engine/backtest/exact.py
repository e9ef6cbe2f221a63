"""Exact window sums for SMA comparisons, so ties are decided as an exact sum decides them.

A running float sum (add the new value, subtract the oldest) drifts: after thousands of days its
last bits differ from the sum of the 50 values actually in the window, and an exact tie such as
close == SMA50 (common with 4-decimal prices) can then come out either way. Here prices are
mapped to integers on an exact grid and every window sum is a difference of int64 prefix sums,
which is exact; the rules then compare integers (``50 * close > sum50``), never rounded means.

Grids:
* float64 prices on the 1/10,000 grid (exchange prices, the sample CSV, the simulated market):
  ``round(price * 10_000)``;
* float32 prices: every float32 >= 2**-7 is an integer multiple of 2**-30, so ``price * 2**30``
  is exact (sums of 200 prices below $100,000 stay far inside int64).
Anything else (float64 off the decimal grid) raises: the caller must not pretend to be exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IntPrices", "to_int_prices", "window_sums"]

_DECIMAL_SCALE = 10_000
_BINARY_SCALE = 2**30
_GRID_TOLERANCE = 1e-6  # in grid units; float64 rounding of x * 1e4 is far below this


@dataclass(frozen=True)
class IntPrices:
    values: np.ndarray  # int64, same shape as the prices; 0 where the price is NaN
    missing: np.ndarray  # bool, NaN prices
    scale: int  # price = values / scale


def to_int_prices(prices: np.ndarray) -> IntPrices:
    """Prices as exact integers on a grid (see the module doc); raises ValueError when none fits."""
    arr = np.asarray(prices)
    missing = np.isnan(arr)
    if arr.dtype == np.float32:
        bad = ~missing & (arr < 2.0**-7)
        if bad.any():
            raise ValueError(f"price below 2**-7 cannot be summed exactly: {float(arr[bad][0])!r}")
        vals = np.where(missing, 0.0, arr.astype(np.float64) * _BINARY_SCALE).astype(np.int64)
        return IntPrices(vals, missing, _BINARY_SCALE)
    scaled = np.where(missing, 0.0, np.asarray(arr, dtype=np.float64) * _DECIMAL_SCALE)
    rounded = np.rint(scaled)
    off = np.abs(scaled - rounded) > _GRID_TOLERANCE * np.maximum(1.0, np.abs(scaled) * 1e-9)
    if off.any():
        where = np.argwhere(off)[0]
        raise ValueError(
            f"price {float(arr[tuple(where)])!r} at {tuple(int(i) for i in where)} is not on the 1/10,000 grid; "
            "exact SMA ties need grid prices"
        )
    return IntPrices(rounded.astype(np.int64), missing, _DECIMAL_SCALE)


def window_sums(p: IntPrices, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 sums of the last ``period`` values per column and whether each is defined.

    Defined means the window is full and holds no missing value (same rule as ``engine.indicators.sma``).
    """
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    days = p.values.shape[0]
    csum = np.cumsum(p.values, axis=0, dtype=np.int64)
    cmiss = np.cumsum(p.missing, axis=0, dtype=np.int64)
    sums = np.zeros_like(csum)
    defined = np.zeros(p.values.shape, dtype=bool)
    if days >= period:
        sums[period - 1] = csum[period - 1]
        sums[period:] = csum[period:] - csum[:-period]
        nmiss = cmiss[period - 1 :].copy()
        nmiss[1:] -= cmiss[: days - period]
        defined[period - 1 :] = nmiss == 0
    return sums, defined
