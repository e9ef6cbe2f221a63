"""Compiled (numba) time loops behind :mod:`engine.indicators`; call those functions, not these.

Every kernel takes time-major C-contiguous (days x symbols) arrays and works on blocks of
``BLOCK`` adjacent symbols: one pass over the days per block, the inner loop over the block's
columns. A block's row is one 4 KiB page of float64 (the hardware prefetcher streams it), the
rows a window looks back to are still in cache, and the inner loops use selects instead of
branches so LLVM vectorises them across symbols. A kernel covers the columns ``j_lo:j_hi`` and
releases the GIL (``nogil``), so :mod:`engine.indicators` runs column ranges on several threads.
Each column is computed on its own: a column's values never depend on the others (tested), and
a column that starts late (leading NaNs) gets exactly the values it would get alone.

Each indicator's arithmetic is written once, as a ``_*_step`` function that advances a block by
one day; the single-indicator kernels and the fused :func:`series_into` call the same steps.
The arithmetic is TA-Lib's, operation for operation, in float64 whatever the input dtype, with
no fast-math: LLVM may not reorder the additions or fuse them into FMAs, so float64 results equal
TA-Lib to ~1e-15 relative (tested to 1e-9 on real data).

Compiled on first use and cached on disk (``cache=True``, in ``__pycache__``), one specialisation
per argument types (input dtype, output dtype, read-only or not).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 512  # symbols per block: one 4 KiB page of float64 per row

_NAN = np.nan


# --------------------------------------------------------------------------------------------
# one day of one indicator for one block (row slices of length w)


@njit(nogil=True, cache=True)
def _sma_step(xr, xo, total, bad, orow, fp, full):  # type: ignore[no-untyped-def]
    """SMA: a running float64 sum in TA-Lib's order (add the new value, read, subtract the
    oldest ``xo`` once the window is ``full``); NaNs are left out of the sum and counted (as a
    float, so the loop stays all-double), a window holding one gives NaN."""
    for i in range(orow.shape[0]):
        v = np.float64(xr[i])
        missing = v != v
        bad[i] += 1.0 if missing else 0.0
        total[i] += 0.0 if missing else v
    if full:
        for i in range(orow.shape[0]):
            orow[i] = total[i] / fp if bad[i] == 0.0 else _NAN
            v = np.float64(xo[i])
            missing = v != v
            bad[i] -= 1.0 if missing else 0.0
            total[i] -= 0.0 if missing else v
    else:
        for i in range(orow.shape[0]):
            orow[i] = _NAN


@njit(nogil=True, cache=True)
def _atr_step(hr, lr, cr, pr, k, s, orow, fp, decay):  # type: ignore[no-untyped-def]
    """Wilder's ATR with TA-Lib's seeding, per column from its first complete bar f.

    TR_t = max(h_t, c_{t-1}) - min(lo_t, c_{t-1}) from f + 1 (bit-identical to TA-Lib's
    max-of-three-differences when high >= low); S = TR_{f+1} + ... + TR_{f+period} on day
    f + period, then S_t = S_{t-1} * (period - 1) / period + TR_t; ATR = S / period. A NaN after
    f carries forward, as in TA-Lib. ``k``: bars since f (-1 before it); ``pr``: the previous
    day's closes (unused before f + 1).
    """
    for i in range(orow.shape[0]):
        hv = np.float64(hr[i])
        lv = np.float64(lr[i])
        pc = np.float64(pr[i])
        complete = hv == hv and lv == lv and cr[i] == cr[i]
        tr = (hv if hv > pc else pc) - (lv if lv < pc else pc)  # NaN when pc is
        tr = tr if (hv == hv and lv == lv) else _NAN
        started = k[i] >= 0.0
        kn = k[i] + 1.0 if started else (0.0 if complete else -1.0)
        si = s[i]
        si = (si + tr if kn <= fp else si * decay + tr) if started else si
        s[i] = si
        k[i] = kn
        orow[i] = si / fp if kn >= fp else _NAN


@njit(nogil=True, cache=True)
def _ema_step(xr, k, acc, orow, fp, alpha, beta):  # type: ignore[no-untyped-def]
    """EMA with alpha = 2 / (period + 1), seeded per column with the mean of its first
    ``period`` values (first value on day f + period - 1), then EMA_t = EMA_{t-1} * (1 - alpha)
    + x_t * alpha. ``k``: values since f (-1 before it); ``acc``: the seed's sum, then the EMA."""
    for i in range(orow.shape[0]):
        v = np.float64(xr[i])
        kn = k[i] + 1.0 if k[i] >= 0.0 else (0.0 if v == v else -1.0)
        a = acc[i]
        a = a * beta + v * alpha if kn >= fp else (a + v if kn >= 0.0 else a)
        a = a / fp if kn == fp - 1.0 else a
        acc[i] = a
        k[i] = kn
        orow[i] = a if kn >= fp - 1.0 else _NAN


