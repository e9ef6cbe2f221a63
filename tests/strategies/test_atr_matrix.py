"""ATR Matrix rules on hand-computed panels; levels, exits, ranking; real data against TA-Lib.

The hand panels use short periods so every number can be worked out on paper; the expected
values in the comments are that arithmetic, not copies of program output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from pydantic import ValidationError

from engine.data.panel import FIELDS, Panel
from engine.strategies import Strategy, available, get, register
from engine.strategies.atr_matrix import (
    ATR_MATRIX,
    SCAN_COLUMNS,
    ATRMatrixParams,
    exit_reasons,
    initial_stop,
    levels,
    scan,
    score_values,
    target_levels,
    targets_reached,
    trailing_stop,
    zone_of,
)

SAMPLE_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stocks" / "sample_daily_2013_2018.csv"

# Short periods: ATR 2, EMA 3, SMAs 5 / 13 / 15 / 17 in the roles of 20 / 50 / 100 / 200, 4-day
# range, 2-day dollar volume, 17 bars of history needed. Gate over the whole panel.
HAND = ATRMatrixParams(
    atr_period=2,
    ema_period=3,
    sma_fast=5,
    sma_trend=13,
    sma_mid=15,
    sma_slow=17,
    range_period=4,
    volume_period=2,
    min_history=17,
    gate_lookback=None,
)
DAYS = 20
DATES = np.busday_offset(np.datetime64("2024-01-02"), np.arange(DAYS), roll="forward")


def bars(close, half_range: float, open_offset: float = 0.0, volume: float = 2e6) -> dict[str, np.ndarray]:
    c = np.array(close, dtype=np.float64)  # a copy: callers edit the arrays
    return {
        "open": c + open_offset,
        "high": c + half_range,
        "low": c - half_range,
        "close": c,
        "volume": np.full(len(c), volume),
    }


def make_panel(columns: dict[str, dict[str, np.ndarray]]) -> Panel:
    symbols = np.array(list(columns), dtype=object)
    fields = [np.column_stack([columns[s][f] for s in symbols]) for f in ("open", "high", "low", "close", "volume")]
    return Panel(DATES, symbols, *fields)


TREND = 10.0 + np.arange(DAYS)  # closes 10, 11, ..., 29


def four() -> dict[str, np.ndarray]:
    # Closes 10..29, high/low = close -/+ 0.5, open = close - 0.25.
    # TR = max(1, |c+0.5 - (c-1)| = 1.5, |c-0.5 - (c-1)| = 0.5) = 1.5 every day -> ATR = 1.5.
    # SMA13 of the last 13 closes 17..29 = 23 -> atr_distance = (29 - 23) / 1.5 = 4 (entry edge).
    return bars(TREND, 0.5, -0.25)


def three() -> dict[str, np.ndarray]:
    # Same closes, high/low = close -/+ 1: TR = max(2, |c+1-(c-1)| = 2, 0) = 2 -> ATR 2;
    # atr_distance = 6 / 2 = 3.
    return bars(TREND, 1.0)


def zero(last: float = 22.5) -> dict[str, np.ndarray]:
    # Closes 10..28, then a drop to ``last``. With last = 22.5: TR = max(1, |23-28|, |22-28|) = 6,
    # ATR = (1.5 + 6) / 2 = 3.75; SMA13 = (17+...+28 + 22.5) / 13 = (270 + 22.5) / 13 = 22.5
    # -> atr_distance = 0 (entry edge).
    c = TREND.copy()
    c[-1] = last
    return bars(c, 0.5)


def gone() -> dict[str, np.ndarray]:
    b = bars(TREND, 0.5)
    for a in b.values():
        a[-1] = np.nan  # no bar on the last day
    return b


def short() -> dict[str, np.ndarray]:
    b = bars(TREND, 0.5)
    for a in b.values():
        a[:10] = np.nan  # listed 10 sessions ago
    return b


def row(frame: pd.DataFrame, symbol: str) -> pd.Series:
    return frame.set_index("symbol").loc[symbol]


# ---------------------------------------------------------------------------------------------
# hand-computed scans


def test_entry_zone_upper_edge_four_atrs_signals() -> None:
    r = row(scan(make_panel({"FOUR": four()}), HAND), "FOUR")
    assert r.excluded_reason is None
    assert r.close == 29 and r.atr == 1.5 and r.sma50 == 23
    assert r.atr_distance == 4.0 and r.zone == "entry"
    assert r.sma20 == 27  # mean(25..29)
    assert r.sma100 == 22 and r.sma200 == 21  # mean(15..29), mean(13..29)
    # EMA3 (k = 0.5) seeded with mean(10,11,12) = 11 = close - 1, stays one below: 28
    assert r.ema10 == 28 and bool(r.ma_aligned)  # 28 >= 27 >= 23 >= 22 >= 21
    # 4-day range: highest high 29.5, lowest low 25.5 -> 100 * (29 - 25.5) / 4 = 87.5
    assert r.range_pos_20 == 87.5
    assert r.atr_pct == pytest.approx(100 * 1.5 / 29)  # 5.17
    assert r.dollar_volume_20 == (28 + 29) / 2 * 2e6  # 57M
    # score: 0.5 + 0.40 entry + 0.25 aligned + 0.15 (range > 70) + 0.10 (3 <= 5.17 <= 6) = 1.4 -> 1
    assert r.score == 1.0
    assert bool(r.signal)
    # stop: max(29 - 1.5 * 1.5, 0.9 * 29) = max(26.75, 26.1) = 26.75
    assert r.stop == 26.75
    # targets: SMA50 23 + 7, 8, 9, 10 x 1.5
    assert [r.target_1, r.target_2, r.target_3, r.target_4] == [33.5, 35.0, 36.5, 38.0]


def test_entry_zone_lower_edge_zero_and_just_below() -> None:
    frame = scan(make_panel({"ZERO": zero(22.5), "BELOW": zero(22.4)}), HAND)
    z = row(frame, "ZERO")
    assert z.atr == 3.75 and z.sma50 == 22.5 and z.atr_distance == 0.0
    assert z.zone == "entry"
    # SMA5 = (25+26+27+28+22.5)/5 = 25.7; EMA3 = 27*0.5 + 22.5*0.5 = 24.75 < 25.7: not aligned
    assert z.ema10 == 24.75 and z.sma20 == pytest.approx(25.7) and not z.ma_aligned
    # range: high 28.5, low 22 -> 100 * 0.5 / 6.5 = 7.69; atr_pct = 375 / 22.5 = 16.7 (> 6)
    assert z.range_pos_20 == pytest.approx(100 / 13)
    # score: 0.5 + 0.40 entry - 0.05 (atr_pct > 6) = 0.85
    assert z.score == pytest.approx(0.85)
    assert not z.signal  # close 22.5 <= SMA5 25.7, not aligned, range < 50
    # stop: E - 1.5A = 22.5 - 5.625 = 16.875 is more than 10% below: floor 0.9 * 22.5 = 20.25
    assert z.stop == pytest.approx(20.25)
    assert z.target_1 == pytest.approx(22.5 + 7 * 3.75)  # 48.75

    b = row(frame, "BELOW")
    # close 22.4: TR = max(1, 28 - 22.9, 28 - 21.9) = 6.1, ATR = (1.5 + 6.1)/2 = 3.8,
    # SMA13 = 292.4 / 13 = 22.4923 -> distance (22.4 - 22.4923) / 3.8 = -0.0243
    assert b.atr == pytest.approx(3.8) and b.atr_distance == pytest.approx(-0.0923077 / 3.8, rel=1e-5)
    assert b.zone == "below_trend"
    # score: 0.5 - 0.40 below trend - 0.05 (atr_pct 16.96) = 0.05
    assert b.score == pytest.approx(0.05)


def test_extended_just_above_four() -> None:
    # SMA14 of 16..29 = 22.5 -> distance (29 - 22.5) / 1.5 = 4.33: extended, no entry signal.
    params = HAND.model_copy(update={"sma_trend": 14})
    r = row(scan(make_panel({"FOUR": four()}), params), "FOUR")
    assert r.sma50 == 22.5 and r.atr_distance == pytest.approx(13 / 3)
    assert r.zone == "extended" and not r.signal


def test_ten_percent_stop_floor_and_targets() -> None:
    r = row(scan(make_panel({"THREE": three()}), HAND), "THREE")
    assert r.atr == 2 and r.atr_distance == 3
    # E - 1.5A = 29 - 3 = 26 is 10.3% below 29: the floor 0.9 * 29 = 26.1 applies
    assert r.stop == pytest.approx(26.1)
    # SMA50 23 + 7..10 x 2 = 37, 39, 41, 43
    assert [r.target_1, r.target_2, r.target_3, r.target_4] == [37.0, 39.0, 41.0, 43.0]


def test_liquidity_filters() -> None:
    thin = four()
    thin["volume"][:] = 6e5  # dollar volume (28 + 29)/2 * 0.6M = 17.1M < 20M
    cheap = {k: v / 4 if k != "volume" else v * 4 for k, v in four().items()}  # close 7.25 < $10
    frame = scan(make_panel({"THIN": thin, "CHEAP": cheap}), HAND)
    t, c = row(frame, "THIN"), row(frame, "CHEAP")
    assert t.dollar_volume_20 == pytest.approx(17.1e6) and t.zone == "entry" and not t.signal
    assert t.score == 1.0  # liquidity does not enter the score
    # prices / 4 keep every ratio: distance (7.25 - 5.75) / 0.375 = 4, dollar volume still 57M
    assert c.close == 7.25 and c.atr_distance == 4.0 and c.dollar_volume_20 == pytest.approx(57e6)
    assert not c.signal


def test_thresholds_are_parameters() -> None:
    panel = make_panel({"FOUR": four(), "THREE": three()})
    # atr_pct: FOUR 5.17, THREE 6.90; range_pos: FOUR 87.5, THREE 80
    assert set(scan(panel, HAND).query("signal").symbol) == {"FOUR", "THREE"}
    pct = HAND.model_copy(update={"min_atr_pct": 5.5})
    assert set(scan(panel, pct).query("signal").symbol) == {"THREE"}
    rng = HAND.model_copy(update={"min_range_pos": 85})
    assert set(scan(panel, rng).query("signal").symbol) == {"FOUR"}
    narrow = HAND.model_copy(update={"entry_max_distance": 3.5})
    assert set(scan(panel, narrow).query("signal").symbol) == {"THREE"}
    assert row(scan(panel, narrow), "FOUR").zone == "extended"


def test_alignment_false_in_a_downtrend() -> None:
    r = row(scan(make_panel({"DOWN": bars(40.0 - np.arange(DAYS), 0.5)}), HAND), "DOWN")
    # closes 40..21: EMA3 = 22 < SMA5 = 23: not aligned; SMA13 = 27 -> below trend
    assert not r.ma_aligned and r.zone == "below_trend" and not r.signal


def test_ranking_and_exclusions() -> None:
    panel = make_panel(
        {"ZERO": zero(22.5), "SHORT": short(), "FOUR": four(), "BELOW": zero(22.4), "GONE": gone(), "THREE": three()}
    )
    frame = scan(panel, HAND)
    # THREE and FOUR tie at score 1.0: the lower distance (3 < 4) ranks first; then ZERO 0.85,
    # BELOW 0.05; excluded rows last in panel order.
    assert list(frame.symbol) == ["THREE", "FOUR", "ZERO", "BELOW", "SHORT", "GONE"]
    reasons = frame.set_index("symbol").excluded_reason
    assert reasons["SHORT"] == "insufficient_history: 10 bars < 17"
    assert reasons["GONE"] == f"no_bar_on_last_day {DATES[-1]}"
    assert reasons[["THREE", "FOUR", "ZERO", "BELOW"]].isna().all()
    excluded = frame[frame.excluded_reason.notna()]
    assert not excluded.signal.any() and excluded.score.isna().all() and excluded.zone.isna().all()
    assert excluded.stop.isna().all()
    assert list(frame.columns) == list(SCAN_COLUMNS)
    assert (frame.date == pd.Timestamp(DATES[-1])).all()
    assert frame.signal.dtype == bool and frame.ma_aligned.dtype == bool


def test_gate_off_still_excludes_what_cannot_be_computed() -> None:
    frame = scan(make_panel({"SHORT": short(), "GONE": gone()}), HAND, gate=False)
    reasons = frame.set_index("symbol").excluded_reason
    # 10 bars: SMA5 and ATR exist, SMA13/15/17 (the 50/100/200 roles) do not
    assert reasons["SHORT"] == "indicator_unavailable: sma50, sma100, sma200"
    assert reasons["GONE"] == f"no_bar_on_last_day {DATES[-1]}"


def test_bad_bar_is_never_signalled() -> None:
    broken = four()
    broken["low"][12] = broken["high"][12] + 1  # high below low, 8 sessions ago
    frame = scan(make_panel({"FOUR": four(), "BROKEN": broken}), HAND)
    b = row(frame, "BROKEN")
    # the low above the high also leaves open and close outside [low, high]
    day = DATES[12]
    assert b.excluded_reason == (f"high_below_low on {day}; open_outside_range on {day}; close_outside_range on {day}")
    assert not b.signal
    assert bool(row(frame, "FOUR").signal)


def test_degenerate_panels_do_not_raise() -> None:
    empty = Panel(np.array([], dtype="datetime64[D]"), np.array(["A", "B"], dtype=object), *(np.empty((0, 2)),) * 5)
    frame = scan(empty)
    assert list(frame.symbol) == ["A", "B"] and (frame.excluded_reason == "no_bars").all()
    none = Panel(DATES, np.array([], dtype=object), *(np.empty((DAYS, 0)),) * 5)
    assert len(scan(none)) == 0 and "excluded_reason" in scan(none).columns


# ---------------------------------------------------------------------------------------------
# rule helpers


def test_zone_boundaries() -> None:
    d = [-0.01, 0.0, 4.0, 4.0001, 7.0, 7.0001, 10.0, 10.0001, np.nan]
    expected = ["below_trend", "entry", "entry", "extended", "extended", "scale_out", "scale_out", "exhausted", None]
    assert list(zone_of(d)) == expected


def test_score_rules() -> None:
    # scale_out, aligned, range 60 (> 50), atr_pct 7 (> 6): 0.5 - 0.2 + 0.25 + 0.10 - 0.05 = 0.60
    assert score_values(8, True, 60, 7) == pytest.approx(0.60)
    # exhausted, range 71, atr_pct 3 (band inclusive): 0.5 - 0.2 + 0.15 + 0.10 = 0.55
    assert score_values(11, False, 71, 3) == pytest.approx(0.55)
    # below trend, range 10, atr_pct 2: 0.5 - 0.4 = 0.10
    assert score_values(-1, False, 10, 2) == pytest.approx(0.10)
    # extended, aligned, range exactly 50 (no points), atr_pct exactly 6: 0.5+0.2+0.25+0.10 = 1.05 -> 1
    assert score_values(5, True, 50, 6) == 1.0
    # range exactly 70 earns the +0.10 step only: 0.5 + 0.4 + 0.10 = 1.0; NaN range earns nothing
    assert score_values(1, False, 70, 1) == pytest.approx(1.0)
    assert score_values(1, False, np.nan, 1) == pytest.approx(0.9)
    harsh = ATRMatrixParams(score_below_trend=-0.9)
    assert score_values(-1, False, 0, 0, harsh) == 0.0  # 0.5 - 0.9 clamps to 0
    assert np.isnan(score_values(np.nan, True, 80, 4))


def test_levels_helpers() -> None:
    assert initial_stop(100, 4) == 94  # 100 - 6 = 94 is within 10%
    assert initial_stop(100, 8) == 90  # 100 - 12 = 88 would be 12% below: floor at 90
    np.testing.assert_array_equal(target_levels(50, 2), [64, 66, 68, 70])
    lv = levels(100, 4, 90)
    assert lv.stop == 94 and lv.targets == (118, 122, 126, 130)
    assert targets_reached(121.9, lv.targets) == 1 and targets_reached(122, lv.targets) == 2
    assert targets_reached(117, lv.targets) == 0


def test_trailing_stop_sequence() -> None:
    # Entered at 29 with ATR 1.5: initial stop 26.75 until the first target
    assert trailing_stop(29, 1.5, highest_close=33, targets_hit=0) == 26.75
    # first target hit, highest close 30: max(break-even 29, 30 - 3*1.5 = 25.5) = 29
    assert trailing_stop(29, 1.5, highest_close=30, targets_hit=1) == 29
    # highest close 40: 40 - 4.5 = 35.5
    assert trailing_stop(29, 1.5, highest_close=40, targets_hit=2) == 35.5
    # a stop never moves down
    assert trailing_stop(29, 1.5, highest_close=40, targets_hit=2, previous_stop=36) == 36
    out = trailing_stop(np.array([29, 29]), 1.5, np.array([30, 40]), np.array([0, 1]))
    np.testing.assert_array_equal(out, [26.75, 35.5])


def test_exit_rules() -> None:
    assert exit_reasons(22.4, 22.49, 3.8) == ["trend_break: close 22.4 < sma50 22.49"]
    # (60 - 20) / 3 = 13.3 ATRs above the mean: exhausted
    assert exit_reasons(60, 20, 3) == ["exhausted: atr_distance 13.33 > 10"]
    assert exit_reasons(50, 20, 3) == []  # exactly 10 ATRs: not yet exhausted
    assert exit_reasons(50, 45, 3, stop=47, low=46.5) == ["stop_hit: low 46.5 <= stop 47"]
    assert exit_reasons(50, 45, 3, stop=47) == []


# ---------------------------------------------------------------------------------------------
# parameters and registry


def test_params_defaults_and_validation() -> None:
    p = ATRMatrixParams()
    assert (p.entry_min_distance, p.entry_max_distance, p.min_atr_pct, p.min_range_pos) == (0, 4, 3.0, 50)
    assert (p.min_close, p.min_dollar_volume, p.min_history) == (10, 20e6, 200)
    assert p.target_atr_multiples == (7, 8, 9, 10) and p.stop_atr_multiple == 1.5 and p.max_stop_fraction == 0.1
    with pytest.raises(ValidationError):
        p.min_close = 5  # frozen
    with pytest.raises(ValidationError):
        ATRMatrixParams(entry_max_distance=8)  # above extended_max 7
    with pytest.raises(ValidationError):
        ATRMatrixParams(target_atr_multiples=(8, 7))
    with pytest.raises(ValidationError):
        ATRMatrixParams(atr_period=0)
    with pytest.raises(ValidationError):
        ATRMatrixParams(min_atr_pc=3)  # typo: unknown field
    with pytest.raises(ValidationError):
        ATRMatrixParams(max_stop_fraction=1.5)
    assert scan(make_panel({"FOUR": four()}), HAND.model_dump()).signal.all()  # a dict works too


def test_registry() -> None:
    assert "atr_matrix" in available()
    strategy = get("atr_matrix")
    assert strategy is ATR_MATRIX and isinstance(strategy, Strategy)
    assert strategy.params_model is ATRMatrixParams
    assert register(ATR_MATRIX) is ATR_MATRIX  # idempotent
    with pytest.raises(KeyError, match="available"):
        get("nope")

    class Impostor:
        name = "atr_matrix"
        params_model = ATRMatrixParams

        def scan(self, panel, params=None):
            return pd.DataFrame()

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor())
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]
    frame = strategy.scan(make_panel({"FOUR": four()}), HAND)
    assert bool(frame.signal.iloc[0])


# ---------------------------------------------------------------------------------------------
# real data


@pytest.fixture(scope="module")
def real_panel() -> Panel:
    if not SAMPLE_CSV.exists():
        pytest.skip(f"real sample data not found at {SAMPLE_CSV} (../shared/data is absent in this checkout)")
    wide = pd.read_csv(SAMPLE_CSV).pivot(index="date", columns="Name")
    dates = pd.to_datetime(wide.index).to_numpy().astype("datetime64[D]")
    fields = (
        np.ascontiguousarray(wide[f].to_numpy(dtype=np.float64)) for f in ("open", "high", "low", "close", "volume")
    )
    return Panel(dates, np.asarray(wide["close"].columns, dtype=object), *fields)


@pytest.mark.parametrize("as_of", ["2015-06-01", "2016-11-15", "2018-02-07"])
def test_real_scan_values_match_talib_and_rules(real_panel: Panel, as_of: str) -> None:
    panel = real_panel.until(as_of)
    frame = scan(panel)
    p = ATRMatrixParams()
    for r in frame.itertuples():
        j = list(panel.symbols).index(r.symbol)
        h, lo, c, v = (getattr(panel, f)[:, j].copy() for f in ("high", "low", "close", "volume"))
        assert r.close == c[-1]
        assert r.atr == pytest.approx(talib.ATR(h, lo, c, 14)[-1], rel=1e-9)
        for name, period in (("sma20", 20), ("sma50", 50), ("sma100", 100), ("sma200", 200)):
            assert getattr(r, name) == pytest.approx(talib.SMA(c, period)[-1], rel=1e-9)
        assert r.ema10 == pytest.approx(talib.EMA(c, 10)[-1], rel=1e-9)
        hh, ll = talib.MAX(h, 20)[-1], talib.MIN(lo, 20)[-1]
        assert r.range_pos_20 == pytest.approx(100 * (c[-1] - ll) / (hh - ll), rel=1e-9)
        assert r.dollar_volume_20 == pytest.approx(np.mean(c[-20:] * v[-20:]), rel=1e-9)
        if r.excluded_reason is not None:
            assert not r.signal
            continue
        d = (r.close - r.sma50) / r.atr
        aligned = r.ema10 >= r.sma20 >= r.sma50 >= r.sma100 >= r.sma200
        expected_signal = (
            0 <= d <= 4
            and r.close > r.sma20
            and aligned
            and r.atr_pct >= 3
            and r.range_pos_20 >= 50
            and r.close >= 10
            and r.dollar_volume_20 >= 20e6
        )
        assert bool(r.signal) == expected_signal, r.symbol
        assert r.stop == pytest.approx(max(r.close - 1.5 * r.atr, 0.9 * r.close))
        assert r.target_4 == pytest.approx(r.sma50 + 10 * r.atr)
        assert 0 <= r.score <= 1 and r.zone == zone_of(d, p)


def test_float32_and_float64_scans_agree_on_real_data(real_panel: Panel) -> None:
    """Same signals, zones and exclusions on every 3rd trading day of 2014-2018 (~350 scans per
    dtype), each scan over the 300 sessions up to that day, as the daily universe scan runs."""
    p32 = real_panel.astype(np.float32)
    signals = 0
    zones: set[str] = set()
    for i in range(299, real_panel.n_days, 3):
        rows = slice(i - 299, i + 1)
        a = scan(Panel(real_panel.dates[rows], real_panel.symbols, *(getattr(real_panel, f)[rows] for f in FIELDS)))
        b = scan(Panel(p32.dates[rows], p32.symbols, *(getattr(p32, f)[rows] for f in FIELDS)))
        a, b = a.sort_values("symbol"), b.sort_values("symbol")
        date = real_panel.dates[i]
        np.testing.assert_array_equal(a.signal.to_numpy(), b.signal.to_numpy(), err_msg=f"signals {date}")
        np.testing.assert_array_equal(a.zone.to_numpy(), b.zone.to_numpy(), err_msg=f"zones {date}")
        assert list(a.excluded_reason) == list(b.excluded_reason), date
        np.testing.assert_allclose(b.atr_distance, a.atr_distance, rtol=1e-4, atol=1e-4)
        signals += int(a.signal.sum())
        zones.update(a.zone.dropna())
    assert signals > 10 and zones == {"below_trend", "entry", "extended", "scale_out", "exhausted"}
