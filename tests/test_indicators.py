"""engine.indicators against TA-Lib on real daily bars, per-column seeding, dtypes and edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import indicators as ind

SAMPLE_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "stocks" / "sample_daily_2013_2018.csv"
RTOL = 1e-9


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    """The sample CSV as (days x symbols) float64 arrays."""
    if not SAMPLE_CSV.exists():
        pytest.skip(f"real sample data not found at {SAMPLE_CSV} (../shared/data is absent in this checkout)")
    df = pd.read_csv(SAMPLE_CSV)
    wide = df.pivot(index="date", columns="Name")
    out = {f: np.ascontiguousarray(wide[f].to_numpy(dtype=np.float64)) for f in ("high", "low", "close")}
    out["symbols"] = np.asarray(wide["close"].columns)
    return out


def assert_matches(ours: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    """Same NaN positions, values equal to ``rtol`` relative."""
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg="NaN positions differ")
    mask = ~np.isnan(ref)
    np.testing.assert_allclose(ours[mask], ref[mask], rtol=rtol, atol=0)


def talib_reference(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "true_range": talib.TRANGE(h, lo, c),
        "atr": talib.ATR(h, lo, c, 14),
        "sma20": talib.SMA(c, 20),
        "sma50": talib.SMA(c, 50),
        "sma100": talib.SMA(c, 100),
        "sma200": talib.SMA(c, 200),
        "ema10": talib.EMA(c, 10),
        "max20": talib.MAX(h, 20),
        "min20": talib.MIN(lo, 20),
    }


def ours_2d(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "true_range": ind.true_range(h, lo, c),
        "atr": ind.atr(h, lo, c, 14),
        "sma20": ind.sma(c, 20),
        "sma50": ind.sma(c, 50),
        "sma100": ind.sma(c, 100),
        "sma200": ind.sma(c, 200),
        "ema10": ind.ema(c, 10),
        "max20": ind.rolling_max(h, 20),
        "min20": ind.rolling_min(lo, 20),
    }


# ---------------------------------------------------------------------------------------------
# TA-Lib equality on real data


def test_universe_arrays_equal_talib_per_symbol(real: dict[str, np.ndarray]) -> None:
    h, lo, c = real["high"], real["low"], real["close"]
    ours = ours_2d(h, lo, c)
    for j, symbol in enumerate(real["symbols"]):
        ref = talib_reference(h[:, j].copy(), lo[:, j].copy(), c[:, j].copy())
        for name, expected in ref.items():
            try:
                assert_matches(ours[name][:, j], expected)
            except AssertionError as exc:
                raise AssertionError(f"{name} differs from TA-Lib for {symbol}") from exc


def test_one_dimensional_input_equals_talib(real: dict[str, np.ndarray]) -> None:
    h, lo, c = (np.ascontiguousarray(real[f][:, 0]) for f in ("high", "low", "close"))
    ref = talib_reference(h, lo, c)
    ours = ours_2d(h, lo, c)
    for name in ref:
        assert ours[name].shape == h.shape
        assert_matches(ours[name], ref[name])


@pytest.mark.parametrize("period", [1, 2, 5, 30])
def test_other_periods_equal_talib(real: dict[str, np.ndarray], period: int) -> None:
    h, lo, c = real["high"][:, :3], real["low"][:, :3], real["close"][:, :3]
    for j in range(3):
        hj, lj, cj = h[:, j].copy(), lo[:, j].copy(), c[:, j].copy()
        assert_matches(ind.atr(h, lo, c, period)[:, j], talib.ATR(hj, lj, cj, period))
        if period == 1:  # TA-Lib accepts period 1 for ATR only
            continue
        assert_matches(ind.sma(c, period)[:, j], talib.SMA(cj, period))
        assert_matches(ind.ema(c, period)[:, j], talib.EMA(cj, period))
        assert_matches(ind.rolling_max(h, period)[:, j], talib.MAX(hj, period))
        assert_matches(ind.rolling_min(lo, period)[:, j], talib.MIN(lj, period))


# ---------------------------------------------------------------------------------------------
# late-starting columns


def late_start(a: np.ndarray, starts: list[int]) -> np.ndarray:
    out = a[:, : len(starts)].copy()
    for j, s in enumerate(starts):
        out[:s, j] = np.nan
    return out


# Starts chosen around the warm-ups: 0, inside ATR's 14, exactly at 14/20, past 200, too late for SMA200.
STARTS = [0, 1, 9, 14, 20, 37, 201, 1100]


def test_late_columns_equal_the_column_alone(real: dict[str, np.ndarray]) -> None:
    starts = (STARTS * 2)[: real["close"].shape[1]]
    h, lo, c = (late_start(real[f], starts) for f in ("high", "low", "close"))
    ours = ours_2d(h, lo, c)
    for j, s in enumerate(starts):
        alone = ours_2d(h[s:, j].copy(), lo[s:, j].copy(), c[s:, j].copy())
        ref = talib_reference(h[:, j].copy(), lo[:, j].copy(), c[:, j].copy())  # TA-Lib skips leading NaNs
        for name, col in ours.items():
            assert np.all(np.isnan(col[:s, j])), f"{name} has values before column {j} starts"
            np.testing.assert_array_equal(col[s:, j], alone[name], err_msg=f"{name}, start {s}")
            assert_matches(col[:, j], ref[name])


def test_last_value_helpers_equal_last_row(real: dict[str, np.ndarray]) -> None:
    starts = (STARTS * 2)[: real["close"].shape[1]]
    h, lo, c = (late_start(real[f], starts) for f in ("high", "low", "close"))
    for dtype in (np.float64, np.float32):
        hh, ll, cc = h.astype(dtype), lo.astype(dtype), c.astype(dtype)
        pairs = [
            (ind.atr_last(hh, ll, cc, 14), ind.atr(hh, ll, cc, 14)[-1]),
            (ind.ema_last(cc, 10), ind.ema(cc, 10)[-1]),
            (ind.rolling_max_last(hh, 20), ind.rolling_max(hh, 20)[-1]),
            (ind.rolling_min_last(ll, 20), ind.rolling_min(ll, 20)[-1]),
        ]
        for period in (20, 50, 200):
            pairs.append((ind.sma_last(cc, period), ind.sma(cc, period)[-1]))
        many = ind.sma_last_many(cc, (200, 20, 50))
        pairs += list(zip(many, (ind.sma(cc, 200)[-1], ind.sma(cc, 20)[-1], ind.sma(cc, 50)[-1]), strict=True))
        for last, row in pairs:
            assert last.dtype == dtype
            assert_matches(last.astype(np.float64), row.astype(np.float64), rtol=1e-12 if dtype == np.float64 else 1e-6)
    # 1-D input gives a scalar of the input dtype
    value = ind.atr_last(h[:, 0].copy(), lo[:, 0].copy(), c[:, 0].copy())
    assert isinstance(value, np.float64)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    days=st.integers(1, 60),
    n=st.integers(1, 6),
    period=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_random_late_columns_equal_the_column_alone(seed: int, days: int, n: int, period: int, dtype) -> None:
    rng = np.random.default_rng(seed)
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, (days, n)), axis=0))
    h = c * (1 + rng.uniform(0, 0.03, (days, n)))
    lo = c * (1 - rng.uniform(0, 0.03, (days, n)))
    starts = rng.integers(0, days + 1, n)
    for j, s in enumerate(starts):
        for a in (h, lo, c):
            a[:s, j] = np.nan
    h, lo, c = (a.astype(dtype) for a in (h, lo, c))
    funcs = {
        "atr": lambda hh, ll, cc: ind.atr(hh, ll, cc, period),
        "tr": ind.true_range,
        "sma": lambda hh, ll, cc: ind.sma(cc, period),
        "ema": lambda hh, ll, cc: ind.ema(cc, period),
        "max": lambda hh, ll, cc: ind.rolling_max(hh, period),
        "min": lambda hh, ll, cc: ind.rolling_min(ll, period),
    }
    for name, fn in funcs.items():
        full = fn(h, lo, c)
        assert full.dtype == dtype and full.shape == c.shape
        for j, s in enumerate(starts):
            alone = fn(h[s:, j].copy(), lo[s:, j].copy(), c[s:, j].copy())
            np.testing.assert_array_equal(full[s:, j], alone, err_msg=f"{name} column {j} start {s}")
            assert np.all(np.isnan(full[:s, j]))


# ---------------------------------------------------------------------------------------------
# dtypes, shapes, edge cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_are_preserved(real: dict[str, np.ndarray], dtype) -> None:
    h, lo, c = (real[f][:300, :4].astype(dtype) for f in ("high", "low", "close"))
    results = ours_2d(h, lo, c)
    for name, out in results.items():
        assert out.dtype == dtype, name
        assert out.shape == c.shape, name
    one_d = ind.sma(c[:, 0], 5)
    assert one_d.dtype == dtype and one_d.shape == (300,)


def test_float32_results_track_float64(real: dict[str, np.ndarray]) -> None:
    h, lo, c = real["high"], real["low"], real["close"]
    r64 = ours_2d(h, lo, c)
    r32 = ours_2d(h.astype(np.float32), lo.astype(np.float32), c.astype(np.float32))
    for name in r64:
        # float32 inputs are rounded to ~6e-8 of the price; accumulation is float64, so there is
        # no drift over 1,259 days. Differences (TR, ATR) can lose relative precision on small
        # ranges, so the bound is relative to the price level, not to the value.
        ours, ref = r32[name].astype(np.float64), r64[name]
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        mask = ~np.isnan(ref)
        assert np.all(np.abs(ours[mask] - ref[mask]) <= 5e-7 * c[mask]), name


def test_integer_input_is_computed_as_float64() -> None:
    out = ind.sma(np.arange(10), 3)
    assert out.dtype == np.float64
    assert out[2] == 1.0 and out[9] == 8.0


def test_hand_computed_values() -> None:
    # closes 1..6, high = close + 1, low = close - 1
    c = np.arange(1.0, 7.0)
    h, lo = c + 1, c - 1
    # TR_t = max(2, |c+1 - (c-1)| = 2, |c-1 - (c-1)| = 0) = 2 from day 1; day 0 has no previous close
    np.testing.assert_array_equal(ind.true_range(h, lo, c), [np.nan, 2, 2, 2, 2, 2])
    # ATR(3): first value on day 3 = mean(TR1..TR3) = 2, then (2*2 + 2)/3 = 2
    np.testing.assert_array_equal(ind.atr(h, lo, c, 3), [np.nan, np.nan, np.nan, 2, 2, 2])
    # SMA(3) of 1..6: 2, 3, 4, 5 from day 2
    np.testing.assert_array_equal(ind.sma(c, 3), [np.nan, np.nan, 2, 3, 4, 5])
    # EMA(3): seed on day 2 = SMA = 2; k = 0.5: 2 + 0.5*(4-2) = 3, then 4, 5
    np.testing.assert_array_equal(ind.ema(c, 3), [np.nan, np.nan, 2, 3, 4, 5])
    np.testing.assert_array_equal(ind.rolling_max(h, 3), [np.nan, np.nan, 4, 5, 6, 7])
    np.testing.assert_array_equal(ind.rolling_min(lo, 3), [np.nan, np.nan, 0, 1, 2, 3])


def test_gaps_inside_a_series() -> None:
    c = np.array([1.0, 2, 3, np.nan, 5, 6, 7, 8])
    # window indicators: NaN while the window holds the gap, back afterwards
    np.testing.assert_array_equal(ind.sma(c, 2), [np.nan, 1.5, 2.5, np.nan, np.nan, 5.5, 6.5, 7.5])
    np.testing.assert_array_equal(ind.rolling_max(c, 2), [np.nan, 2, 3, np.nan, np.nan, 6, 7, 8])
    # recursive indicators carry the NaN forward, as TA-Lib does
    e = ind.ema(c, 2)
    assert e[2] == pytest.approx(2.5) and np.all(np.isnan(e[3:]))


def test_short_series_and_bad_periods() -> None:
    c = np.array([1.0, 2.0, 3.0])
    for out in (ind.sma(c, 5), ind.ema(c, 5), ind.rolling_max(c, 5), ind.atr(c, c, c, 5)):
        assert out.shape == (3,) and np.all(np.isnan(out))
    assert np.isnan(ind.sma_last(c, 5)) and np.isnan(ind.atr_last(c, c, c, 5))
    empty = np.empty((0, 3))
    assert ind.atr(empty, empty, empty).shape == (0, 3)
    assert ind.ema(empty, 3).shape == (0, 3)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            ind.sma(c, bad)
    with pytest.raises(ValueError):
        ind.sma(np.zeros((2, 2, 2)), 2)


def test_atr_period_one_is_true_range(real: dict[str, np.ndarray]) -> None:
    h, lo, c = real["high"][:50], real["low"][:50], real["close"][:50]
    np.testing.assert_array_equal(ind.atr(h, lo, c, 1), ind.true_range(h, lo, c))


def test_first_valid_index() -> None:
    a = np.array([[np.nan, 1.0, np.nan], [2.0, 1.0, np.nan], [3.0, 1.0, np.nan]])
    np.testing.assert_array_equal(ind.first_valid_index(a), [1, 0, 3])


# ---------------------------------------------------------------------------------------------
# the fused full series, threads, and the benchmark's two sides


def test_full_series_equals_the_single_functions_and_talib(real: dict[str, np.ndarray]) -> None:
    starts = (STARTS * 2)[: real["close"].shape[1]]
    h, lo, c = (late_start(real[f], starts) for f in ("high", "low", "close"))
    rng = np.random.default_rng(3)
    v = np.round(rng.uniform(1e5, 5e6, c.shape))
    v[np.isnan(c)] = np.nan
    v[700, 2] = np.nan  # a gap inside one volume series: only the dollar-volume windows over it are NaN
    for dtype in (np.float64, np.float32):
        hh, ll, cc, vv = (a.astype(dtype) for a in (h, lo, c, v))
        fs = ind.full_series(hh, ll, cc, vv, sma_periods=(20, 50, 100, 200, 50))
        np.testing.assert_array_equal(fs.atr, ind.atr(hh, ll, cc, 14))
        for p in (20, 50, 100, 200):
            np.testing.assert_array_equal(fs.sma[p], ind.sma(cc, p))
        np.testing.assert_array_equal(fs.ema, ind.ema(cc, 10))
        np.testing.assert_array_equal(fs.highest, ind.rolling_max(hh, 20))
        np.testing.assert_array_equal(fs.lowest, ind.rolling_min(ll, 20))
        for out in (fs.atr, fs.ema, fs.highest, fs.dollar_volume, *fs.sma.values()):
            assert out.dtype == dtype and out.shape == c.shape
        if dtype == np.float64:  # the backtester's own call, and TA-Lib
            np.testing.assert_array_equal(fs.dollar_volume, ind.sma(cc * vv, 20))
            for j in range(c.shape[1]):
                if j != 2:  # TA-Lib's SMA stays NaN after a gap for good; ours recovers (module doc)
                    assert_matches(fs.dollar_volume[:, j], talib.SMA(c[:, j] * v[:, j], 20))


def test_full_series_one_dimensional_and_atr_period_one(real: dict[str, np.ndarray]) -> None:
    h, lo, c = (np.ascontiguousarray(real[f][:, 0]) for f in ("high", "low", "close"))
    fs = ind.full_series(h, lo, c, np.ones_like(c), atr_period=1, sma_periods=(5,), ema_period=3, range_period=7,
                         volume_period=4)
    assert fs.atr.shape == c.shape
    np.testing.assert_array_equal(fs.atr, ind.true_range(h, lo, c))
    assert_matches(fs.sma[5], talib.SMA(c, 5))
    assert_matches(fs.ema, talib.EMA(c, 3))
    assert_matches(fs.highest, talib.MAX(h, 7))
    assert_matches(fs.lowest, talib.MIN(lo, 7))
    assert_matches(fs.dollar_volume, talib.SMA(c, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        ind.full_series(h, lo, c, np.ones(3))
    with pytest.raises(ValueError, match="period"):
        ind.full_series(h, lo, c, c, range_period=0)


def _wide(seed: int, days: int, n: int) -> tuple[np.ndarray, ...]:
    """More columns than one thread's chunk, some starting late, with gaps."""
    rng = np.random.default_rng(seed)
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, n)), axis=0))
    h = c * (1 + rng.uniform(0, 0.03, (days, n)))
    lo = c * (1 - rng.uniform(0, 0.03, (days, n)))
    v = rng.uniform(1e5, 1e6, (days, n))
    late = rng.integers(0, days, n) * (rng.random(n) < 0.1)
    gaps = rng.random((days, n)) < 0.001
    for a in (h, lo, c, v):
        a[np.arange(days)[:, None] < late[None, :]] = np.nan
        a[gaps] = np.nan
    return h, lo, c, v


