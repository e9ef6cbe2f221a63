"""Data-quality gate for a whole panel: which symbols' bars can be trusted for a scan.

``check_panel`` returns one reason (or None) per symbol (``panel_reasons``: the same as a plain
array). Everything is vectorised over the (days x symbols) arrays, no loop over symbols: one
screening pass over blocks of a few rows (so they stay in cache) finds the symbols that may have
a problem, and only those (normally few: late listings, delistings, real defects) are examined
further to name the defect and its first date. Strings are built only for failing symbols.

Reasons are stable codes followed by numbers, several joined with "; ", for example
``insufficient_history: 120 bars < 200`` or ``high_below_low on 2016-03-02 (+2 more)``.

Codes and rules (``DATE`` is the first offending session; ``(+k more)`` counts the others):

* ``unsorted_dates at DATE`` / ``duplicate_date DATE`` / ``invalid_date``: the panel's own dates
  are not strictly ascending (or NaT). Panel-level: every symbol gets it and nothing else is
  checked, because no per-date reason would mean anything.
* ``no_bars``: the symbol has no bar at all.
* ``insufficient_history: N bars < MIN``: fewer than ``min_history`` bars in the whole panel.
* ``stale: no bar in the last K sessions (last DATE)``: no bar in the last ``stale_sessions``
  sessions (K >= stale_sessions).
* ``gap: no bar on DATE``: a missing session between the symbol's first and last bar.
* ``nan_field on DATE``: a bar with some but not all of open/high/low/close/volume NaN or
  infinite (a missing bar is all-NaN, and is a gap or a late start, not this).
* ``non_positive_price on DATE``: a price <= 0.
* ``high_below_low on DATE``; ``open_outside_range on DATE`` / ``close_outside_range on DATE``:
  open or close outside [low, high].
* ``negative_volume on DATE``.
* ``repeated_bar on DATE``: open, high, low and close all identical to the previous session's,
  on a bar spanning at least ``repeat_min_range`` ($0.20, i.e. 20 one-cent ticks). With that
  much room a liquid stock never prints the same four prices on two days: it is a stale copy of
  the previous bar (the real sample CSV has four: CAT 2014-07-18, JPM 2014-12-01, KO 2014-08-04
  and KO 2017-08-02, each with ranges of $0.34 or more and a volume within 3% of the day
  before). A low-priced stock whose bars span a few cents can repeat by chance (the simulated
  market does, hundreds of times across a 32k-symbol universe), so narrower bars are left alone.
* ``split_like_jump on DATE (open/prev close R)``: a split or reverse split that the data does
  not explain. Rule: R = open / previous close, with |ln R| >= ln(1 + jump_threshold) (a move of
  at least 40% up, or down to 1/1.4 or lower, by default), R within ``split_tolerance`` (4%,
  relative) of a split factor (2..20 or 3/2, 5/2, or their inverses), and no volume to
  support a genuine gap: that day's dollar volume is below ``volume_confirm`` (2x) the mean
  dollar volume of up to 20 bars before it. A real news gap trades heavily; an unadjusted split
  shows the same dollar volume (shares scale by the inverse of the price).

``lookback`` limits the bar-level checks (gap and everything after it in the list above) to the
last ``lookback`` sessions; history length and staleness always use the whole panel.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from engine.data.panel import Panel

__all__ = ["SPLIT_FACTORS", "check_panel", "panel_reasons"]

_UP_FACTORS = np.array([*range(2, 21), 1.5, 2.5], dtype=np.float64)
SPLIT_FACTORS = np.sort(np.concatenate([_UP_FACTORS, 1.0 / _UP_FACTORS]))

# Order in which a symbol's reasons are listed.
_ORDER = (
    "no_bars",
    "insufficient_history",
    "stale",
    "gap",
    "nan_field",
    "non_positive_price",
    "high_below_low",
    "open_outside_range",
    "close_outside_range",
    "negative_volume",
    "repeated_bar",
    "split_like_jump",
)


def _day(d: np.datetime64) -> str:
    return str(np.datetime64(d, "D"))


class _Reasons:
    """Collects reasons per column, emitted in ``_ORDER``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.by_code: dict[str, dict[int, str]] = {}

    def add(self, code: str, cols: Iterable[int], texts: Iterable[str]) -> None:
        slot = self.by_code.setdefault(code, {})
        for col, text in zip(cols, texts, strict=True):
            slot.setdefault(int(col), text)

    def add_first_dates(self, code: str, mask: np.ndarray, cols: np.ndarray, dates: np.ndarray) -> None:
        """``mask`` (rows x len(cols)) marks offending sessions of the given columns."""
        if mask.size == 0:
            return
        hit = mask.any(axis=0)
        if not hit.any():
            return
        sub = mask[:, hit]
        first = sub.argmax(axis=0)
        extra = sub.sum(axis=0) - 1
        texts = (
            f"{code} on {_day(dates[r])}" + (f" (+{k} more)" if k else "")
            for r, k in zip(first.tolist(), extra.tolist(), strict=True)
        )
        self.add(code, cols[hit], texts)

    def array(self) -> np.ndarray:
        out = np.full(self.n, None, dtype=object)
        merged: dict[int, list[str]] = {}
        for code in _ORDER:
            for col, text in self.by_code.get(code, {}).items():
                merged.setdefault(col, []).append(text)
        for col, texts in merged.items():
            out[col] = "; ".join(texts)
        return out


