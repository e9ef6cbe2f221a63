"""Vectorised indicators over a whole universe at once.

Every function takes numpy arrays that are either 1-D (days) or 2-D time-major (days x symbols,
the layout of :class:`engine.data.panel.Panel`) and returns an array of the same shape and dtype
(float32 in, float32 out; float64 in, float64 out; anything else is computed as float64).
NaN marks "no value": the warm-up of each indicator and any window that touches a missing bar.

Conventions, all matching TA-Lib on float64 input (to ~1e-15 relative, tested to 1e-9):

* A column may start late (leading NaNs, e.g. a recent IPO). Its values are exactly what the
  function gives for that column alone with the leading NaNs cut off: recursions are seeded per
  column at ``first_valid + lookback`` (TA-Lib's Python wrapper does the same), without a Python
  loop over symbols; loops run over days only.
* Windowed indicators (``sma``, ``rolling_max``, ``rolling_min``) are NaN while their window holds
  a NaN and recover once it has passed. Recursive ones (``atr``, ``ema``) carry a NaN forward, as
  TA-Lib does: a gap inside a series poisons everything after it (the data-quality gate flags
  such series anyway).
* Recursions and sums accumulate in float64 whatever the input dtype, so a float32 result is the
  float64 result rounded once: no float32 drift, even over thousands of days.

The ``*_last`` variants return only the last day's value per column (shape ``(symbols,)`` or a
scalar for 1-D input). The universe scan uses them: it needs one row, and skipping the full
(days x symbols) outputs keeps a 32k-symbol scan far below its time budget. They equal the last
row of the full functions (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "atr",
    "atr_last",
    "ema",
    "ema_last",
    "first_valid_index",
    "rolling_max",
    "rolling_max_last",
    "rolling_min",
    "rolling_min_last",
    "sma",
    "sma_last",
    "sma_last_many",
    "true_range",
]

_F64 = np.float64
_BLOCK_ROWS = 8  # rows per block where a per-row recursion needs a whole-row input computed first


# --------------------------------------------------------------------------------------------
# shape and dtype plumbing


def _as_2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``x`` as a float (days x symbols) array, and whether the input was 1-D."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(_F64)
    if arr.ndim == 1:
        return arr.reshape(-1, 1), True
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D (days) or 2-D (days x symbols) array, got shape {arr.shape}")
    return arr, False


def _result_dtype(*arrays: np.ndarray) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays))


def _restore(out: np.ndarray, was_1d: bool) -> np.ndarray:
    return out.reshape(-1) if was_1d else out


def _restore_last(out: np.ndarray, was_1d: bool) -> np.ndarray | float:
    return out.dtype.type(out[0]) if was_1d else out


def _check_period(period: int) -> int:
    if int(period) != period or period < 1:
        raise ValueError(f"period must be a positive integer, got {period!r}")
    return int(period)


def first_valid_index(*arrays: np.ndarray) -> np.ndarray:
    """Per column, the first day on which every array has a value (``days`` when never).

    This is where TA-Lib's Python wrapper starts a column: the first index with no NaN input.
    Only columns without a value on day 0 are searched (usually few: recent listings).
    """
    mats = [_as_2d(a)[0] for a in arrays]
    days, n = mats[0].shape
    first = np.zeros(n, dtype=np.int64)
    if days == 0:
        return first
    row0 = ~np.isnan(mats[0][0])
    for m in mats[1:]:
        row0 &= ~np.isnan(m[0])
    late = np.flatnonzero(~row0)
    if late.size == 0:
        return first
    valid = ~np.isnan(mats[0][:, late])
    for m in mats[1:]:
        valid &= ~np.isnan(m[:, late])
    found = valid.argmax(axis=0)
    found[~valid[found, np.arange(late.size)]] = days
    first[late] = found
    return first


class _Seeds:
    """Which columns get their seed value on which day, without a loop over symbols.

    ``rows[j]`` is the day column j's recursion starts (``>= days`` when it never does).
    ``at(t)`` returns the columns seeded on day t: a slice for the common case where every
    column starts together, else an index array.
    """

    def __init__(self, rows: np.ndarray, days: int) -> None:
        self.rows = rows
        n = len(rows)
        if n and np.all(rows == rows[0]):
            self._single = int(rows[0])
            return
        self._single = None
        self._order = np.argsort(rows, kind="stable")
        sorted_rows = rows[self._order]
        t = np.arange(days)
        self._start = np.searchsorted(sorted_rows, t, side="left")
        self._end = np.searchsorted(sorted_rows, t, side="right")

    def at(self, t: int) -> slice | np.ndarray | None:
        if self._single is not None:
            return slice(None) if t == self._single else None
        lo, hi = self._start[t], self._end[t]
        return self._order[lo:hi] if hi > lo else None


def _seed_sums(
    first: np.ndarray,
    days: int,
    offset: int,
    count: int,
    rows_fn: Callable[[int, int, np.ndarray | slice], np.ndarray],
    cells_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Per column j, the float64 sum of V[first_j + offset + k, j] for k = 0..count-1, added in
    day order (TA-Lib's order, so seeds match TA-Lib's bit for bit).

    ``rows_fn(r0, r1, cols)`` gives V's rows r0..r1-1 for some columns; ``cells_fn(rows, cols)``
    gives V at (row, col) pairs. The largest group of columns sharing a start (usually all of
    them) is summed from contiguous row slices; the rest (late listings) from gathered cells.
    Columns whose window runs past the end are left 0: their seed day never comes.
    """
    n = len(first)
    acc = np.zeros(n, dtype=_F64)
    start = first + offset
    usable = start + count <= days
    if n == 0 or not usable.any():
        return acc
    values, counts = np.unique(start[usable], return_counts=True)
    common = int(values[counts.argmax()])
    in_group = usable & (start == common)
    group: np.ndarray | slice = slice(None) if in_group.all() else np.flatnonzero(in_group)
    block = rows_fn(common, common + count, group)
    group_acc = np.zeros(block.shape[1], dtype=_F64)
    for k in range(count):
        group_acc += block[k]
    acc[group] = group_acc
    rest = np.flatnonzero(usable & ~in_group)
    if rest.size:
        rest_acc = np.zeros(rest.size, dtype=_F64)
        for k in range(count):
            rest_acc += cells_fn(start[rest] + k, rest)
        acc[rest] = rest_acc
    return acc