def test_threads_split_columns_without_changing_results() -> None:
    h, lo, c, v = _wide(5, 90, 2 * ind._CHUNK + 77)
    previous = ind.set_threads(1)
    try:
        one = ind.full_series(h, lo, c, v, sma_periods=(5, 30))
        one_atr = ind.atr_last(h, lo, c)
    finally:
        ind.set_threads(previous)
    ind.set_threads(3)
    try:
        many = ind.full_series(h, lo, c, v, sma_periods=(5, 30))
        many_atr = ind.atr_last(h, lo, c)
    finally:
        ind.set_threads(previous)
    for a, b in zip((one.atr, one.ema, one.highest, one.lowest, one.dollar_volume, *one.sma.values()),
                    (many.atr, many.ema, many.highest, many.lowest, many.dollar_volume, *many.sma.values()),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one_atr, many_atr)
    with pytest.raises(ValueError, match="threads"):
        ind.set_threads(0)


def test_calls_from_several_python_threads_at_once() -> None:
    """The console and the scheduler compute indicators from their own threads."""
    from concurrent.futures import ThreadPoolExecutor

    h, lo, c, _ = _wide(6, 60, ind._CHUNK + 10)
    expected = ind.atr(h, lo, c, 14)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ind.atr(h, lo, c, 14), range(8)))
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_benchmark_sides_compute_the_same_series(real: dict[str, np.ndarray]) -> None:
    """``bench scan`` compares like with like: TA-Lib's loop returns the same nine series."""
    from engine.bench.scan import _full_series, _one_by_one, _talib_full_series
    from engine.strategies.atr_matrix import ATRMatrixParams

    p = ATRMatrixParams()
    h, lo, c = (real[f][:400, :6] for f in ("high", "low", "close"))
    v = np.round(np.random.default_rng(2).uniform(1e5, 1e6, c.shape))
    fs = _full_series(h, lo, c, v, p)
    ours = [fs.atr, *fs.sma.values(), fs.ema, fs.highest, fs.lowest, fs.dollar_volume]
    for a, b in zip(ours, _one_by_one(h, lo, c, v, p), strict=True):
        np.testing.assert_array_equal(a, b)
    ref = _talib_full_series(*(np.ascontiguousarray(a.T) for a in (h, lo, c, v)), p)
    for j, per_symbol in enumerate(ref):
        for k, expected in enumerate(per_symbol):
            assert_matches(ours[k][:, j], expected)
