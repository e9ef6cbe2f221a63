"""Black-Scholes-Merton implied volatility (European exercise), vectorised with numpy.

Same conventions as ``engine.options.european``.  ``implied_vol_with_reasons`` says, per quote, why
there is no volatility when there is none (``IV_REASONS``).
"""

from __future__ import annotations

import numpy as np

from engine.options.european import _arrays
from engine.options.normal import erfcx_nonneg as _erfcx_nonneg

__all__ = ["IV_REASONS", "implied_vol", "implied_vol_reasons", "implied_vol_with_reasons"]

_SQRT_HALF = 0.7071067811865475244008444

# --------------------------------------------------------------------------- implied volatility
#
# The solver follows the structure of P. Jäckel, "Let's Be Rational" (Wilmott, January 2015):
# prices are normalised to an out-of-the-money call b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)
# with x = ln(F/K) <= 0 and s = sigma * sqrt(T); the root is bracketed by four segments around the
# inflection point s_c = sqrt(2|x|), the initial guess comes from a rational cubic interpolation of a
# transformed price, and a few third-order Householder steps on a segment-specific objective finish
# it.  Everything is vectorised: each segment is solved on a compact array, and only the elements
# that have not converged take another step.

IV_REASONS = (
    "ok",
    "nonfinite_input",       # price, S, K, T, r or q is NaN or infinite
    "nonpositive_input",     # S <= 0 or K <= 0
    "T<=0",                  # expired or expiring now: no time value to invert
    "nonpositive_price",     # price <= 0
    "below_intrinsic",       # price below the discounted forward intrinsic value by more than rounding
    "above_upper_bound",     # call >= S e^{-qT} or put >= K e^{-rT}
    "no_information",        # time value within rounding, or sigma not pinned down in float64 (see implied_vol)
    "no_convergence",        # safeguarded iteration did not converge (not expected; reported not hidden)
)
_OK, _NONFINITE, _NONPOS_IN, _T_NONPOS, _NONPOS_PRICE, _BELOW, _ABOVE, _NOINFO, _NOCONV = range(9)
_REASON_ARRAY = np.array(IV_REASONS)

_EPS = np.finfo(np.float64).eps
_SQRT_2PI = 2.5066282746310002
_SQRT_3 = 1.7320508075688772
_TWO_PI_OVER_SQRT_27 = 1.2091995761561452
_SQRT_PI_OVER_2 = 1.2533141373155003
_PI_OVER_6 = 0.5235987755982988
_TINY_PRICE = 1e-290         # normalised prices below this are subnormal territory
_STEP_TOL = 1e-3             # see _iterate: a Householder(3) step of relative size d leaves ~10 d^4
_MAX_ITER = 60               # safety cap; typical quotes need 1-2 steps, bisection fallbacks a few more
_RC_MIN = -(1.0 - np.sqrt(_EPS))
_RC_MAX = 2.0 / (_EPS * _EPS)


# Acklam's inverse normal cdf (relative error < 1.2e-9): only used for initial guesses.
_IA = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
       -3.066479806614716e01, 2.506628277459239e00)
_IB = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
       -1.328068155288572e01)
_IC = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
       4.374664141464968e00, 2.938163982698783e00)
_ID = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def _norm_ppf_lower(p: np.ndarray) -> np.ndarray:
    """Inverse normal cdf for 0 < p <= 0.5 (values outside give NaN-free garbage; callers clip)."""
    out = np.empty_like(p)
    tail = p < 0.02425
    if tail.any():
        q = np.sqrt(-2.0 * np.log(p[tail]))
        out[tail] = ((((((_IC[0] * q + _IC[1]) * q + _IC[2]) * q + _IC[3]) * q + _IC[4]) * q + _IC[5])
                     / ((((_ID[0] * q + _ID[1]) * q + _ID[2]) * q + _ID[3]) * q + 1.0))
    body = ~tail
    if body.any():
        q = p[body] - 0.5
        r = q * q
        out[body] = ((((((_IA[0] * r + _IA[1]) * r + _IA[2]) * r + _IA[3]) * r + _IA[4]) * r + _IA[5]) * q
                     / (((((_IB[0] * r + _IB[1]) * r + _IB[2]) * r + _IB[3]) * r + _IB[4]) * r + 1.0))
    return out