# --------------------------------------------------------------------------------------------
# true range and ATR


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """TR_t = max(high_t - low_t, |high_t - close_{t-1}|, |low_t - close_{t-1}|).

    NaN on each column's first bar (no previous close), like TA-Lib's TRANGE.
    """
    h, was_1d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    dtype = _result_dtype(h, lo, c)
    out = np.empty(h.shape, dtype=dtype)
    if h.shape[0] == 0:
        return _restore(out, was_1d)
    out[0] = np.nan
    with np.errstate(invalid="ignore"):
        body = out[1:]
        np.subtract(h[1:], lo[1:], out=body)
        prev = c[:-1]
        tmp = np.subtract(h[1:], prev, dtype=dtype)
        np.abs(tmp, out=tmp)
        np.maximum(body, tmp, out=body)
        np.subtract(lo[1:], prev, out=tmp)
        np.abs(tmp, out=tmp)
        np.maximum(body, tmp, out=body)
    return _restore(out, was_1d)


def _tr_valid_bars(h: np.ndarray, lo: np.ndarray, prev_close: np.ndarray, out: np.ndarray) -> np.ndarray:
    """TR as max(high, prev_close) - min(low, prev_close), into ``out``: three numpy calls.

    For every bar with high >= low this is bit-identical to TA-Lib's
    max(h - l, |h - pc|, |l - pc|): the result is one of the same three differences, and
    rounding is monotonic, so the largest one stays the largest. (A bar with high < low is
    invalid and the data gate rejects it; there the two formulas may differ.)
    """
    tmp = np.minimum(lo, prev_close)
    np.maximum(h, prev_close, out=out)
    np.subtract(out, tmp, out=out)
    return out


