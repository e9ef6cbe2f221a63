"""IV rank from a daily at-the-money implied volatility series, as known before a decision day.

A decision on day D (the 08:30 pre-market, or any time during D) knows the closing IV of the sessions
before D only, so ``iv_rank`` takes the decision day ``as_of`` and drops every observation dated D or
later (DESIGN §5).  Over the last ``window`` valid observations before ``as_of`` (252 ~ one year of
sessions), the latest of them being the current IV:

    rank = (current - min) / (max - min) * 100, min and max over the window (current included).

NaN when fewer than ``min_periods`` valid points are available, or when the window is flat.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd

__all__ = ["MIN_PERIODS", "iv_rank"]

MIN_PERIODS = 20


def _window(series: pd.Series, as_of: date, window: int, min_periods: int) -> np.ndarray | None:
    if window < 2:
        raise ValueError(f"window must be at least 2: {window!r}")
    if not isinstance(series, pd.Series):
        raise TypeError(f"series must be a pandas Series indexed by date, got {type(series).__name__}")
    s = series if series.index.is_monotonic_increasing else series.sort_index()
    days = pd.to_datetime(pd.Index(s.index)).normalize()
    s = s[days < pd.Timestamp(as_of)]
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    values = values[np.isfinite(values)][-window:]
    if values.size < max(2, min_periods):
        return None
    return values


def iv_rank(series: pd.Series, *, as_of: date, window: int = 252, min_periods: int = MIN_PERIODS) -> float:
    """(current - min) / (max - min) * 100 over the last ``window`` valid points dated before ``as_of``,
    the latest of them being current; NaN if too short or flat."""
    w = _window(series, as_of, window, min_periods)
    if w is None:
        return math.nan
    lo, hi = w.min(), w.max()
    if hi <= lo:
        return math.nan
    return float((w[-1] - lo) / (hi - lo) * 100.0)
