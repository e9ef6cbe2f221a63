"""The data-quality gate: every defect on small hand-made panels, and the real defects of the sample CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data.panel import Panel
from engine.data.quality import check_panel, panel_reasons

SAMPLE_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "stocks" / "sample_daily_2013_2018.csv"


def panel_from_long(df: pd.DataFrame) -> Panel:
    """Long (date, open, high, low, close, volume, Name) rows -> Panel, missing bars NaN."""
    wide = df.pivot(index="date", columns="Name")
    dates = pd.to_datetime(wide.index).to_numpy().astype("datetime64[D]")
    fields = (
        np.ascontiguousarray(wide[f].to_numpy(dtype=np.float64)) for f in ("open", "high", "low", "close", "volume")
    )
    return Panel(dates, np.asarray(wide["close"].columns, dtype=object), *fields)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    if not SAMPLE_CSV.exists():
        pytest.skip(f"real sample data not found at {SAMPLE_CSV} (../shared/data is absent in this checkout)")
    return pd.read_csv(SAMPLE_CSV)


def clean_panel(days: int = 250, n: int = 3, seed: int = 1) -> Panel:
    """Well-formed random-walk bars: open/close inside [low, high], positive volume."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, n)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (days, n)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.02, (days, n)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.02, (days, n)))
    volume = rng.uniform(1e6, 2e6, (days, n)).round()
    dates = np.busday_offset(np.datetime64("2024-01-02"), np.arange(days), roll="forward")
    symbols = np.array([f"S{i}" for i in range(n)], dtype=object)
    return Panel(dates, symbols, open_, high, low, close, volume)


def with_changes(panel: Panel, **fields: np.ndarray) -> Panel:
    arrays = {f: getattr(panel, f) for f in ("open", "high", "low", "close", "volume")}
    arrays.update(fields)
    return Panel(fields.pop("dates", panel.dates), panel.symbols, **arrays)


def copy_fields(panel: Panel) -> dict[str, np.ndarray]:
    return {f: getattr(panel, f).copy() for f in ("open", "high", "low", "close", "volume")}


def day(panel: Panel, i: int) -> str:
    return str(panel.dates[i])


# ---------------------------------------------------------------------------------------------
# the real sample


def test_real_sample_defects_are_found(sample: pd.DataFrame) -> None:
    # The sample has no NaN, no bad OHLC ordering, no duplicates; its defects are four bars that
    # repeat the previous session's OHLC exactly (volume within 3%): stale copies.
    result = check_panel(panel_from_long(sample))
    assert result.to_dict() == {
        "AAPL": None,
        "AMD": None,  # +52% close-to-close on 2016-04-22 is a real, heavily traded move: not flagged
        "AMZN": None,
        "BA": None,
        "CAT": "repeated_bar on 2014-07-18",
        "JPM": "repeated_bar on 2014-12-01",
        "KO": "repeated_bar on 2014-08-04 (+1 more)",
        "MSFT": None,
        "NFLX": None,
        "NVDA": None,  # +30% on 2016-11-11 (earnings): not split-like
        "XOM": None,
    }
    assert result.index.name == "symbol" and result.name == "excluded_reason"


def test_real_sample_with_lookback_only_sees_recent_defects(sample: pd.DataFrame) -> None:
    result = check_panel(panel_from_long(sample), lookback=250)
    assert result.dropna().to_dict() == {"KO": "repeated_bar on 2017-08-02"}


def test_unadjusted_split_in_real_data_is_flagged(sample: pd.DataFrame) -> None:
    # Undo AAPL's 7:1 split of 2014-06-09: prices before it x7, share volume /7. Open/prev close
    # becomes ~1/7 (-86%) with the same dollar volume: split-like and unexplained.
    df = sample.copy()
    before = (df.Name == "AAPL") & (df.date < "2014-06-09")
    df.loc[before, ["open", "high", "low", "close"]] *= 7
    df.loc[before, "volume"] = df.loc[before, "volume"] / 7
    result = check_panel(panel_from_long(df))
    assert result["AAPL"] == "split_like_jump on 2014-06-09 (open/prev close 0.144)"
    assert result.drop(["AAPL", "CAT", "JPM", "KO"]).isna().all()