def _date_problem(dates: np.ndarray) -> str | None:
    if len(dates) == 0:
        return None
    try:
        d = np.asarray(dates).astype("datetime64[D]")
    except (TypeError, ValueError):
        return "invalid_date"
    if np.isnat(d).any():
        return "invalid_date"
    step = d[1:] - d[:-1]
    bad = np.flatnonzero(step <= np.timedelta64(0, "D"))
    if bad.size == 0:
        return None
    i = int(bad[0])
    if d[i + 1] == d[i]:
        return f"duplicate_date {_day(d[i + 1])}"
    return f"unsorted_dates at {_day(d[i + 1])}"


def check_panel(
    panel: Panel,
    min_history: int = 200,
    stale_sessions: int = 5,
    jump_threshold: float = 0.4,
    *,
    lookback: int | None = None,
    split_tolerance: float = 0.04,
    volume_confirm: float = 2.0,
    repeat_min_range: float = 0.20,
) -> pd.Series:
    """One entry per symbol (index = panel.symbols, named "symbol"): None when the data passes,
    else the reasons.

    See the module docstring for every rule. Never raises on bad values; raises ValueError only
    for nonsensical arguments.
    """
    reasons = panel_reasons(
        panel,
        min_history,
        stale_sessions,
        jump_threshold,
        lookback=lookback,
        split_tolerance=split_tolerance,
        volume_confirm=volume_confirm,
        repeat_min_range=repeat_min_range,
    )
    index = pd.Index(np.asarray(panel.symbols, dtype=object), name="symbol")
    return pd.Series(reasons, index=index, name="excluded_reason", dtype=object)


