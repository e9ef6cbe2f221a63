"""ATR Matrix strategy (DESIGN §4): where does price stand, in ATRs, above its 50-day mean?

``scan(panel)`` returns one row per symbol for the panel's last day with every value that went
into the decision, the zone, the score, the entry signal and the long setup's levels.

Conventions decided here (DESIGN leaves them open):

* Zones of atr_distance d, inclusive as follows: ``below_trend`` d < 0; ``entry`` 0 <= d <= 4
  (both ends inclusive, matching the entry rule "0 <= atr_distance <= 4"); ``extended``
  4 < d <= 7; ``scale_out`` 7 < d <= 10; ``exhausted`` d > 10 (the exhaustion exit is also
  "atr_distance > 10"). The boundaries are the parameters ``entry_min_distance``,
  ``entry_max_distance``, ``extended_max_distance`` and ``scale_out_max_distance``.
* Score "-0.20 above 7" applies to both scale_out and exhausted.
* range_pos_20 is NaN when the 20-day high equals the 20-day low (no range to place price in):
  such a symbol gets no range points and no signal.
* The scan runs in the panel's dtype (float32 for a fast full-universe scan), but every
  accumulation is float64 and the last-day indicators are taken unrounded in float64, so a
  float32 scan differs from a float64 one only by the rounding of the input prices (a test on
  the real sample data shows identical signals and zones).
* Excluded symbols (failed gate, no bar on the last day, an indicator unavailable) keep the
  indicator values that could be computed, but get zone None, score NaN, signal False and no
  levels. ``excluded_reason`` says why; several reasons are joined with "; ".
* The data-quality gate checks bar-level defects over the last ``gate_lookback`` sessions
  (default 250: the SMA200 window plus margin); a defect older than that no longer excludes.
  (An old gap still leaves ATR/EMA undefined, as in TA-Lib: such a symbol is excluded as
  ``indicator_unavailable``.)
* Indicator periods are parameters too, but output columns keep the DESIGN names (sma20 is
  "the fast SMA", whatever ``sma_fast`` says).
* Levels: stop = max(E - 1.5A, 0.9E) (a stop never more than 10% below entry);
  targets = SMA50 + 7A, 8A, 9A, 10A; after the first target the stop goes to break-even, then
  trails 3A below the highest close since entry, A being the ATR the levels were set with (the
  entry ATR); a stop never moves down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import indicators as ind
from engine.data.panel import Panel
from engine.data.quality import panel_reasons
from engine.strategies import register

__all__ = [
    "ATR_MATRIX",
    "SCAN_COLUMNS",
    "ZONES",
    "ATRMatrix",
    "ATRMatrixParams",
    "Levels",
    "entry_rule",
    "exit_reasons",
    "initial_stop",
    "levels",
    "scan",
    "score_values",
    "target_levels",
    "targets_reached",
    "trailing_stop",
    "zone_of",
]

ZONES = ("below_trend", "entry", "extended", "scale_out", "exhausted")


class ATRMatrixParams(BaseModel):
    """Every rule's number, with DESIGN §4's defaults. Frozen; unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # indicator periods
    atr_period: int = Field(14, ge=1)
    ema_period: int = Field(10, ge=1)
    sma_fast: int = Field(20, ge=1)
    sma_trend: int = Field(50, ge=1)
    sma_mid: int = Field(100, ge=1)
    sma_slow: int = Field(200, ge=1)
    range_period: int = Field(20, ge=1)
    volume_period: int = Field(20, ge=1)

    # zones of atr_distance (see module docstring for inclusivity)
    entry_min_distance: float = 0.0
    entry_max_distance: float = 4.0
    extended_max_distance: float = 7.0
    scale_out_max_distance: float = 10.0

    # entry filters
    require_close_above_sma_fast: bool = True
    require_ma_aligned: bool = True
    min_atr_pct: float = Field(3.0, ge=0)
    min_range_pos: float = Field(50.0, ge=0, le=100)
    min_close: float = Field(10.0, ge=0)
    min_dollar_volume: float = Field(20_000_000.0, ge=0)

    # data-quality gate
    min_history: int = Field(200, ge=0)
    stale_sessions: int = Field(5, ge=1)
    jump_threshold: float = Field(0.4, gt=0)
    gate_lookback: int | None = Field(250, ge=1)

    # levels
    stop_atr_multiple: float = Field(1.5, gt=0)
    max_stop_fraction: float = Field(0.10, gt=0, lt=1)
    target_atr_multiples: tuple[float, ...] = (7.0, 8.0, 9.0, 10.0)
    trail_atr_multiple: float = Field(3.0, gt=0)

    # score
    score_base: float = 0.5
    score_entry_zone: float = 0.40
    score_extended_zone: float = 0.20
    score_above_extended: float = -0.20
    score_below_trend: float = -0.40
    score_aligned: float = 0.25
    range_strong_level: float = 70.0
    score_range_strong: float = 0.15
    range_ok_level: float = 50.0
    score_range_ok: float = 0.10
    atr_pct_band_low: float = 3.0
    atr_pct_band_high: float = 6.0
    score_atr_pct_band: float = 0.10
    score_atr_pct_high: float = -0.05

    @model_validator(mode="after")
    def _consistent(self) -> ATRMatrixParams:
        if not (
            self.entry_min_distance
            <= self.entry_max_distance
            <= self.extended_max_distance
            <= self.scale_out_max_distance
        ):
            raise ValueError("zones need entry_min <= entry_max <= extended_max <= scale_out_max distance")
        t = self.target_atr_multiples
        if not t or any(x <= 0 for x in t) or any(b <= a for a, b in pairwise(t)):
            raise ValueError("target_atr_multiples must be positive and strictly ascending")
        if self.range_ok_level > self.range_strong_level:
            raise ValueError("range_ok_level must be <= range_strong_level")
        if self.atr_pct_band_low > self.atr_pct_band_high:
            raise ValueError("atr_pct_band_low must be <= atr_pct_band_high")
        values = [getattr(self, name) for name in type(self).model_fields]
        if any(isinstance(v, float) and not np.isfinite(v) for v in values):
            raise ValueError("parameters must be finite")
        return self