def test_split_sized_jump_with_heavy_volume_is_explained(sample: pd.DataFrame) -> None:
    df = sample.copy()
    before = (df.Name == "AAPL") & (df.date < "2014-06-09")
    df.loc[before, ["open", "high", "low", "close"]] *= 7
    df.loc[before, "volume"] = df.loc[before, "volume"] / 7
    df.loc[(df.Name == "AAPL") & (df.date == "2014-06-09"), "volume"] *= 5  # 5x dollar volume: a real event
    assert check_panel(panel_from_long(df))["AAPL"] is None


# ---------------------------------------------------------------------------------------------
# each defect on a small panel


def test_clean_panel_passes() -> None:
    assert check_panel(clean_panel()).isna().all()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("low", 0.0, "non_positive_price"),
        ("close", -1.0, "non_positive_price"),
        ("volume", -5.0, "negative_volume"),
        ("open", np.nan, "nan_field"),
        ("volume", np.nan, "nan_field"),
        ("high", np.inf, "nan_field"),
    ],
)
def test_bad_values(field: str, value: float, expected: str) -> None:
    panel = clean_panel()
    fields = copy_fields(panel)
    fields[field][100, 1] = value
    result = check_panel(with_changes(panel, **fields))
    assert result["S1"].startswith(f"{expected} on {day(panel, 100)}"), result["S1"]
    assert result["S0"] is None and result["S2"] is None


def test_high_below_low_and_out_of_range() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    f["high"][50, 0], f["low"][50, 0] = f["low"][50, 0], f["high"][50, 0]  # swapped
    f["high"][60, 0], f["low"][60, 0] = f["low"][60, 0], f["high"][60, 0]
    f["open"][70, 1] = f["high"][70, 1] * 1.01  # open above the high
    f["close"][80, 2] = f["low"][80, 2] * 0.99  # close below the low
    result = check_panel(with_changes(panel, **f))
    assert result["S0"].startswith(f"high_below_low on {day(panel, 50)} (+1 more)")
    assert result["S1"] == f"open_outside_range on {day(panel, 70)}"
    assert result["S2"] == f"close_outside_range on {day(panel, 80)}"


def test_gap_inside_history() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    for a in f.values():
        a[120:123, 2] = np.nan  # three sessions without a bar
    result = check_panel(with_changes(panel, **f), min_history=200)
    assert result["S2"] == f"gap on {day(panel, 120)} (+2 more)"


def test_partial_bar_with_missing_close() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    f["close"][90, 0] = np.nan  # open/high/low/volume present, close missing
    result = check_panel(with_changes(panel, **f))
    assert f"nan_field on {day(panel, 90)}" in result["S0"]
    assert f"gap on {day(panel, 90)}" in result["S0"]


def test_history_staleness_and_empty_symbols() -> None:
    panel = clean_panel(days=250, n=4)
    f = copy_fields(panel)
    for a in f.values():
        a[:130, 0] = np.nan  # listed late: 120 bars
        a[-6:, 1] = np.nan  # no bar for the last 6 sessions
        a[:, 2] = np.nan  # never traded
        a[-2:, 3] = np.nan  # 2 sessions missing: not stale yet (threshold 5)
    result = check_panel(with_changes(panel, **f), min_history=200, stale_sessions=5)
    assert result["S0"] == "insufficient_history: 120 bars < 200"
    assert result["S1"] == f"stale: no bar in the last 6 sessions (last {day(panel, 243)})"
    assert result["S2"] == "no_bars"
    assert result["S3"] is None


def test_several_reasons_are_joined_in_a_stable_order() -> None:
    panel = clean_panel(days=150)
    f = copy_fields(panel)
    f["low"][10, 0] = -1.0
    result = check_panel(with_changes(panel, **f), min_history=200)
    assert result["S0"] == f"insufficient_history: 150 bars < 200; non_positive_price on {day(panel, 10)}"
    assert result["S1"] == "insufficient_history: 150 bars < 200"


