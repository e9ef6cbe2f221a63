"""IV rank and IV percentile from a daily at-the-money implied volatility series.

Both look at the last ``window`` valid observations (252 ~ one year of sessions) ending with the
current (latest) one:

- rank       = (current - min) / (max - min) * 100, min and max over the window (current included);
- percentile = share of the *other* days in the window whose IV was below the current IV * 100.

NaN when fewer than ``min_periods`` valid points are available, or (rank only) when the window is flat.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["MIN_PERIODS", "iv_percentile", "iv_rank"]

MIN_PERIODS = 20


def _window(series: pd.Series | np.ndarray | list, window: int, min_periods: int) -> np.ndarray | None:
    if window < 2:
        raise ValueError(f"window must be at least 2: {window!r}")
    s = series if isinstance(series, pd.Series) else pd.Series(series, dtype="float64")
    if not s.index.is_monotonic_increasing:
        s = s.sort_index()
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    values = values[np.isfinite(values)][-window:]
    if values.size < max(2, min_periods):
        return None
    return values


def iv_rank(series, window: int = 252, min_periods: int = MIN_PERIODS) -> float:
    """(current - min) / (max - min) * 100 over the last ``window`` valid points; NaN if too short/flat."""
    w = _window(series, window, min_periods)
    if w is None:
        return math.nan
    lo, hi = w.min(), w.max()
    if hi <= lo:
        return math.nan
    return float((w[-1] - lo) / (hi - lo) * 100.0)


def iv_percentile(series, window: int = 252, min_periods: int = MIN_PERIODS) -> float:
    """Share of the other days in the window with IV below the current IV, * 100; NaN if too short."""
    w = _window(series, window, min_periods)
    if w is None:
        return math.nan
    prior = w[:-1]
    return float(np.count_nonzero(prior < w[-1]) / prior.size * 100.0)