@njit(nogil=True, cache=True)
def _extreme_step(x, t, period, sign, j0, buf, prefix, orow):  # type: ignore[no-untyped-def]
    """Rolling max (sign = 1) or min (sign = -1) of the last ``period`` values on day t, NaN while
    the window holds a NaN: van Herk / Gil-Werman, three comparisons a value whatever the period.

    Days are cut into segments of ``period``. A window ending on day t is the tail of the
    previous segment (its suffix extremes, computed backwards when that segment began, kept in
    ``buf``: two (period x w) halves used alternately) plus the head of t's segment (``prefix``,
    carried forwards). Comparisons only, so exact; the select keeps a NaN whichever side it is on.
    """
    w = orow.shape[0]
    days = x.shape[0]
    g = t - t % period
    cur = buf[(t // period) % 2]
    if t == g:  # a segment begins: its suffix extremes, backwards
        e = min(g + period, days)
        for r in range(e - 1, g - 1, -1):
            xr = x[r, j0 : j0 + w]
            dst = cur[r - g]
            if r == e - 1:
                for i in range(w):
                    dst[i] = xr[i]
            else:
                nxt = cur[r - g + 1]
                for i in range(w):
                    a = xr[i]
                    z = nxt[i]
                    dst[i] = a if (sign * a > sign * z or a != a) else z
    xr = x[t, j0 : j0 + w]
    if t == g:
        for i in range(w):
            prefix[i] = xr[i]
    else:
        for i in range(w):
            a = xr[i]
            z = prefix[i]
            prefix[i] = a if (sign * a > sign * z or a != a) else z
    if t >= period - 1:
        s = t - period + 1
        src = cur[0] if s == g else buf[(t // period + 1) % 2][s - (g - period)]
        for i in range(w):
            a = src[i]
            z = prefix[i]
            orow[i] = a if (sign * a > sign * z or a != a) else z
    else:
        for i in range(w):
            orow[i] = _NAN


# --------------------------------------------------------------------------------------------
# kernels: one indicator, or everything a backtest needs in one pass


@njit(nogil=True, cache=True)
def sma_into(x: np.ndarray, period: int, out: np.ndarray, j_lo: int, j_hi: int) -> None:
    fp = float(period)
    for j0 in range(j_lo, j_hi, BLOCK):
        w = min(BLOCK, j_hi - j0)
        total = np.zeros(w)
        bad = np.zeros(w)
        for t in range(x.shape[0]):
            old = max(t - period + 1, 0)
            _sma_step(x[t, j0 : j0 + w], x[old, j0 : j0 + w], total, bad, out[t, j0 : j0 + w], fp,
                      t >= period - 1)


@njit(nogil=True, cache=True)
def atr_into(h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int, out: np.ndarray, keep: bool,
             j_lo: int, j_hi: int) -> None:
    """``keep``: out is (days x n); else out is (1 x n) and ends holding the last day."""
    fp = float(period)
    decay = (period - 1) / period
    for j0 in range(j_lo, j_hi, BLOCK):
        w = min(BLOCK, j_hi - j0)
        k = np.full(w, -1.0)
        s = np.zeros(w)
        for t in range(h.shape[0]):
            _atr_step(h[t, j0 : j0 + w], lo[t, j0 : j0 + w], c[t, j0 : j0 + w], c[max(t - 1, 0), j0 : j0 + w],
                      k, s, out[t if keep else 0, j0 : j0 + w], fp, decay)


@njit(nogil=True, cache=True)
def ema_into(x: np.ndarray, period: int, out: np.ndarray, keep: bool, j_lo: int, j_hi: int) -> None:
    """``keep`` as in :func:`atr_into`."""
    fp = float(period)
    alpha = 2.0 / (period + 1.0)  # TA-Lib's PER_TO_K
    for j0 in range(j_lo, j_hi, BLOCK):
        w = min(BLOCK, j_hi - j0)
        k = np.full(w, -1.0)
        acc = np.zeros(w)
        for t in range(x.shape[0]):
            _ema_step(x[t, j0 : j0 + w], k, acc, out[t if keep else 0, j0 : j0 + w], fp, alpha, 1.0 - alpha)


@njit(nogil=True, cache=True)
def extreme_into(x: np.ndarray, period: int, sign: float, out: np.ndarray, j_lo: int, j_hi: int) -> None:
    for j0 in range(j_lo, j_hi, BLOCK):
        w = min(BLOCK, j_hi - j0)
        buf = np.empty((2, period, w), dtype=x.dtype)
        prefix = np.empty(w, dtype=x.dtype)
        for t in range(x.shape[0]):
            _extreme_step(x, t, period, sign, j0, buf, prefix, out[t, j0 : j0 + w])


@njit(nogil=True, cache=True)
def series_into(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, atr_period: int,
                sma_periods: np.ndarray, ema_period: int, range_period: int, volume_period: int,
                atr_out: np.ndarray, sma_out: np.ndarray, ema_out: np.ndarray, max_out: np.ndarray,
                min_out: np.ndarray, dv_out: np.ndarray, j_lo: int, j_hi: int) -> None:
    """ATR, SMAs (``sma_out[k]`` for ``sma_periods[k]``), EMA of closes, rolling max of highs and
    min of lows, SMA of close x volume: the same steps as the single kernels, in one pass over
    the days per block, so each input row is read from memory once for all of them."""
    n_sma = sma_periods.shape[0]
    fa = float(atr_period)
    decay = (atr_period - 1) / atr_period
    fe = float(ema_period)
    alpha = 2.0 / (ema_period + 1.0)
    fv = float(volume_period)
    for j0 in range(j_lo, j_hi, BLOCK):
        w = min(BLOCK, j_hi - j0)
        j1 = j0 + w
        atr_k = np.full(w, -1.0)
        atr_s = np.zeros(w)
        sma_total = np.zeros((n_sma, w))
        sma_bad = np.zeros((n_sma, w))
        ema_k = np.full(w, -1.0)
        ema_acc = np.zeros(w)
        dv_total = np.zeros(w)
        dv_bad = np.zeros(w)
        dv_new = np.empty(w)  # close x volume today and on the day leaving the window
        dv_old = np.empty(w)
        hi_buf = np.empty((2, range_period, w), dtype=h.dtype)
        lo_buf = np.empty((2, range_period, w), dtype=lo.dtype)
        hi_prefix = np.empty(w, dtype=h.dtype)
        lo_prefix = np.empty(w, dtype=lo.dtype)
        for t in range(h.shape[0]):
            cr = c[t, j0:j1]
            _atr_step(h[t, j0:j1], lo[t, j0:j1], cr, c[max(t - 1, 0), j0:j1], atr_k, atr_s, atr_out[t, j0:j1],
                      fa, decay)
            for q in range(n_sma):
                p = sma_periods[q]
                _sma_step(cr, c[max(t - p + 1, 0), j0:j1], sma_total[q], sma_bad[q], sma_out[q, t, j0:j1],
                          float(p), t >= p - 1)
            _ema_step(cr, ema_k, ema_acc, ema_out[t, j0:j1], fe, alpha, 1.0 - alpha)
            _extreme_step(h, t, range_period, 1.0, j0, hi_buf, hi_prefix, max_out[t, j0:j1])
            _extreme_step(lo, t, range_period, -1.0, j0, lo_buf, lo_prefix, min_out[t, j0:j1])
            old = max(t - volume_period + 1, 0)
            vr, co, vo = v[t, j0:j1], c[old, j0:j1], v[old, j0:j1]
            for i in range(w):  # in float64, as numpy's close * volume on float64
                dv_new[i] = np.float64(cr[i]) * np.float64(vr[i])
                dv_old[i] = np.float64(co[i]) * np.float64(vo[i])
            _sma_step(dv_new, dv_old, dv_total, dv_bad, dv_out[t, j0:j1], fv, t >= volume_period - 1)
