"""IV rank: hand-computed windows (the decision day is the day after the last point)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from engine.options.ivrank import iv_rank


def _series(values, start=date(2025, 1, 2)):
    return pd.Series(values, index=[start + timedelta(days=i) for i in range(len(values))], dtype="float64")


def _rank(series, **kw):
    """Rank as of the day after the series' last point, so every point is history."""
    return iv_rank(series, as_of=max(series.index) + timedelta(days=1), **kw)


def test_rank_by_hand():
    # 25 days: 0.20, 0.21, ..., 0.44 then today 0.30
    values = [*(0.20 + 0.01 * i for i in range(25)), 0.30]
    s = _series(values)
    # rank: (0.30 - 0.20) / (0.44 - 0.20) * 100 = 0.10 / 0.24 * 100 = 41.666...
    assert _rank(s) == pytest.approx(100 * 0.10 / 0.24)


def test_window_only_looks_back_window_points():
    # an old spike at 0.90 falls out of a 30-point window
    values = [0.90, *(0.20 + 0.005 * i for i in range(40)), 0.25]
    s = _series(values)
    # last 30 points: 0.20 + 0.005*i for i = 11..39 (0.255..0.395) and today 0.25
    # -> min 0.25 (today), rank 0
    assert _rank(s, window=30) == pytest.approx(0.0)
    # with the full history the spike is the max: (0.25 - 0.20) / (0.90 - 0.20) * 100
    assert _rank(s, window=252) == pytest.approx(100 * 0.05 / 0.70)


def test_highest_ever_is_100():
    s = _series([*np.linspace(0.2, 0.3, 30), 0.5])
    assert _rank(s) == 100.0


def test_insufficient_history_or_flat_gives_nan():
    assert math.isnan(_rank(_series([0.2, 0.3, 0.25])))
    assert math.isnan(_rank(_series([0.2 + 0.01 * i for i in range(19)])))  # 19 < 20 points
    assert math.isnan(_rank(_series([0.2] * 40)))  # flat: rank undefined
    # NaNs do not count towards history
    assert math.isnan(_rank(_series([np.nan] * 30 + [0.2] * 5 + [0.3])))


def test_unsorted_index_is_sorted_first():
    s = _series([0.20 + 0.01 * i for i in range(25)])
    shuffled = s.sample(frac=1.0, random_state=3)
    assert _rank(shuffled) == _rank(s) == 100.0


def test_bad_window():
    with pytest.raises(ValueError):
        _rank(_series([0.2] * 30), window=1)
