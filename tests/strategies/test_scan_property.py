"""Property tests: whatever the panel, the scan never raises, never signals a symbol with bad
data, and every row is either scored or excluded with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.data.panel import FIELDS, Panel
from engine.strategies.atr_matrix import ZONES, ATRMatrixParams, scan

# Short periods so small panels exercise every rule; permissive filters so signals do happen
# (otherwise "never signals bad data" would hold vacuously).
SMALL = ATRMatrixParams(
    atr_period=3,
    ema_period=3,
    sma_fast=4,
    sma_trend=6,
    sma_mid=8,
    sma_slow=10,
    range_period=4,
    volume_period=3,
    min_history=12,
    gate_lookback=None,
    min_atr_pct=0.0,
    min_range_pos=0.0,
    min_close=0.0,
    min_dollar_volume=0.0,
    require_ma_aligned=False,
    require_close_above_sma_fast=False,
)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# Injected defects the gate must catch (so such a symbol may never be signalled).
BAD = (
    "gap",
    "nan_field",
    "inf_field",
    "non_positive",
    "high_below_low",
    "open_outside",
    "close_outside",
    "negative_volume",
    "repeated_bar",
    "split",
    "no_bar_today",
    "all_nan",
    "flat",
)
# Not defects, but awkward: must not break anything.
ODD = ("none", "late_start", "huge_prices", "zero_volume")


def base_panel(rng: np.random.Generator, days: int, n: int, dtype) -> dict[str, np.ndarray]:
    """Clean bars: open near the previous close, wide ranges (>= $0.6), steady volume."""
    drift = rng.uniform(-0.01, 0.02, n)
    close = np.empty((days, n))
    open_ = np.empty((days, n))
    prev = np.full(n, 50.0)
    for t in range(days):
        open_[t] = prev * np.exp(rng.normal(0, 0.005, n))
        close[t] = open_[t] * np.exp(rng.normal(drift, 0.02, n))
        prev = close[t]
    high = np.maximum(open_, close) + rng.uniform(0.3, 1.0, (days, n))
    low = np.minimum(open_, close) - rng.uniform(0.3, 1.0, (days, n))
    volume = rng.uniform(0.9e6, 1.1e6, (days, n)).round()
    return {f: a.astype(dtype) for f, a in zip(FIELDS, (open_, high, low, close, volume), strict=True)}


def inject(f: dict[str, np.ndarray], j: int, kind: str, k: int, rng: np.random.Generator) -> None:
    days = f["close"].shape[0]
    if kind == "gap" and 0 < k < days - 1:
        for a in f.values():
            a[k, j] = np.nan
    elif kind == "nan_field":
        f[str(rng.choice(["open", "high", "low", "volume"]))][k, j] = np.nan
    elif kind == "inf_field":
        f[str(rng.choice(FIELDS))][k, j] = np.inf
    elif kind == "non_positive":
        f["low"][k, j] = -abs(f["low"][k, j])
    elif kind == "high_below_low":
        f["high"][k, j], f["low"][k, j] = f["low"][k, j], f["high"][k, j]
    elif kind == "open_outside":
        f["open"][k, j] = f["high"][k, j] + 1
    elif kind == "close_outside":
        f["close"][k, j] = f["low"][k, j] - 0.5 if f["low"][k, j] > 1 else f["high"][k, j] + 1
    elif kind == "negative_volume":
        f["volume"][k, j] = -1
    elif kind == "repeated_bar" and k >= 1:
        for name in ("open", "high", "low", "close"):
            f[name][k, j] = f[name][k - 1, j]
    elif kind == "split" and k >= 1:
        for name in ("open", "high", "low", "close"):
            f[name][k:, j] /= 2
    elif kind == "no_bar_today":
        for a in f.values():
            a[-1, j] = np.nan
    elif kind == "all_nan":
        for a in f.values():
            a[:, j] = np.nan
    elif kind == "flat":
        for name in ("open", "high", "low", "close"):
            f[name][:, j] = 20
    elif kind == "late_start":
        for a in f.values():
            a[:k, j] = np.nan
    elif kind == "huge_prices":
        for name in ("open", "high", "low", "close"):
            f[name][:, j] *= 1e30
    elif kind == "zero_volume":
        f["volume"][:, j] = 0


def injected_is_real(kind: str, k: int, days: int) -> bool:
    """Whether ``inject`` actually changed the data into a defect."""
    if kind == "gap":
        return 0 < k < days - 1
    if kind in ("repeated_bar", "split"):
        return k >= 1
    return kind in BAD


def check_invariants(frame: pd.DataFrame, symbols: np.ndarray) -> None:
    assert len(frame) == len(symbols)
    assert sorted(frame.symbol) == sorted(symbols)
    excluded = frame.excluded_reason.notna().to_numpy()
    for r, is_excluded in zip(frame.itertuples(), excluded, strict=True):
        if is_excluded:
            assert isinstance(r.excluded_reason, str) and r.excluded_reason
            assert not r.signal and np.isnan(r.score) and r.zone is None
        else:
            assert r.excluded_reason is None
            assert 0.0 <= r.score <= 1.0, r
            assert r.zone in ZONES
    # ranking (DESIGN §4): included rows first, signals before the rest, then score non-increasing, ties by
    # lower atr_distance
    n_in = int((~excluded).sum())
    assert not excluded[:n_in].any() and excluded[n_in:].all()
    scored = frame.iloc[:n_in]
    flags = scored.signal.to_numpy(dtype=bool)
    assert np.all(np.diff(flags.astype(int)) <= 0)  # no signal row after a non-signal row
    for group in (scored[flags], scored[~flags]):
        s, d = group.score.to_numpy(), group.atr_distance.to_numpy()
        assert np.all(np.diff(s) <= 1e-12)
        ties = np.diff(s) == 0
        assert np.all(np.diff(d)[ties] >= 0)
    sig = frame[frame.signal]
    assert sig.excluded_reason.isna().all()
    assert ((sig.atr_distance >= 0) & (sig.atr_distance <= 4)).all()


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    days=st.integers(0, 40),
    kinds=st.lists(st.sampled_from(BAD + ODD), min_size=1, max_size=5),
    dtype=st.sampled_from([np.float32, np.float64]),
    gate=st.booleans(),
    data=st.data(),
)
def test_broken_panels(seed: int, days: int, kinds: list[str], dtype, gate: bool, data) -> None:
    rng = np.random.default_rng(seed)
    n = len(kinds)
    f = base_panel(rng, days, n, dtype)
    real_defect = np.zeros(n, dtype=bool)
    if days:
        for j, kind in enumerate(kinds):
            k = data.draw(st.integers(0, days - 1), label=f"day of {kind}")
            inject(f, j, kind, k, rng)
            real_defect[j] = injected_is_real(kind, k, days)
    dates = np.busday_offset(np.datetime64("2025-01-02"), np.arange(days), roll="forward")
    symbols = np.array([f"{kind[:4].upper()}{j}" for j, kind in enumerate(kinds)], dtype=object)
    panel = Panel(dates, symbols, *(f[name] for name in FIELDS))

    frame = scan(panel, SMALL, gate=gate)
    check_invariants(frame, symbols)
    signalled = set(frame.symbol[frame.signal])
    if gate:
        bad = {s for s, b in zip(symbols, real_defect, strict=True) if b}
        assert not signalled & bad, (signalled & bad, frame.set_index("symbol").excluded_reason.to_dict())
        reasons = frame.set_index("symbol").excluded_reason
        assert reasons[list(bad)].notna().all()


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    days=st.integers(13, 30),
    n=st.integers(1, 4),
    date_defect=st.sampled_from(["duplicate", "unsorted"]),
)
def test_bad_dates_exclude_everything(seed: int, days: int, n: int, date_defect: str) -> None:
    rng = np.random.default_rng(seed)
    f = base_panel(rng, days, n, np.float64)
    dates = np.busday_offset(np.datetime64("2025-01-02"), np.arange(days), roll="forward")
    i = int(rng.integers(1, days))
    if date_defect == "duplicate":
        dates[i] = dates[i - 1]
    else:
        dates[[i - 1, i]] = dates[[i, i - 1]]
    symbols = np.array([f"S{j}" for j in range(n)], dtype=object)
    frame = scan(Panel(dates, symbols, *(f[name] for name in FIELDS)), SMALL)
    check_invariants(frame, symbols)
    assert frame.excluded_reason.notna().all() and not frame.signal.any()


def garbage(dtype) -> st.SearchStrategy:
    return hnp.arrays(
        dtype=dtype,
        shape=st.tuples(st.integers(0, 25), st.integers(1, 3)),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype == np.float32 else 64),
    )


@PROPERTY_SETTINGS
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), gate=st.booleans())
def test_random_garbage_never_raises(data, dtype, gate: bool) -> None:
    close = data.draw(garbage(dtype), label="close")
    shape = close.shape
    others = {
        name: data.draw(
            hnp.arrays(
                dtype,
                shape,
                elements=st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype == np.float32 else 64),
            ),
            label=name,
        )
        for name in ("open", "high", "low", "volume")
    }
    dates = np.busday_offset(np.datetime64("2025-01-02"), np.arange(shape[0]), roll="forward")
    symbols = np.array([f"G{j}" for j in range(shape[1])], dtype=object)
    panel = Panel(dates, symbols, others["open"], others["high"], others["low"], close, others["volume"])
    for params in (SMALL, None):
        frame = scan(panel, params, gate=gate)
        check_invariants(frame, symbols)