DEFAULT_PARAMS = ATRMatrixParams()

_LEVEL_COLUMNS = tuple(f"target_{i + 1}" for i in range(len(DEFAULT_PARAMS.target_atr_multiples)))
SCAN_COLUMNS = (
    "symbol", "date", "close", "atr", "sma20", "sma50", "sma100", "sma200", "ema10",
    "atr_distance", "atr_pct", "ma_aligned", "range_pos_20", "dollar_volume_20", "zone", "score",
    "signal", "stop", *_LEVEL_COLUMNS, "excluded_reason",
)  # fmt: skip


def _params(params: ATRMatrixParams | dict | None) -> ATRMatrixParams:
    if params is None:
        return DEFAULT_PARAMS
    if isinstance(params, ATRMatrixParams):
        return params
    if isinstance(params, dict):
        return ATRMatrixParams(**params)
    raise TypeError(f"params must be ATRMatrixParams, a dict or None, not {type(params).__name__}")


# --------------------------------------------------------------------------------------------
# rules on values (vectorised; scalars work too)


def _zone_codes(d: np.ndarray, p: ATRMatrixParams) -> np.ndarray:
    """0..4 = index into ZONES (boundaries as documented), 5 where d is NaN."""
    with np.errstate(invalid="ignore"):
        code = np.asarray(d >= p.entry_min_distance, dtype=np.int8)
        code += d > p.entry_max_distance
        code += d > p.extended_max_distance
        code += d > p.scale_out_max_distance
    return np.where(np.isnan(d), np.int8(len(ZONES)), code)


_ZONE_LOOKUP = np.array([*ZONES, None], dtype=object)


def zone_of(atr_distance: Any, params: ATRMatrixParams | None = None) -> Any:
    """Zone name per value (object array; None where atr_distance is NaN); a scalar gives a str."""
    p = _params(params)
    zones = _ZONE_LOOKUP[_zone_codes(np.asarray(atr_distance, dtype=np.float64), p)]
    return zones if np.ndim(zones) else zones.item() if isinstance(zones, np.ndarray) else zones