def panel_reasons(
    panel: Panel,
    min_history: int = 200,
    stale_sessions: int = 5,
    jump_threshold: float = 0.4,
    *,
    lookback: int | None = None,
    split_tolerance: float = 0.04,
    volume_confirm: float = 2.0,
    repeat_min_range: float = 0.20,
) -> np.ndarray:
    """:func:`check_panel` as a plain object array aligned with ``panel.symbols`` (no pandas)."""
    if min_history < 0 or stale_sessions < 1 or jump_threshold <= 0 or split_tolerance < 0:
        raise ValueError("min_history >= 0, stale_sessions >= 1, jump_threshold > 0, split_tolerance >= 0")
    if lookback is not None and lookback < 1:
        raise ValueError("lookback must be None or >= 1")
    days, n = panel.n_days, panel.n_symbols
    reasons = _Reasons(n)
    if n == 0:
        return reasons.array()
    date_problem = _date_problem(panel.dates)
    if date_problem is not None:
        reasons.add("no_bars", range(n), [date_problem] * n)  # listed alone, whatever the slot
        return reasons.array()
    dates = np.asarray(panel.dates).astype("datetime64[D]")
    if days == 0:
        reasons.add("no_bars", range(n), ["no_bars"] * n)
        return reasons.array()

    arrays = tuple(np.asarray(getattr(panel, f)) for f in ("open", "high", "low", "close", "volume"))
    w0 = 0 if lookback is None else max(0, days - lookback)
    up = 1.0 + jump_threshold
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if days < min_history:  # every symbol is short: examine all of them
            suspect = repeat_cols = jump_cols = np.arange(n)
        else:
            suspect, repeat_cols, jump_cols = _screen(*arrays, w0, up, repeat_min_range)
        if suspect.size:
            sub = tuple(a[:, suspect] for a in arrays)
            _values(*sub, suspect, dates, w0, min_history, stale_sessions, reasons)
        if days - w0 >= 2:
            if repeat_cols.size:
                o, h, lo, c, _ = (a[w0:, repeat_cols] for a in arrays)
                _repeated_bars(o, h, lo, c, repeat_cols, dates[w0:], reasons, repeat_min_range)
            if jump_cols.size:
                o, _, _, c, v = (a[w0:, jump_cols] for a in arrays)
                _split_like_jumps(
                    o, c, v, jump_cols, dates[w0:], reasons, jump_threshold, split_tolerance, volume_confirm
                )
    return reasons.array()


_BLOCK_ROWS = 4  # rows per block in the screen: a few rows of every field stay in cache