def _rc_interp(v, v_l, v_r, y_l, y_r, d_l, d_r, r):
    """Rational cubic interpolation (Delbourgo & Gregory 1985) with control parameter r."""
    h = v_r - v_l
    t = (v - v_l) / h
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    cubic = ((y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2
              + y_l * omt2 * omt) / (1.0 + (r - 3.0) * t * omt))
    linear = y_r * t + y_l * omt
    out = np.where(r >= _RC_MAX, linear, cubic)
    return np.where(np.abs(h) > 0, out, 0.5 * (y_l + y_r))


def _rc_min_control(d_l, d_r, slope, prefer_shape: bool):
    """Smallest control parameter keeping the interpolant monotone/convex where the data are."""
    monotonic = (d_l * slope >= 0) & (d_r * slope >= 0)
    convex = (d_l <= slope) & (slope <= d_r)
    concave = (d_l >= slope) & (slope >= d_r)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r1 = np.full_like(slope, -np.finfo(np.float64).max)
        r1 = np.where(monotonic & (np.abs(slope) >= tiny), (d_r + d_l) / slope, r1)
        if prefer_shape:
            r1 = np.where(monotonic & (np.abs(slope) < tiny), _RC_MAX, r1)
        s_m_dl = slope - d_l
        dr_m_s = d_r - slope
        ok = (np.abs(s_m_dl) >= tiny) & (np.abs(dr_m_s) >= tiny)
        r2_val = np.maximum(np.abs((d_r - d_l) / dr_m_s), np.abs((d_r - d_l) / s_m_dl))
        r2 = np.full_like(slope, -np.finfo(np.float64).max)
        cc = convex | concave
        r2 = np.where(cc & ok, r2_val, r2)
        if prefer_shape:
            r2 = np.where(cc & ~ok, _RC_MAX, r2)
            r2 = np.where(~cc & monotonic, _RC_MAX, r2)
    r = np.maximum(_RC_MIN, np.maximum(r1, r2))
    return np.where(monotonic | convex | concave, r, _RC_MIN)


def _rc_control(v_l, v_r, y_l, y_r, d_l, d_r, second, at_left: bool, prefer_shape: bool):
    """Control parameter matching a second derivative at one end, kept shape preserving."""
    h = v_r - v_l
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = 0.5 * h * second + (d_r - d_l)
        den = ((y_r - y_l) / h - d_l) if at_left else (d_r - (y_r - y_l) / h)
        r = np.where(np.abs(den) < tiny, np.where(num > 0, _RC_MAX, _RC_MIN), num / den)
        r = np.where(np.abs(num) < tiny, 0.0, r)
        r = np.where(np.isfinite(r), r, _RC_MIN)
        r_min = _rc_min_control(d_l, d_r, (y_r - y_l) / h, prefer_shape)
    return np.maximum(r, r_min)


def _normalised_call(x, s, bmax):
    """b(x, s) for x <= 0 plus the pieces the iterations reuse (vectorised)."""
    h = x / s
    d1 = h + 0.5 * s
    d2 = d1 - s
    r1 = _erfcx_nonneg(np.abs(d1) * _SQRT_HALF)
    r2 = _erfcx_nonneg(-d2 * _SQRT_HALF)
    expo = -0.5 * h * h - 0.125 * s * s          # ln(sqrt(2 pi) b'(s)), shared by both terms
    e = np.exp(expo)
    b = np.where(d1 < 0, 0.5 * e * (r1 - r2), bmax - 0.5 * e * (r1 + r2))
    return b, e * (1.0 / _SQRT_2PI), r1, r2, expo, d1


def _householder(newton, halley, hh3, s):
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
    ds = np.where(np.isfinite(ds), ds, newton)
    return np.maximum(ds, -0.5 * s)