def score_values(
    atr_distance: Any, ma_aligned: Any, range_pos: Any, atr_pct: Any, params: ATRMatrixParams | None = None
) -> Any:
    """DESIGN's score, clamped to [0, 1]; NaN where atr_distance is NaN. A NaN range_pos or
    atr_pct earns no points for that rule."""
    p = _params(params)
    d = np.asarray(atr_distance, dtype=np.float64)
    rp = np.asarray(range_pos, dtype=np.float64)
    ap = np.asarray(atr_pct, dtype=np.float64)
    aligned = np.asarray(ma_aligned, dtype=bool)
    # Points per zone code: below_trend, entry, extended, scale_out, exhausted ("above 7"), NaN.
    zone_table = np.array(
        [
            p.score_below_trend,
            p.score_entry_zone,
            p.score_extended_zone,
            p.score_above_extended,
            p.score_above_extended,
            np.nan,
        ]
    )
    with np.errstate(invalid="ignore"):
        zone_points = zone_table[_zone_codes(d, p)]
        range_points = np.where(
            rp > p.range_strong_level, p.score_range_strong, np.where(rp > p.range_ok_level, p.score_range_ok, 0.0)
        )
        atr_points = np.where(
            (ap >= p.atr_pct_band_low) & (ap <= p.atr_pct_band_high),
            p.score_atr_pct_band,
            np.where(ap > p.atr_pct_band_high, p.score_atr_pct_high, 0.0),
        )
        raw = p.score_base + zone_points + np.where(aligned, p.score_aligned, 0.0) + range_points + atr_points
    score = np.clip(raw, 0.0, 1.0)
    return score if score.ndim else float(score)


def initial_stop(entry: Any, atr: Any, params: ATRMatrixParams | None = None) -> Any:
    """E - 1.5A, but never more than 10% below E: max(E - 1.5A, 0.9E)."""
    p = _params(params)
    e = np.asarray(entry, dtype=np.float64)
    out = np.maximum(e - p.stop_atr_multiple * np.asarray(atr, dtype=np.float64), (1.0 - p.max_stop_fraction) * e)
    return out if out.ndim else float(out)


def target_levels(sma50: Any, atr: Any, params: ATRMatrixParams | None = None) -> np.ndarray:
    """SMA50 + k*A for each k in target_atr_multiples; shape (..., n_targets)."""
    p = _params(params)
    s = np.asarray(sma50, dtype=np.float64)[..., None]
    a = np.asarray(atr, dtype=np.float64)[..., None]
    return s + np.asarray(p.target_atr_multiples) * a


@dataclass(frozen=True)
class Levels:
    entry: float
    atr: float
    stop: float
    targets: tuple[float, ...]


def levels(entry: float, atr: float, sma50: float, params: ATRMatrixParams | None = None) -> Levels:
    """The long setup's levels for an entry at ``entry`` with ATR ``atr``."""
    return Levels(
        entry=float(entry),
        atr=float(atr),
        stop=float(initial_stop(entry, atr, params)),
        targets=tuple(float(x) for x in target_levels(sma50, atr, params)),
    )


def targets_reached(price: float, targets: Sequence[float]) -> int:
    """How many targets ``price`` has reached (targets ascending): the quarters due to be sold."""
    return int(np.searchsorted(np.asarray(targets, dtype=np.float64), price, side="right"))


def trailing_stop(
    entry_price: Any,
    atr: Any,
    highest_close: Any,
    targets_hit: Any,
    params: ATRMatrixParams | None = None,
    previous_stop: Any = None,
) -> Any:
    """The stop of a held long position.

    Before the first target: the initial stop. From the first target on: break-even (the entry
    price), raised to ``highest_close - 3 * atr`` once that is higher ("trails 3A below the
    highest close since entry"). ``atr`` is the ATR the levels were set with (the entry ATR).
    Never below ``previous_stop``: a stop only moves up. Vectorised over arrays.
    """
    p = _params(params)
    e = np.asarray(entry_price, dtype=np.float64)
    a = np.asarray(atr, dtype=np.float64)
    hc = np.asarray(highest_close, dtype=np.float64)
    hit = np.asarray(targets_hit) >= 1
    trailed = np.maximum(e, hc - p.trail_atr_multiple * a)
    stop = np.where(hit, trailed, initial_stop(e, a, p))
    if previous_stop is not None:
        stop = np.fmax(stop, np.asarray(previous_stop, dtype=np.float64))
    return stop if stop.ndim else float(stop)