def test_duplicate_and_unsorted_dates_fail_every_symbol() -> None:
    panel = clean_panel()
    dup = panel.dates.copy()
    dup[10] = dup[9]
    result = check_panel(Panel(dup, panel.symbols, *copy_fields(panel).values()))
    assert set(result) == {f"duplicate_date {dup[10]}"}
    swapped = panel.dates.copy()
    swapped[[20, 21]] = swapped[[21, 20]]
    result = check_panel(Panel(swapped, panel.symbols, *copy_fields(panel).values()))
    assert set(result) == {f"unsorted_dates at {swapped[21]}"}


def test_repeated_bar_rule() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    for name in ("open", "high", "low", "close"):
        f[name][200, 0] = f[name][199, 0]  # a copy of the previous bar (ranges here are ~$1)
    # S1: a $3 stock whose bar spans 3 cents repeats: plausible at a one-cent tick, not flagged
    scale = 3.0 / f["close"][150, 1]
    for name in ("open", "high", "low", "close"):
        f[name][:, 1] *= scale
    for name, value in (("open", 3.00), ("high", 3.02), ("low", 2.99), ("close", 3.01)):
        f[name][150:152, 1] = value
    result = check_panel(with_changes(panel, **f))
    assert result["S0"] == f"repeated_bar on {day(panel, 200)}"
    assert result["S1"] is None


def test_split_like_jump_rule() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    for name in ("open", "high", "low", "close"):
        f[name][180:, 0] /= 2  # a 2:1 split left unadjusted, normal share volume
    f["volume"][180:, 0] *= 2  # shares double: dollar volume unchanged, nothing explains the jump
    for name in ("open", "high", "low", "close"):
        f[name][180:, 1] *= 1.6  # +60%: big but no split factor near it
    result = check_panel(with_changes(panel, **f))
    assert result["S0"].startswith(f"split_like_jump on {day(panel, 180)} (open/prev close 0.5")
    assert result["S1"] is None


def test_lookback_limits_bar_checks_but_not_history() -> None:
    panel = clean_panel()
    f = copy_fields(panel)
    f["low"][10, 0] = -1.0  # old defect
    f["low"][240, 1] = -1.0  # recent defect
    result = check_panel(with_changes(panel, **f), lookback=100)
    assert result["S0"] is None
    assert result["S1"] == f"non_positive_price on {day(panel, 240)}"
    short = check_panel(with_changes(panel, **f), lookback=100, min_history=300)
    assert short["S0"] == "insufficient_history: 250 bars < 300"


def test_degenerate_panels() -> None:
    empty_days = Panel(np.array([], dtype="datetime64[D]"), np.array(["A"], dtype=object), *(np.empty((0, 1)),) * 5)
    assert check_panel(empty_days).to_dict() == {"A": "no_bars"}
    no_symbols = Panel(clean_panel().dates, np.array([], dtype=object), *(np.empty((250, 0)),) * 5)
    assert len(check_panel(no_symbols)) == 0
    one_day = clean_panel(days=1)
    assert set(check_panel(one_day, min_history=1)) == {None}
    with pytest.raises(ValueError):
        check_panel(clean_panel(), stale_sessions=0)


def test_float32_panel_and_array_form() -> None:
    panel = clean_panel().astype(np.float32)
    f = copy_fields(panel)
    f["high"][30, 2] = f["low"][30, 2] * np.float32(0.5)
    reasons = panel_reasons(with_changes(panel, **f))
    assert reasons.dtype == object and list(reasons[:2]) == [None, None]
    assert reasons[2].startswith(f"high_below_low on {day(panel, 30)}")


def test_gate_runs_on_a_float32_universe_sized_panel() -> None:
    """5,000 symbols x 300 days of float32 pass through the gate (its speed is part of `bench scan`)."""
    panel = clean_panel(days=300, n=5000, seed=3).astype(np.float32)
    reasons = check_panel(panel)
    assert len(reasons) == 5000 and reasons.isna().all()  # a clean panel passes in float32 too