def _iterate(kind: int, x, beta, bmax, s, lo, hi):
    """Safeguarded Householder(3) on one objective; returns (s, converged).

    Works on compacted arrays: finished elements are written out and dropped, so each step only
    touches what is still iterating (and nothing is gathered while everything still is).

    Convergence is fourth order: a step of relative size d leaves a relative error of about 10 d^4
    (measured over x in [-10, 0], s in [1e-3, 10]), so a step below ``_STEP_TOL`` = 1e-3 is the last
    one (error ~1e-11, below the 1e-8 round-trip requirement by three orders of magnitude).  Most quotes
    take one or two steps from the rational-cubic initial guess.
    """
    n = s.size
    s_out = np.array(s, dtype=np.float64, copy=True)
    converged = np.zeros(n, dtype=bool)
    if n == 0:
        return s_out, converged
    idx = np.arange(n)
    xa, ba, bm = x, beta, bmax
    sa = s_out.copy()
    loa = np.array(lo, dtype=np.float64, copy=True)
    hia = np.array(hi, dtype=np.float64, copy=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        lb = np.log(ba)
        lr = np.log(bm - ba) if kind == 2 else None
    for _ in range(_MAX_ITER):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            inv_s = 1.0 / sa
            h = xa * inv_s
            hs = h * inv_s
            t = h * hs - 0.25 * sa                         # b''/b'
            t3 = t * t - 3.0 * hs * hs - 0.25              # b'''/b'
            d1 = h + 0.5 * sa
            r1 = _erfcx_nonneg(np.abs(d1) * _SQRT_HALF)
            r2 = _erfcx_nonneg((0.5 * sa - h) * _SQRT_HALF)   # -d2 >= 0
            expo = -0.5 * h * h - 0.125 * sa * sa
            if kind == 0:
                # g(s) = 1/ln(b) - 1/ln(beta): nearly linear in the far lower tail (Jäckel).
                diff = r1 - r2
                ln_b = expo + np.log(0.5 * diff)
                bpob = 2.0 / (_SQRT_2PI * diff)             # b'/b without forming b
                newton = (lb - ln_b) * ln_b / lb / bpob
                k = 1.0 + 2.0 / ln_b
                halley = t - bpob * k
                hh3 = t3 + 2.0 * bpob * bpob * (1.0 + 3.0 / ln_b * (1.0 + 1.0 / ln_b)) - 3.0 * t * bpob * k
                above = ln_b > lb
                bad = ~(diff > 0)
            elif kind == 1:
                e = np.exp(expo)
                half_e = 0.5 * e
                b = np.where(d1 < 0, half_e * (r1 - r2), bm - half_e * (r1 + r2))
                newton = (ba - b) / (e * (1.0 / _SQRT_2PI))
                halley = t
                hh3 = t3
                above = b > ba
                bad = ~(e > 0)
            else:
                # g(s) = ln(bmax - beta) - ln(bmax - b): tames the flat top as b -> bmax.
                summ = r1 + r2
                e = np.exp(expo)
                right = d1 >= 0
                room = np.where(right, 0.5 * e * summ, bm - 0.5 * e * (r1 - r2))
                ln_gap = np.where(right, expo + np.log(0.5 * summ), np.log(room))
                gp = np.where(right, 2.0 / (_SQRT_2PI * summ), e * (1.0 / _SQRT_2PI) / room)
                g = lr - ln_gap
                newton = -g / gp
                halley = t + gp
                hh3 = t3 + gp * (2.0 * gp + 3.0 * t)
                above = ln_gap < lr
                bad = ~np.isfinite(g) | ~(gp > 0)
            hia = np.where(above, np.minimum(hia, sa), hia)
            loa = np.where(above, loa, np.maximum(loa, sa))
            ds = _householder(newton, halley, hh3, sa)
            s_new = sa + ds
            done = np.isfinite(ds) & ~bad & (np.abs(ds) <= _STEP_TOL * sa)
            outside = ~((s_new > loa) & (s_new < hia)) | bad | ~np.isfinite(s_new)
            fix = outside & ~done
            if fix.any():
                bisect = np.where(np.isfinite(hia), 0.5 * (loa + hia), 2.0 * np.maximum(sa, loa))
                s_new = np.where(fix, bisect, s_new)
            # the bracket collapsing to rounding also ends the search (the root is inside it)
            done |= (hia - loa) <= 4.0 * _EPS * hia
        sa = s_new
        if done.all():
            s_out[idx] = sa
            converged[idx] = True
            return s_out, converged
        if done.any():
            fin = idx[done]
            s_out[fin] = sa[done]
            converged[fin] = True
            keep = ~done
            idx, xa, ba, bm, sa, loa, hia, lb = (a[keep] for a in (idx, xa, ba, bm, sa, loa, hia, lb))
            if lr is not None:
                lr = lr[keep]
    s_out[idx] = sa
    return s_out, converged


def _normalised_implied_s(x: np.ndarray, beta: np.ndarray):
    """Solve b(x, s) = beta for s > 0, with x <= 0 and 0 < beta < exp(x/2). Returns (s, converged)."""
    n = x.size
    if n == 0:
        return np.full(0, np.nan), np.zeros(0, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ax = -x
        bmax = np.exp(0.5 * x)
        sc = np.sqrt(2.0 * ax)
        bc = 0.5 * bmax * (1.0 - _erfcx_nonneg(np.sqrt(ax)))     # b at the inflection point s_c
        vc = bmax * (1.0 / _SQRT_2PI)                             # b'(s_c)
        lower = beta < bc
        # where the tangent at the inflection point reaches 0 (s_l) or b_max (s_h)
        s_a = np.where(lower, sc - bc / vc, sc + (bmax - bc) / vc)
        b_a, v_a, *_ = _normalised_call(x, np.where(s_a > 0, s_a, 1.0), bmax)
        b_a = np.where(s_a > 0, b_a, 0.0)
        seg = np.where(lower, np.where(beta < b_a, 0, 1),
                       np.where(beta <= b_a, 2, np.where(beta > 0.5 * bmax, 4, 3))).astype(np.int8)
    # Sort once by segment so every segment below works on contiguous slices (no gathers).
    order = np.argsort(seg, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(seg, minlength=5))])
    xs, bs, bms, axs = x[order], beta[order], bmax[order], ax[order]
    scs, bcs, vcs, sas, bas, vas = sc[order], bc[order], vc[order], s_a[order], b_a[order], v_a[order]
    s_sorted = np.full(n, np.nan)
    c_sorted = np.zeros(n, dtype=bool)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for k in range(5):
            sl = slice(bounds[k], bounds[k + 1])
            if sl.start == sl.stop:
                continue
            xk, bk, bmk, sck, bck, vck = xs[sl], bs[sl], bms[sl], scs[sl], bcs[sl], vcs[sl]
            sak, bak, vak = sas[sl], bas[sl], vas[sl]
            if k == 0:
                # lowest: interpolate f = (2 pi / sqrt 27)|x| N(-z)^3, z = |x|/(sqrt3 s), as a function of beta
                axk = axs[sl]
                z = axk / (_SQRT_3 * sak)
                y = z * z
                mills = _SQRT_PI_OVER_2 * _erfcx_nonneg(z * _SQRT_HALF)   # N(-z)/phi(z)
                cdf = mills * np.exp(-0.5 * y) * (1.0 / _SQRT_2PI)
                f_l = _TWO_PI_OVER_SQRT_27 * axk * cdf**3
                fp_l = y * mills * mills * np.exp(0.125 * sak * sak)
                fpp_l = (_PI_OVER_6 * y / (sak**3) * cdf
                         * (8.0 * _SQRT_3 * sak * axk + (3.0 * sak * sak * (sak * sak - 8.0) - 8.0 * xk * xk) * mills)
                         * np.exp(2.0 * y + 0.25 * sak * sak))
                zeros = np.zeros_like(bk)
                ones = np.ones_like(bk)
                r = _rc_control(zeros, bak, zeros, f_l, ones, fp_l, fpp_l, at_left=False, prefer_shape=True)
                f = _rc_interp(bk, zeros, bak, zeros, f_l, ones, fp_l, r)
                tq = bk / bak
                f = np.where(f > 0, f, (f_l * tq + bak * (1.0 - tq)) * tq)
                u = np.clip(np.cbrt(f / (_TWO_PI_OVER_SQRT_27 * axk)), 1e-300, 0.5)
                s0 = np.abs(axk / (_SQRT_3 * _norm_ppf_lower(u)))
                s0 = np.where((s0 > 0) & (s0 < sak), s0, 0.5 * sak)
                kind, lo, hi = 0, zeros, sak
            elif k == 1:
                # lower middle: rational cubic for s(beta) on [b_l, b_c], zero curvature at the inflection
                r = _rc_control(bak, bck, sak, sck, 1.0 / vak, 1.0 / vck, np.zeros_like(bk), at_left=False,
                                prefer_shape=False)
                s0 = _rc_interp(bk, bak, bck, sak, sck, 1.0 / vak, 1.0 / vck, r)
                s0 = np.where((s0 > sak) & (s0 < sck), s0, 0.5 * (sak + sck))
                kind, lo, hi = 1, sak, sck
            elif k == 2:
                # upper middle: rational cubic on [b_c, b_h]
                r = _rc_control(bck, bak, sck, sak, 1.0 / vck, 1.0 / vak, np.zeros_like(bk), at_left=True,
                                prefer_shape=False)
                s0 = _rc_interp(bk, bck, bak, sck, sak, 1.0 / vck, 1.0 / vak, r)
                s0 = np.where((s0 > sck) & (s0 < sak), s0, 0.5 * (sck + sak))
                kind, lo, hi = 1, sck, sak
            else:
                # top: interpolate f = N(-s/2) between b_h and b_max, where f(b_max) = 0, f'(b_max) = -1/2
                f_h = 0.5 * _erfcx_nonneg(0.5 * sak * _SQRT_HALF) * np.exp(-0.125 * sak * sak)
                w = (xk / sak) ** 2
                fp_h = -0.5 * np.exp(0.5 * w)
                fpp_h = _SQRT_PI_OVER_2 * np.exp(w + 0.125 * sak * sak) * w / sak
                half = np.full_like(bk, -0.5)
                zeros = np.zeros_like(bk)
                r = _rc_control(bak, bmk, f_h, zeros, fp_h, half, fpp_h, at_left=True, prefer_shape=True)
                f = _rc_interp(bk, bak, bmk, f_h, zeros, fp_h, half, r)
                hgt = bmk - bak
                tq = (bk - bak) / hgt
                f = np.where(f > 0, f, (f_h * (1.0 - tq) + 0.5 * hgt * tq) * (1.0 - tq))
                s0 = -2.0 * _norm_ppf_lower(np.clip(f, 1e-300, 0.5))
                s0 = np.where(s0 > sak, s0, 2.0 * sak)
                # beta > b_max / 2: objective ln(b_max - beta) - ln(b_max - b); else b - beta
                kind, lo, hi = (2 if k == 4 else 1), sak, np.full_like(bk, np.inf)
            s_k, c_k = _iterate(kind, xk, bk, bmk, s0, lo, hi)
            s_sorted[sl] = s_k
            c_sorted[sl] = c_k
    s_out = np.empty(n)
    c_out = np.empty(n, dtype=bool)
    s_out[order] = s_sorted
    c_out[order] = c_sorted
    return s_out, c_out