def exit_reasons(
    close: float,
    sma50: float,
    atr: float,
    params: ATRMatrixParams | None = None,
    *,
    stop: float | None = None,
    low: float | None = None,
) -> list[str]:
    """Why a held position must be closed today (empty: hold).

    ``trend_break`` (close < SMA50), ``exhausted`` (atr_distance > 10) and, given the current
    ``stop``, ``stop_hit`` when the day's ``low`` (or the close, without a low) reached it.
    """
    p = _params(params)
    reasons: list[str] = []
    if close < sma50:
        reasons.append(f"trend_break: close {close:.4g} < sma50 {sma50:.4g}")
    if atr > 0:
        distance = (close - sma50) / atr
        if distance > p.scale_out_max_distance:
            reasons.append(f"exhausted: atr_distance {distance:.2f} > {p.scale_out_max_distance:g}")
    if stop is not None:
        price = close if low is None else low
        if price <= stop:
            reasons.append(f"stop_hit: {'low' if low is not None else 'close'} {price:.4g} <= stop {stop:.4g}")
    return reasons


def entry_rule(close: Any, atr: Any, sma20: Any, sma50: Any, sma100: Any, sma200: Any, ema10: Any, highest: Any,
               lowest: Any, dollar_volume: Any, params: ATRMatrixParams | None = None) -> dict[str, np.ndarray]:
    """The entry rule on indicator values of any shape (one day's row, or a whole days x symbols panel).

    Returns atr_distance, atr_pct, aligned, range_pos and signal (before data-gate exclusions). The scan
    calls it on the last day; the backtester on full-series indicators computed once per run.
    """
    p = _params(params)
    with np.errstate(all="ignore"):
        close = np.asarray(close, dtype=np.float64)
        atr_distance = (close - sma50) / atr
        atr_pct = 100.0 * atr / close
        span = highest - lowest
        range_pos = np.where(span > 0, 100.0 * (close - lowest) / span, np.nan)
        # Exact ties (close == SMA50, range position exactly 50...) land a few ulps either side of the
        # threshold depending on summation order: snap them onto it, so a tie has one answer (the rule's
        # own inclusivity decides it). TIE_REL is float64 rounding noise, far below any real difference.
        atr_distance = _snap(atr_distance, (p.entry_min_distance, p.entry_max_distance, p.extended_max_distance,
                                            p.scale_out_max_distance), np.abs(close) / atr)
        atr_pct = _snap(atr_pct, (p.min_atr_pct, p.atr_pct_band_low, p.atr_pct_band_high), atr_pct)
        range_pos = _snap(range_pos, (p.min_range_pos, p.range_ok_level, p.range_strong_level), 100.0)
        sma20, sma50, sma100, sma200, ema10 = _snap_equal(close, sma20, sma50, sma100, sma200, ema10)
        aligned = (ema10 >= sma20) & (sma20 >= sma50) & (sma50 >= sma100) & (sma100 >= sma200)
        signal = (
            (atr_distance >= p.entry_min_distance)
            & (atr_distance <= p.entry_max_distance)
            & (atr_pct >= p.min_atr_pct)
            & (range_pos >= p.min_range_pos)
            & (close >= p.min_close)
            & (dollar_volume >= p.min_dollar_volume)
        )
        if p.require_close_above_sma_fast:
            signal &= close > sma20
        if p.require_ma_aligned:
            signal &= aligned
    return {"atr_distance": atr_distance, "atr_pct": atr_pct, "aligned": aligned, "range_pos": range_pos,
            "signal": signal}


# --------------------------------------------------------------------------------------------
# the universe scan


def _empty_frame(params: ATRMatrixParams) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in _column_names(len(params.target_atr_multiples))})