def _atr_core(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, keep: bool, out_dtype=None):
    period = _check_period(period)
    h, was_1d = _as_2d(high)
    lo, _ = _as_2d(low)
    c, _ = _as_2d(close)
    if not (h.shape == lo.shape == c.shape):
        raise ValueError(f"high, low, close shapes differ: {h.shape}, {lo.shape}, {c.shape}")
    dtype = _result_dtype(h, lo, c)
    days, n = h.shape
    if period == 1:  # TA-Lib: ATR(1) is the true range itself
        tr = true_range(h, lo, c)
        if keep:
            return tr, was_1d
        last = tr[-1] if days else np.full(n, np.nan, dtype)
        return last.astype(dtype if out_dtype is None else out_dtype), was_1d
    first = first_valid_index(h, lo, c)

    def tr_rows(r0: int, r1: int, cols: np.ndarray | slice) -> np.ndarray:
        out = np.empty((r1 - r0, len(cols) if isinstance(cols, np.ndarray) else n), dtype=dtype)
        return _tr_valid_bars(h[r0:r1, cols], lo[r0:r1, cols], c[r0 - 1 : r1 - 1, cols], out)

    def tr_cells(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return _tr_valid_bars(h[rows, cols], lo[rows, cols], c[rows - 1, cols], np.empty(len(cols), dtype))

    # The first TR needs the previous close, so it exists from first+1; ATR's first value, on
    # day first+period, is the mean of TR[first+1 .. first+period].
    with np.errstate(invalid="ignore"):
        seed_total = _seed_sums(first, days, 1, period, tr_rows, tr_cells)
    seeds = _Seeds(first + period, days)
    start = max(int(first.min()) + period, 1) if n else days
    out = np.full((days, n), np.nan, dtype=dtype) if keep else None
    # The recursion runs on S = period * ATR: S_t = S_{t-1} * (p-1)/p + TR_t, two numpy calls
    # per day; ATR = S / p. (TA-Lib computes (ATR*(p-1) + TR)/p: equal to ~1e-16 relative.)
    total = np.full(n, np.nan, dtype=_F64)
    tr_block = np.empty((_BLOCK_ROWS, n), dtype=dtype)
    decay = (period - 1) / period
    with np.errstate(invalid="ignore"):
        # Rows before the earliest seed are NaN for every column: skip them. TR is computed a
        # block of rows at a time: fewer, larger numpy calls.
        for t0 in range(start, days, _BLOCK_ROWS):
            t1 = min(t0 + _BLOCK_ROWS, days)
            k = t1 - t0
            _tr_valid_bars(h[t0:t1], lo[t0:t1], c[t0 - 1 : t1 - 1], tr_block[:k])
            for i in range(k):
                t = t0 + i
                total *= decay
                total += tr_block[i]
                seeded = seeds.at(t)
                if seeded is not None:
                    total[seeded] = seed_total[seeded]
                if keep:
                    np.divide(total, period, out=out[t])
    if keep:
        return out, was_1d
    total /= period
    return total.astype(dtype if out_dtype is None else out_dtype), was_1d


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's average true range, TA-Lib's seeding.

    The first value is the mean of the first ``period`` true ranges; the first TR needs the
    previous close, so for a column starting on day f the first ATR is on day f + period. Then
    ATR_t = (ATR_{t-1} * (period - 1) + TR_t) / period.

    TR is taken as max(high, prev_close) - min(low, prev_close): bit-identical to TA-Lib's
    definition on every bar with high >= low (a bar with high < low is invalid and the data
    gate rejects it; there the two may differ).
    """
    out, was_1d = _atr_core(high, low, close, period, keep=True)
    return _restore(out, was_1d)


def atr_last(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14, *, out_dtype=None
) -> np.ndarray | float:
    """The last row of :func:`atr` without materialising the full output.

    ``out_dtype=np.float64`` returns the float64 accumulator unrounded (for float32 input).
    """
    out, was_1d = _atr_core(high, low, close, period, keep=False, out_dtype=out_dtype)
    return _restore_last(out, was_1d)


# --------------------------------------------------------------------------------------------
# moving averages


def sma(x: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average; NaN until ``period`` bars exist and while the window holds a NaN.

    A running sum in float64, updated in TA-Lib's order (add the new value, read, subtract the
    oldest), so on float64 input it is bit-identical to TA-Lib's SMA for gap-free columns. NaNs
    are summed as zeros and counted; a window with a NaN in it gives NaN.
    """
    period = _check_period(period)
    arr, was_1d = _as_2d(x)
    days, n = arr.shape
    out = np.full((days, n), np.nan, dtype=arr.dtype)
    if days < period:
        return _restore(out, was_1d)
    nan_mask = np.isnan(arr)
    has_nan = bool(nan_mask.any())
    if has_nan:
        arr = np.where(nan_mask, arr.dtype.type(0), arr)
        nan_count = np.zeros(n, dtype=np.int64)
    total = np.zeros(n, dtype=_F64)
    mean = np.empty(n, dtype=_F64)
    for t in range(days):
        total += arr[t]
        if has_nan:
            nan_count += nan_mask[t]
        if t >= period - 1:
            np.divide(total, period, out=mean)
            if has_nan:
                mean[nan_count > 0] = np.nan
            out[t] = mean
            old = t - period + 1
            total -= arr[old]
            if has_nan:
                nan_count -= nan_mask[old]
    return _restore(out, was_1d)


def sma_last(x: np.ndarray, period: int, *, out_dtype=None) -> np.ndarray | float:
    """The last value of :func:`sma`: mean of the last ``period`` bars (NaN if any is NaN).

    Summed in float64; ``out_dtype=np.float64`` returns that mean unrounded.
    """
    period = _check_period(period)
    arr, was_1d = _as_2d(x)
    days, n = arr.shape
    dtype = arr.dtype if out_dtype is None else out_dtype
    if days < period:
        out = np.full(n, np.nan, dtype=dtype)
    else:
        total = arr[days - period :].sum(axis=0, dtype=_F64)
        total /= period
        out = total.astype(dtype, copy=False)
    return _restore_last(out, was_1d)


def sma_last_many(x: np.ndarray, periods: Sequence[int], *, out_dtype=None) -> list[np.ndarray | float]:
    """:func:`sma_last` for several periods at once, sharing one pass over the longest window:
    the sum of the last 20 rows is reused for the last 50, and so on (float64 throughout)."""
    checked = [_check_period(p) for p in periods]
    arr, was_1d = _as_2d(x)
    days, n = arr.shape
    dtype = arr.dtype if out_dtype is None else out_dtype
    results: dict[int, np.ndarray] = {}
    total = np.zeros(n, dtype=_F64)
    done = 0  # rows summed so far, counted back from the last day
    for period in sorted(set(checked)):
        if period > days:
            results[period] = np.full(n, np.nan, dtype=dtype)
            continue
        total += arr[days - period : days - done].sum(axis=0, dtype=_F64)
        done = period
        results[period] = (total / period).astype(dtype, copy=False)
    return [_restore_last(results[p], was_1d) for p in checked]


def _ema_core(x: np.ndarray, period: int, keep: bool, out_dtype=None):
    period = _check_period(period)
    arr, was_1d = _as_2d(x)
    days, n = arr.shape
    first = first_valid_index(arr)
    seeds = _Seeds(first + period - 1, days)
    seed_value = _seed_sums(
        first,
        days,
        0,
        period,
        lambda r0, r1, cols: arr[r0:r1, cols],
        lambda rows, cols: arr[rows, cols],
    )
    seed_value /= period
    k = 2.0 / (period + 1.0)  # TA-Lib's PER_TO_K
    out = np.empty((days, n), dtype=arr.dtype) if keep else None
    prev = np.full(n, np.nan, dtype=_F64)
    start = int(first.min()) + period - 1 if n else days
    if keep:
        out[: min(start, days)] = np.nan
    block = np.empty((_BLOCK_ROWS, n), dtype=_F64)
    with np.errstate(invalid="ignore"):
        # Rows before the earliest seed are NaN for every column: skip them. k*x is computed in
        # float64 a block of rows at a time; the recursion EMA_t = EMA_{t-1}*(1-k) + k*x_t then
        # costs two numpy calls per day. (TA-Lib computes (x - EMA)*k + EMA: the same value to
        # ~1e-16 relative.)
        for t0 in range(max(start, 0), days, _BLOCK_ROWS):
            t1 = min(t0 + _BLOCK_ROWS, days)
            kx = block[: t1 - t0]
            np.multiply(arr[t0:t1], k, out=kx)
            for i in range(t1 - t0):
                t = t0 + i
                prev *= 1.0 - k
                prev += kx[i]
                cols = seeds.at(t)
                if cols is not None:
                    prev[cols] = seed_value[cols]
                if keep:
                    out[t] = prev
    if keep:
        return out, was_1d
    return prev.astype(arr.dtype if out_dtype is None else out_dtype), was_1d


def ema(x: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average, k = 2 / (period + 1), seeded with the SMA of the first
    ``period`` values of each column (TA-Lib's default): first value on day first + period - 1."""
    out, was_1d = _ema_core(x, period, keep=True)
    return _restore(out, was_1d)


def ema_last(x: np.ndarray, period: int, *, out_dtype=None) -> np.ndarray | float:
    """The last row of :func:`ema` without materialising the full output (``out_dtype`` as in
    :func:`atr_last`)."""
    out, was_1d = _ema_core(x, period, keep=False, out_dtype=out_dtype)
    return _restore_last(out, was_1d)


# --------------------------------------------------------------------------------------------
# rolling extremes


def _rolling_extreme(x: np.ndarray, period: int, op: Callable) -> np.ndarray:
    """Window extreme by doubling: after j steps m[i] = op over x[i : i + 2**j], then one more
    op of two overlapping power-of-two windows covers any period. log2(period) whole-array
    passes, no Python loop over symbols or days. NaN propagates (np.maximum/np.minimum do)."""
    period = _check_period(period)
    arr, was_1d = _as_2d(x)
    days, _ = arr.shape
    out = np.full(arr.shape, np.nan, dtype=arr.dtype)
    if days < period:
        return _restore(out, was_1d)
    m = arr
    width = 1
    while width * 2 <= period:
        m = op(m[:-width], m[width:])
        width *= 2
    count = days - period + 1
    op(m[:count], m[period - width : period - width + count], out=out[period - 1 :])
    return _restore(out, was_1d)


def rolling_max(x: np.ndarray, period: int) -> np.ndarray:
    """Highest value of the last ``period`` bars (TA-Lib MAX); NaN in warm-up and over gaps."""
    return _rolling_extreme(x, period, np.maximum)


def rolling_min(x: np.ndarray, period: int) -> np.ndarray:
    """Lowest value of the last ``period`` bars (TA-Lib MIN); NaN in warm-up and over gaps."""
    return _rolling_extreme(x, period, np.minimum)


def _extreme_last(x: np.ndarray, period: int, reduce: Callable) -> np.ndarray | float:
    period = _check_period(period)
    arr, was_1d = _as_2d(x)
    days, n = arr.shape
    # NaN-propagating like the full version.
    out = np.full(n, np.nan, dtype=arr.dtype) if days < period else reduce(arr[days - period :], axis=0)
    return _restore_last(out, was_1d)


def rolling_max_last(x: np.ndarray, period: int) -> np.ndarray | float:
    """The last value of :func:`rolling_max`."""
    return _extreme_last(x, period, np.max)


def rolling_min_last(x: np.ndarray, period: int) -> np.ndarray | float:
    """The last value of :func:`rolling_min`."""
    return _extreme_last(x, period, np.min)