def _take(a: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return a if idx is None else a[idx]


def _implied_vol_core(price, S, K, T, r, q, is_call, resolution):
    price, S, K, T, r, q, call = _arrays(price, S, K, T, r, q, is_call)
    shape = price.shape
    price, S, K, T, r, q, call = (a.ravel() for a in (price, S, K, T, r, q, call))
    n = price.size
    code = np.zeros(n, dtype=np.int8)
    vol = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        finite = (np.isfinite(price) & np.isfinite(S) & np.isfinite(K) & np.isfinite(T)
                  & np.isfinite(r) & np.isfinite(q) & np.isfinite(call))
        valid = finite & (S > 0) & (K > 0) & (T > 0) & (price > 0)
    if not valid.all():
        code = np.select([~finite, (S <= 0) | (K <= 0), T <= 0, price <= 0],
                         [_NONFINITE, _NONPOS_IN, _T_NONPOS, _NONPOS_PRICE], _OK).astype(np.int8)
        idx = np.flatnonzero(valid)
    else:
        idx = None  # the common case: no gathers at all
    if idx is not None and idx.size == 0:
        return _shape_result(vol, code, shape)
    p_, S_, K_, T_, r_, q_ = (_take(a, idx) for a in (price, S, K, T, r, q))
    c_ = _take(call, idx) != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        carry = (r_ - q_) * T_
        x = np.log(S_ / K_) + carry
        fwd = S_ * np.exp(carry)
        undisc = p_ * np.exp(r_ * T_)                      # undiscounted (forward) price
        parity = np.where(c_, fwd - K_, K_ - fwd)           # forward intrinsic, signed
        intrinsic = np.maximum(parity, 0.0)
        itm = parity > 0
        # A price within rounding of the intrinsic value has no time value we could measure:
        # 'no_information'; clearly below it is 'below_intrinsic' (a bad quote).
        rounding = (4.0 * _EPS) * np.where(itm, np.maximum(fwd, K_), undisc)
        root_fk = np.sqrt(fwd * K_)
        beta = np.where(itm, undisc - parity, undisc) / root_fk   # out-of-the-money time value, normalised
        xn = -np.abs(x)
        sub = np.select(
            [undisc < intrinsic - rounding, undisc <= intrinsic + rounding, undisc >= np.where(c_, fwd, K_),
             ~(beta > 0), beta >= np.exp(0.5 * xn), beta < _TINY_PRICE],
            [_BELOW, _NOINFO, _ABOVE, _NOINFO, _ABOVE, _NOINFO], _OK).astype(np.int8)
        good = sub == 0
        gidx = None if good.all() else np.flatnonzero(good)
        xg, bg = _take(xn, gidx), _take(beta, gidx)
        s, conv = _normalised_implied_s(xg, bg)
        sqrt_t = np.sqrt(_take(T_, gidx))
        sig = s / sqrt_t
        # How far sigma could move without the price changing at float64 resolution: rounding of the
        # price (and, in the money, of the parity term F - K) divided by the vega.
        magnitude = _take(undisc / root_fk + np.where(itm, np.exp(-0.5 * xn), 0.0), gidx)
        vega_n = np.exp(-0.5 * (xg / s) ** 2 - 0.125 * s * s) * (1.0 / _SQRT_2PI)
        uncertainty = (4.0 * _EPS) * magnitude / (vega_n * sqrt_t)
        gcode = np.where(~conv | ~(sig > 0) | ~np.isfinite(sig), _NOCONV,
                         np.where(uncertainty > resolution, _NOINFO, _OK)).astype(np.int8)
        sig = np.where(gcode == _OK, sig, np.nan)
    if gidx is None:
        sub = gcode
        v = sig
    else:
        sub[gidx] = gcode
        v = np.full(sub.size, np.nan)
        v[gidx] = sig
    if idx is None:
        return _shape_result(v, sub, shape)
    vol[idx] = v
    code[idx] = sub
    return _shape_result(vol, code, shape)


def _shape_result(vol, code, shape):
    vol = vol.reshape(shape)
    code = code.reshape(shape)
    return (vol if vol.ndim else vol[()]), code


def implied_vol(price, S, K, T, r, q, is_call, *, resolution: float = 1e-9) -> np.ndarray:
    """Black-Scholes-Merton implied volatility; NaN where it does not exist or is not determined.

    NaN (never an exception) where inputs are non-finite or non-positive, T <= 0, the price is at or
    below the discounted forward intrinsic value or at or above the upper bound (S e^{-qT} for calls,
    K e^{-rT} for puts), or where the price carries no information about sigma at double precision:
    when rounding of the price (about 4 ulp of its magnitude, plus of F and K in the money) divided by
    the vega exceeds ``resolution`` in sigma.  ``implied_vol_reasons`` says which of these applied.
    Everything else converges to ~1e-12 relative (4th-order Householder on Jäckel's objectives).
    """
    return _implied_vol_core(price, S, K, T, r, q, is_call, resolution)[0]


def implied_vol_reasons(price, S, K, T, r, q, is_call, *, resolution: float = 1e-9) -> np.ndarray:
    """Array of reason strings (``IV_REASONS``) matching ``implied_vol`` elementwise: 'ok' or why NaN."""
    return _REASON_ARRAY[_implied_vol_core(price, S, K, T, r, q, is_call, resolution)[1]]


def implied_vol_with_reasons(price, S, K, T, r, q, is_call, *, resolution: float = 1e-9):
    """Both at once: (implied vols, reason strings)."""
    vol, code = _implied_vol_core(price, S, K, T, r, q, is_call, resolution)
    return vol, _REASON_ARRAY[code]