def scan(panel: Panel, params: ATRMatrixParams | dict | None = None, gate: bool = True) -> pd.DataFrame:
    """ATR Matrix scan of ``panel`` as of its last day: one row per symbol, ranked.

    Rows are sorted signals first, then by score (descending), then lower atr_distance, then panel
    order; excluded rows come last. Bad data never raises: it excludes the symbol with a reason. ``gate=False``
    skips the data-quality gate (symbols without a last-day bar or whose indicators cannot be
    computed are still excluded).
    """
    p = _params(params)
    n_targets = len(p.target_atr_multiples)
    days, n = panel.n_days, panel.n_symbols
    symbols = np.asarray(panel.symbols, dtype=object)
    if n == 0:
        return _empty_frame(p)
    if days == 0:
        frame = pd.DataFrame({"symbol": symbols})
        for col in _empty_frame(p).columns[1:]:
            frame[col] = np.nan
        frame["date"] = pd.NaT
        frame["zone"] = None
        frame["signal"] = False
        frame["ma_aligned"] = False
        frame["excluded_reason"] = "no_bars"
        return frame

    if gate:
        reasons = panel_reasons(
            panel,
            min_history=p.min_history,
            stale_sessions=p.stale_sessions,
            jump_threshold=p.jump_threshold,
            lookback=p.gate_lookback,
        )
    else:
        reasons = np.full(n, None, dtype=object)

    f64 = np.float64
    o_high, o_low, o_close, o_vol = panel.high, panel.low, panel.close, panel.volume
    with np.errstate(all="ignore"):
        close = o_close[-1].astype(f64)
        atr = ind.atr_last(o_high, o_low, o_close, p.atr_period, out_dtype=f64)
        sma20, sma50, sma100, sma200 = ind.sma_last_many(
            o_close, (p.sma_fast, p.sma_trend, p.sma_mid, p.sma_slow), out_dtype=f64
        )
        ema10 = ind.ema_last(o_close, p.ema_period, out_dtype=f64)
        highest = ind.rolling_max_last(o_high, p.range_period).astype(f64)
        lowest = ind.rolling_min_last(o_low, p.range_period).astype(f64)
        vp = min(p.volume_period, days)
        dollar_volume = (o_close[days - vp :].astype(f64) * o_vol[days - vp :]).sum(axis=0) / p.volume_period
        if vp < p.volume_period:
            dollar_volume[:] = np.nan

        rule = entry_rule(close, atr, sma20, sma50, sma100, sma200, ema10, highest, lowest, dollar_volume, p)
        atr_distance, atr_pct, aligned, range_pos = (rule[k] for k in ("atr_distance", "atr_pct", "aligned",
                                                                        "range_pos"))
        span = highest - lowest

        # Scan-level exclusions: no bar today, or an indicator that cannot be computed.
        last_date = str(np.datetime64(panel.dates[-1], "D")) if not np.isnat(panel.dates[-1]) else "NaT"
        no_bar = ~np.isfinite(close)
        bad_close = close <= 0
        required = {
            "atr": atr, "sma20": sma20, "sma50": sma50, "sma100": sma100, "sma200": sma200,
            "ema10": ema10, "range": span,
        }  # fmt: skip
        missing = np.zeros(n, dtype=bool)
        for values in required.values():
            missing |= ~np.isfinite(values)
        zero_atr = np.isfinite(atr) & (atr <= 0)
        for j in np.flatnonzero(no_bar | bad_close | missing | zero_atr):
            if no_bar[j]:
                text = f"no_bar_on_last_day {last_date}"
                reasons[j] = text if reasons[j] is None else f"{reasons[j]}; {text}"
            elif reasons[j] is None:  # a gate reason already explains missing indicators
                names = [k for k, v in required.items() if not np.isfinite(v[j])]
                if zero_atr[j]:
                    names.append("atr=0")
                if bad_close[j]:
                    names.append("close<=0")
                reasons[j] = "indicator_unavailable: " + ", ".join(names)
        excluded = reasons != None  # noqa: E711 (element-wise comparison on an object array)
        included = ~excluded

        zone = zone_of(atr_distance, p)
        score = score_values(atr_distance, aligned, range_pos, atr_pct, p)
        signal = included & rule["signal"]
        stop = initial_stop(close, atr, p)
        targets = target_levels(sma50, atr, p)

        zone[excluded] = None
        score[excluded] = np.nan
        stop[excluded] = np.nan
        targets[excluded] = np.nan

    # DESIGN §4: signals first, then score, then lower atr_distance (the score saturates at 1.0 for many
    # entry-zone symbols); excluded rows last. So the table's top rows are the day's setups.
    order = np.lexsort((np.arange(n), atr_distance, -score, ~signal, excluded))
    floats = {
        "close": close, "atr": atr, "sma20": sma20, "sma50": sma50, "sma100": sma100, "sma200": sma200,
        "ema10": ema10, "atr_distance": atr_distance, "atr_pct": atr_pct, "range_pos_20": range_pos,
        "dollar_volume_20": dollar_volume, "score": score, "stop": stop,
    }  # fmt: skip
    for i in range(n_targets):
        floats[f"target_{i + 1}"] = targets[:, i]
    others: dict[str, Any] = {
        "symbol": pd.Series(symbols[order], dtype=object),
        "date": np.full(n, np.datetime64(panel.dates[-1], "D")).astype("datetime64[ns]"),
        "ma_aligned": aligned[order],
        # Text columns stay object arrays (None for "no value"): no conversion, no NaN for None.
        "zone": pd.Series(zone[order], dtype=object),
        "signal": signal[order],
        "excluded_reason": pd.Series(reasons[order], dtype=object),
    }
    # One (columns x symbols) float block, reordered once and handed to pandas without a copy;
    # the few non-float columns are inserted at their places.
    block = np.stack(list(floats.values()))[:, order]
    frame = pd.DataFrame(block.T, columns=list(floats), copy=False)
    names = _column_names(n_targets)
    for name in sorted(others, key=names.index):
        frame.insert(names.index(name), name, others[name])
    return frame