def _screen(o, h, lo, c, v, w0: int, up: float, repeat_min_range: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cache-friendly pass over the panel in blocks of rows; returns the columns that need a
    closer look: (any value problem or missing bar, a possibly repeated bar, a big open jump).

    Conservative by construction: with mn = min(open, close) and mx = max(open, close), a bar is
    clean iff min(mn - low, high - mx, volume) >= 0, low > 0 and high, volume finite; NaN anywhere
    propagates through np.minimum and makes the column a suspect.
    """
    days, n = c.shape
    dt = np.result_type(o, h, lo, c, v)
    worst = np.full(n, np.inf, dtype=dt)  # min over bars of min(mn - low, high - mx, volume)
    lowest = np.full(n, np.inf, dtype=dt)
    highest = np.full(n, -np.inf, dtype=dt)  # max of high and volume: catches +inf
    repeat = np.zeros(n, dtype=bool)
    ratio_max = np.full(n, -np.inf, dtype=dt)
    ratio_min = np.full(n, np.inf, dtype=dt)
    a = np.empty((_BLOCK_ROWS, n), dtype=dt)
    b = np.empty((_BLOCK_ROWS, n), dtype=dt)
    eq = np.empty((_BLOCK_ROWS, n), dtype=bool)
    eq2 = np.empty((_BLOCK_ROWS, n), dtype=bool)
    missing_before = np.isnan(c[:w0]).any(axis=0) if w0 else np.zeros(n, dtype=bool)
    range_floor = _range_floor(repeat_min_range)
    for t0 in range(w0, days, _BLOCK_ROWS):
        t1 = min(t0 + _BLOCK_ROWS, days)
        k = t1 - t0
        bo, bh, bl, bc, bv = o[t0:t1], h[t0:t1], lo[t0:t1], c[t0:t1], v[t0:t1]
        ba, bb = a[:k], b[:k]
        np.minimum(bo, bc, out=ba)
        np.maximum(bo, bc, out=bb)
        np.subtract(ba, bl, out=ba)
        np.subtract(bh, bb, out=bb)
        np.minimum(ba, bb, out=ba)
        np.minimum(ba, bv, out=ba)
        np.minimum(worst, ba.min(axis=0), out=worst)
        np.minimum(lowest, bl.min(axis=0), out=lowest)
        np.maximum(highest, bh.max(axis=0), out=highest)
        np.maximum(highest, bv.max(axis=0), out=highest)
        # Pairs (t-1, t) inside the window.
        p0 = max(t0, w0 + 1)
        if p0 >= t1:
            continue
        m = t1 - p0
        prev = slice(p0 - 1, t1 - 1)
        cur = slice(p0, t1)
        np.equal(c[cur], c[prev], out=eq[:m])
        np.equal(o[cur], o[prev], out=eq2[:m])
        eq[:m] &= eq2[:m]
        np.equal(h[cur], h[prev], out=eq2[:m])
        eq[:m] &= eq2[:m]
        np.subtract(h[cur], lo[cur], out=bb[:m])
        np.greater_equal(bb[:m], range_floor, out=eq2[:m])
        eq[:m] &= eq2[:m]
        repeat |= eq[:m].any(axis=0)
        np.divide(o[cur], c[prev], out=ba[:m])
        np.fmax(ratio_max, np.fmax.reduce(ba[:m], axis=0), out=ratio_max)
        np.fmin(ratio_min, np.fmin.reduce(ba[:m], axis=0), out=ratio_min)
    suspect = ~(worst >= 0) | ~(lowest > 0) | ~np.isfinite(highest) | missing_before
    jumps = (ratio_max >= up) | (ratio_min <= 1.0 / up)
    return np.flatnonzero(suspect), np.flatnonzero(repeat), np.flatnonzero(jumps)


def _values(o, h, lo, c, v, cols, dates, w0, min_history, stale_sessions, reasons: _Reasons) -> None:
    """History, staleness, gaps and bar values of the columns ``cols`` (arrays already subset)."""
    days = c.shape[0]
    present = ~np.isnan(c)
    count = present.sum(axis=0)
    first = np.where(present.any(axis=0), present.argmax(axis=0), days)
    last = np.where(present.any(axis=0), days - 1 - present[::-1].argmax(axis=0), -1)

    empty = count == 0
    reasons.add("no_bars", cols[empty], ["no_bars"] * int(empty.sum()))
    short = (count < min_history) & ~empty
    reasons.add(
        "insufficient_history",
        cols[short],
        (f"insufficient_history: {k} bars < {min_history}" for k in count[short].tolist()),
    )
    missing_tail = days - 1 - last
    stale = (missing_tail >= stale_sessions) & ~empty
    reasons.add(
        "stale",
        cols[stale],
        (
            f"stale: no bar in the last {k} sessions (last {_day(dates[r])})"
            for k, r in zip(missing_tail[stale].tolist(), last[stale].tolist(), strict=True)
        ),
    )

    # Bar-level checks, restricted to the lookback window.
    wdates = dates[w0:]
    ow, hw, lw, cw, vw, pw = o[w0:], h[w0:], lo[w0:], c[w0:], v[w0:], present[w0:]
    span_start = np.maximum(first, w0)
    in_window = pw.sum(axis=0)
    gap = (last >= span_start) & (in_window < last - span_start + 1) & ~empty
    if gap.any():
        rows = np.arange(w0, days)[:, None]
        inside = (rows >= span_start[gap]) & (rows <= last[gap])
        reasons.add_first_dates("gap", inside & ~pw[:, gap], cols[gap], wdates)

    total = ow + hw + lw + cw + vw
    partial = (~np.isfinite(total) & pw) | (~np.isnan(ow) & ~pw)
    reasons.add_first_dates("nan_field", partial, cols, wdates)
    nonpos = (ow <= 0) | (hw <= 0) | (lw <= 0) | (cw <= 0)
    reasons.add_first_dates("non_positive_price", nonpos, cols, wdates)
    reasons.add_first_dates("high_below_low", hw < lw, cols, wdates)
    reasons.add_first_dates("open_outside_range", (ow < lw) | (ow > hw), cols, wdates)
    reasons.add_first_dates("close_outside_range", (cw < lw) | (cw > hw), cols, wdates)
    reasons.add_first_dates("negative_volume", vw < 0, cols, wdates)


def _range_floor(repeat_min_range: float) -> float:
    # Half a cent of slack: prices stored as float32 are not exact decimals.
    return max(repeat_min_range - 0.005, 0.0) if repeat_min_range > 0 else 0.0


def _repeated_bars(o, h, lo, c, cols, dates, reasons: _Reasons, repeat_min_range: float) -> None:
    same_close = c[1:] == c[:-1]
    if not same_close.any():
        return
    t, j = np.nonzero(same_close)
    t1 = t + 1
    span = h[t1, j] - lo[t1, j]
    rep = (o[t1, j] == o[t, j]) & (h[t1, j] == h[t, j]) & (lo[t1, j] == lo[t, j]) & (span > 0)
    rep &= span >= _range_floor(repeat_min_range)
    _add_events(reasons, "repeated_bar", t1[rep], cols[j[rep]], dates, [""] * int(rep.sum()))


def _split_like_jumps(o, c, v, cols, dates, reasons: _Reasons, threshold, tolerance, volume_confirm) -> None:
    ratio = o[1:] / c[:-1]
    up = 1.0 + threshold
    cand = (ratio >= up) | (ratio <= 1.0 / up)
    if not cand.any():
        return
    t, j = np.nonzero(cand)
    r = ratio[t, j].astype(np.float64)
    ok = np.isfinite(r) & (r > 0)
    t, j, r = t[ok], j[ok], r[ok]
    if t.size == 0:
        return
    nearest = SPLIT_FACTORS[np.abs(np.log(r)[:, None] - np.log(SPLIT_FACTORS)[None, :]).argmin(axis=1)]
    near = np.abs(r / nearest - 1.0) <= tolerance
    t, j, r = t[near], j[near], r[near]
    if t.size == 0:
        return
    day = t + 1  # the session that opened at the jump
    today = c[day, j].astype(np.float64) * v[day, j]
    # Mean dollar volume of up to 20 bars before the jump day, skipping missing ones.
    offsets = np.arange(1, 21)
    rows = day[:, None] - offsets[None, :]
    safe_rows, sub_cols = np.maximum(rows, 0), j[:, None]
    prior = np.where(rows >= 0, c[safe_rows, sub_cols].astype(np.float64) * v[safe_rows, sub_cols], np.nan)
    usable = np.isfinite(prior) & (prior >= 0)
    n_prior = usable.sum(axis=1)
    mean_prior = np.where(usable, prior, 0.0).sum(axis=1) / np.maximum(n_prior, 1)
    confirmed = (n_prior > 0) & np.isfinite(today) & (today >= volume_confirm * mean_prior) & (mean_prior > 0)
    unexplained = ~confirmed
    _add_events(
        reasons,
        "split_like_jump",
        day[unexplained],
        cols[j[unexplained]],
        dates,
        [f" (open/prev close {x:.3g})" for x in r[unexplained].tolist()],
    )


def _add_events(reasons: _Reasons, code: str, rows: np.ndarray, cols: np.ndarray, dates, suffixes) -> None:
    """Reasons from individual (row, col) events: first date per column plus a count."""
    if rows.size == 0:
        return
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    suffixes = [suffixes[i] for i in order.tolist()]
    uniq, start, counts = np.unique(cols, return_index=True, return_counts=True)
    texts = (
        f"{code} on {_day(dates[rows[s]])}{suffixes[s]}" + (f" (+{k - 1} more)" if k > 1 else "")
        for s, k in zip(start.tolist(), counts.tolist(), strict=True)
    )
    reasons.add(code, uniq, texts)
