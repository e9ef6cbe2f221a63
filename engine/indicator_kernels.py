"""Compiled (numba) time loops behind :mod:`engine.indicators`; call those functions, not these.

Every kernel takes time-major C-contiguous (days x symbols) arrays and works on blocks of
``BLOCK`` adjacent symbols: one pass over the days per block, the inner loop over the block's
columns. A day's row segment of a block is a few cache lines, the rows a window looks back to
are still in L2, and the inner loop is written with selects instead of branches so LLVM
vectorises it across symbols. Blocks run in parallel (``prange``). Each column is computed on its
own: a column's values never depend on the others (tested), and a column that starts late
(leading NaNs) gets exactly the values it would get alone.

The arithmetic is TA-Lib's, operation for operation, in float64 whatever the input dtype, with
no fast-math: LLVM may not reorder the additions or fuse them into FMAs, so float64 results equal
TA-Lib to ~1e-15 relative (tested to 1e-9 on real data).

Compiled on first use and cached on disk (``cache=True``, in ``__pycache__``), one specialisation
per argument types (input dtype, output dtype, read-only or not).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 64  # symbols per block: 512 bytes of float64 a row; 300 rows of a block fit in L2

_NAN = np.nan


@njit(parallel=True, cache=True)
def sma_into(x: np.ndarray, period: int, out: np.ndarray) -> None:
    """out = SMA(x, period): a running float64 sum in TA-Lib's order (add the new value, read,
    subtract the oldest); NaNs are left out of the sum and counted, a window holding one is NaN."""
    days, n = x.shape
    fp = float(period)
    for b in prange((n + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        w = min(BLOCK, n - j0)
        total = np.zeros(w)
        bad = np.zeros(w)  # NaNs in the window, as a float so the loop stays all-double
        for t in range(days):
            xr = x[t, j0 : j0 + w]
            orow = out[t, j0 : j0 + w]
            for i in range(w):
                v = np.float64(xr[i])
                missing = v != v
                bad[i] += 1.0 if missing else 0.0
                total[i] += 0.0 if missing else v
            if t >= period - 1:
                xo = x[t - period + 1, j0 : j0 + w]
                for i in range(w):
                    orow[i] = total[i] / fp if bad[i] == 0.0 else _NAN
                    v = np.float64(xo[i])
                    missing = v != v
                    bad[i] -= 1.0 if missing else 0.0
                    total[i] -= 0.0 if missing else v
            else:
                for i in range(w):
                    orow[i] = _NAN


@njit(parallel=True, cache=True)
def atr_into(h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int, out: np.ndarray, keep: bool) -> None:
    """Wilder's ATR with TA-Lib's seeding, per column from its first complete bar f.

    TR_t = max(h_t, c_{t-1}) - min(lo_t, c_{t-1}) from f + 1 (bit-identical to TA-Lib's
    max-of-three-differences when high >= low); S = TR_{f+1} + ... + TR_{f+period} on day
    f + period, then S_t = S_{t-1} * (period - 1) / period + TR_t; ATR = S / period. A NaN
    after f carries forward, as in TA-Lib. ``keep``: out is (days x n); else out is (1 x n) and
    ends holding the last day.
    """
    days, n = h.shape
    fp = float(period)
    decay = (period - 1) / period
    for b in prange((n + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        w = min(BLOCK, n - j0)
        k = np.full(w, -1.0)  # bars since the column's first complete bar; -1 before it
        s = np.zeros(w)
        for t in range(days):
            hr = h[t, j0 : j0 + w]
            lr = lo[t, j0 : j0 + w]
            cr = c[t, j0 : j0 + w]
            pr = c[max(t - 1, 0), j0 : j0 + w]  # unused on day 0: nothing has started yet
            orow = out[t if keep else 0, j0 : j0 + w]
            for i in range(w):
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


@njit(parallel=True, cache=True)
def ema_into(x: np.ndarray, period: int, out: np.ndarray, keep: bool) -> None:
    """EMA with k = 2 / (period + 1), seeded per column with the mean of its first ``period``
    values (first value on day f + period - 1), then EMA_t = EMA_{t-1} * (1 - k) + x_t * k.
    ``keep`` as in :func:`atr_into`."""
    days, n = x.shape
    fp = float(period)
    alpha = 2.0 / (period + 1.0)  # TA-Lib's PER_TO_K
    beta = 1.0 - alpha
    for b in prange((n + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        w = min(BLOCK, n - j0)
        k = np.full(w, -1.0)  # values since the column's first; -1 before it
        acc = np.zeros(w)  # the seed's running sum, then the EMA
        for t in range(days):
            xr = x[t, j0 : j0 + w]
            orow = out[t if keep else 0, j0 : j0 + w]
            for i in range(w):
                v = np.float64(xr[i])
                kn = k[i] + 1.0 if k[i] >= 0.0 else (0.0 if v == v else -1.0)
                a = acc[i]
                a = a * beta + v * alpha if kn >= fp else (a + v if kn >= 0.0 else a)
                a = a / fp if kn == fp - 1.0 else a
                acc[i] = a
                k[i] = kn
                orow[i] = a if kn >= fp - 1.0 else _NAN


@njit(parallel=True, cache=True)
def extreme_into(x: np.ndarray, period: int, sign: float, out: np.ndarray) -> None:
    """Rolling max (sign = 1) or min (sign = -1) of the last ``period`` values, NaN while the
    window holds a NaN: van Herk / Gil-Werman, three comparisons a value whatever the period.

    Days are cut into segments of ``period`` (0..p-1, p..2p-1, ...). A window ending on day t
    is the tail of one segment (suffix extreme from t - p + 1, precomputed backwards) plus the
    head of the next (prefix extreme up to t, carried forwards). Comparisons only, so exact; the
    select keeps a NaN whichever side it is on.
    """
    days, n = x.shape
    for b in prange((n + BLOCK - 1) // BLOCK):
        j0 = b * BLOCK
        w = min(BLOCK, n - j0)
        suffix = np.empty((days, w), dtype=x.dtype)
        for t in range(days - 1, -1, -1):
            xr = x[t, j0 : j0 + w]
            sr = suffix[t]
            if (t + 1) % period == 0 or t == days - 1:
                for i in range(w):
                    sr[i] = xr[i]
            else:
                nxt = suffix[t + 1]
                for i in range(w):
                    a = xr[i]
                    z = nxt[i]
                    sr[i] = a if (sign * a > sign * z or a != a) else z
        prefix = np.empty(w, dtype=x.dtype)
        for t in range(days):
            xr = x[t, j0 : j0 + w]
            orow = out[t, j0 : j0 + w]
            if t % period == 0:
                for i in range(w):
                    prefix[i] = xr[i]
            else:
                for i in range(w):
                    a = xr[i]
                    z = prefix[i]
                    prefix[i] = a if (sign * a > sign * z or a != a) else z
            if t >= period - 1:
                sr = suffix[t - period + 1]
                for i in range(w):
                    a = sr[i]
                    z = prefix[i]
                    orow[i] = a if (sign * a > sign * z or a != a) else z
            else:
                for i in range(w):
                    orow[i] = _NAN