TIE_REL = 1e-12  # float64 noise of an exact tie (a few ulps), relative
BORDERLINE_REL = 1e-6  # float32 input rounding: within this of a threshold, decide in float64


def _near(x: np.ndarray, threshold: float, scale: Any, rel: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(x - threshold) <= rel * np.abs(scale)


def _snap(x: np.ndarray, thresholds: Sequence[float], scale: Any) -> np.ndarray:
    out = np.array(x, dtype=np.float64, copy=True)
    for t in thresholds:
        out = np.where(_near(out, t, scale, TIE_REL), t, out)
    return out


def _snap_equal(close: np.ndarray, *levels: np.ndarray) -> list[np.ndarray]:
    """Moving averages equal to the close (or to each other) up to float64 noise become equal."""
    out = [np.array(v, dtype=np.float64, copy=True) for v in levels]
    for v in out:
        np.copyto(v, close, where=np.abs(v - close) <= TIE_REL * np.abs(close))
    for a_, b_ in pairwise(out):
        np.copyto(b_, a_, where=np.abs(a_ - b_) <= TIE_REL * np.abs(a_))
    return out


def borderline(frame: pd.DataFrame, params: ATRMatrixParams | dict | None = None,
               rel: float = BORDERLINE_REL) -> np.ndarray:
    """Rows of a scan whose values lie within ``rel`` (relative) of a rule's threshold: on a float32 scan
    their verdict may flip with input rounding, so the caller recomputes them in float64."""
    p = _params(params)
    f = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64) for c in
         ("close", "atr", "sma20", "sma50", "sma100", "sma200", "ema10", "atr_pct", "range_pos_20",
          "atr_distance")}
    close = f["close"]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale_d = np.abs(close) / f["atr"]
    mask = np.zeros(len(frame), dtype=bool)
    for t in (p.entry_min_distance, p.entry_max_distance, p.extended_max_distance, p.scale_out_max_distance):
        mask |= _near(f["atr_distance"], t, scale_d, rel)
    for t in (p.min_atr_pct, p.atr_pct_band_low, p.atr_pct_band_high):
        mask |= _near(f["atr_pct"], t, f["atr_pct"], rel)
    for t in (p.min_range_pos, p.range_ok_level, p.range_strong_level):
        mask |= _near(f["range_pos_20"], t, 100.0, rel)
    chain = [f["ema10"], f["sma20"], f["sma50"], f["sma100"], f["sma200"]]
    mask |= _near(close - f["sma20"], 0.0, close, rel)
    for a_, b_ in pairwise(chain):
        mask |= _near(a_ - b_, 0.0, a_, rel)
    return mask


def _column_names(n_targets: int) -> list[str]:
    base = [c for c in SCAN_COLUMNS if not c.startswith("target_") and c != "excluded_reason"]
    return [*base, *(f"target_{i + 1}" for i in range(n_targets)), "excluded_reason"]


class ATRMatrix:
    """The registered ATR Matrix strategy (see :func:`scan`)."""

    name = "atr_matrix"
    params_model = ATRMatrixParams

    def scan(self, panel: Panel, params: ATRMatrixParams | dict | None = None, gate: bool = True) -> pd.DataFrame:
        return scan(panel, params, gate=gate)

    def __repr__(self) -> str:
        return "ATRMatrix()"


ATR_MATRIX = register(ATRMatrix())
