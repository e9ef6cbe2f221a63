"""American options: Bjerksund-Stensland (2002) prices, greeks and implied volatility, vectorised.

US equity options are American.  Early exercise has value for puts (when r > 0) and for calls on a
dividend payer (q > 0); elsewhere (calls with q <= 0, puts with r <= 0) the American price equals the
European one and the exact Black-Scholes-Merton path is used (``early_exercise_matters``).

The approximation is P. Bjerksund and G. Stensland, "Closed form valuation of American options"
(2002): the exercise boundary is flat on [0, t1] and on [t1, T] with t1 = (sqrt(5) - 1) / 2 * T, and
the price is the value of that exercise strategy (a lower bound, accurate to a few cents per $100
strike for a year, far less for the 20-60 days we trade; the tests pin it against QuantLib).  Puts
come from the put-call transformation P(S, K, T, r, q) = C(K, S, T, q, r).  Same conventions as
``engine.options.european``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.options.european import Greeks, _arrays, bsm_price, greeks
from engine.options.impliedvol import IV_REASONS, _implied_vol_core
from engine.options.normal import bivariate_rule, bvn_cdf, ncdf

__all__ = [
    "american_greeks",
    "american_implied_vol",
    "american_implied_vol_with_reasons",
    "american_price",
    "american_valuation",
    "early_exercise_matters",
]

_T1_SHARE = 0.5 * (math.sqrt(5.0) - 1.0)
_RHO = math.sqrt(_T1_SHARE)          # corr of the Brownian motion at t1 and at T: sqrt(t1 / T)
_EPS = np.finfo(np.float64).eps
_REASON_ARRAY = np.array(IV_REASONS)
_OK, _NONFINITE, _NONPOS_IN, _T_NONPOS, _NONPOS_PRICE, _BELOW, _ABOVE, _NOINFO, _NOCONV = range(9)
_SIGMA_MIN = 1e-4                    # the bracket: implied vols outside [1e-4, 10] are not believed
_SIGMA_MAX = 10.0
_MAX_ITER = 60


def early_exercise_matters(is_call, r, q) -> np.ndarray:
    """Where the American value exceeds the European one: puts with r > 0, calls with q > 0."""
    call, r, q = _arrays(is_call, r, q)
    return np.where(call != 0, q > 0, r > 0)


# --------------------------------------------------------------------------- Bjerksund-Stensland 2002


@njit(nogil=True, cache=True, error_model="numpy")
def _phi(S, t, gamma, H, barrier, r, b, v):  # type: ignore[no-untyped-def]
    """Haug's phi(S, t, gamma, H, I) without its S^gamma factor (the caller folds that in)."""
    v2 = v * v
    sd = v * math.sqrt(t)
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v2) * t
    d = -(math.log(S / H) + (b + (gamma - 0.5) * v2) * t) / sd
    kappa = 2.0 * b / v2 + 2.0 * gamma - 1.0
    log_is = math.log(barrier / S)
    return math.exp(lam) * (ncdf(d) - math.exp(kappa * log_is) * ncdf(d - 2.0 * log_is / sd))


@njit(nogil=True, cache=True, error_model="numpy")
def _psi(S, T, gamma, H, I2, I1, t1, r, b, v, rp, rm):  # type: ignore[no-untyped-def]
    """Haug's psi (ksi) without its S^gamma factor: the two-period term with the bivariate normal
    (``rp``, ``rm``: the quadrature rules of +rho and -rho)."""
    v2 = v * v
    drift1 = (b + (gamma - 0.5) * v2) * t1
    drift = (b + (gamma - 0.5) * v2) * T
    sd1 = v * math.sqrt(t1)
    sd = v * math.sqrt(T)
    ln_s_i1 = math.log(S / I1)
    ln_2 = math.log(I2 * I2 / (S * I1))
    e1 = (ln_s_i1 + drift1) / sd1
    e2 = (ln_2 + drift1) / sd1
    e3 = (ln_s_i1 - drift1) / sd1
    e4 = (ln_2 - drift1) / sd1
    f1 = (math.log(S / H) + drift) / sd
    f2 = (math.log(I2 * I2 / (S * H)) + drift) / sd
    f3 = (math.log(I1 * I1 / (S * H)) + drift) / sd
    f4 = (math.log(S * I1 * I1 / (H * I2 * I2)) + drift) / sd
    lam = -r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v2
    kappa = 2.0 * b / v2 + 2.0 * gamma - 1.0
    return math.exp(lam * T) * (
        bvn_cdf(-e1, -f1, rp[0], rp[1], rp[2], rp[3])
        - math.exp(kappa * math.log(I2 / S)) * bvn_cdf(-e2, -f2, rp[0], rp[1], rp[2], rp[3])
        - math.exp(kappa * math.log(I1 / S)) * bvn_cdf(-e3, -f3, rm[0], rm[1], rm[2], rm[3])
        + math.exp(kappa * math.log(I1 / I2)) * bvn_cdf(-e4, -f4, rm[0], rm[1], rm[2], rm[3])
    )


@njit(nogil=True, cache=True, error_model="numpy")
def _bs2002_one(S, K, T, r, b, v, rp, rm):  # type: ignore[no-untyped-def]
    """American call, cost of carry b < r (so q = r - b > 0), T > 0, v > 0: one contract."""
    t1 = _T1_SHARE * T
    v2 = v * v
    beta = (0.5 - b / v2) + math.sqrt((b / v2 - 0.5) ** 2 + 2.0 * r / v2)
    b_inf = beta / (beta - 1.0) * K
    b_0 = max(K, r / (r - b) * K)
    span = b_inf - b_0
    h1 = -(b * t1 + 2.0 * v * math.sqrt(t1)) * K * K / (span * b_0)
    h2 = -(b * T + 2.0 * v * math.sqrt(T)) * K * K / (span * b_0)
    i1 = b_0 + span * -math.expm1(h1)
    i2 = b_0 + span * -math.expm1(h2)
    if i2 <= S:
        return S - K
    # alpha_i S^beta = (I_i - K) (S / I_i)^beta, formed in logs: I^-beta alone under/overflows
    a1 = (i1 - K) * math.exp(beta * math.log(S / i1))
    a2 = (i2 - K) * math.exp(beta * math.log(S / i2))
    return (a2 - a2 * _phi(S, t1, beta, i2, i2, r, b, v)
            + S * _phi(S, t1, 1.0, i2, i2, r, b, v) - S * _phi(S, t1, 1.0, i1, i2, r, b, v)
            - K * _phi(S, t1, 0.0, i2, i2, r, b, v) + K * _phi(S, t1, 0.0, i1, i2, r, b, v)
            + a1 * _phi(S, t1, beta, i1, i2, r, b, v) - a1 * _psi(S, T, beta, i1, i2, i1, t1, r, b, v, rp, rm)
            + S * _psi(S, T, 1.0, i1, i2, i1, t1, r, b, v, rp, rm)
            - S * _psi(S, T, 1.0, K, i2, i1, t1, r, b, v, rp, rm)
            - K * _psi(S, T, 0.0, i1, i2, i1, t1, r, b, v, rp, rm)
            + K * _psi(S, T, 0.0, K, i2, i1, t1, r, b, v, rp, rm))


@njit(nogil=True, cache=True, error_model="numpy")
def _bs2002_many(S, K, T, r, b, v, rp, rm):  # type: ignore[no-untyped-def]
    out = np.empty(S.shape[0])
    for i in range(S.shape[0]):
        out[i] = _bs2002_one(S[i], K[i], T[i], r[i], b[i], v[i], rp, rm)
    return out


_RULE_PLUS = bivariate_rule(_RHO)
_RULE_MINUS = bivariate_rule(-_RHO)


def _bs2002_call(S, K, T, r, b, v) -> np.ndarray:
    """American call, cost of carry b < r (so q = r - b > 0), T > 0, v > 0: flat arrays, same length.
    Compiled per contract (numba): a venue pricing a ten-contract book pays microseconds, not the
    thousand numpy calls of the array form."""
    args = [np.ascontiguousarray(x, dtype=np.float64) for x in (S, K, T, r, b, v)]
    return _bs2002_many(*args, _RULE_PLUS, _RULE_MINUS)


def american_price(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """American option price: Bjerksund-Stensland 2002 where early exercise matters, BSM elsewhere.

    Never below the European price or the intrinsic value.  T == 0 gives the intrinsic value,
    sigma == 0 the larger of intrinsic and the European (discounted forward intrinsic) value.  Bad
    inputs (non-positive S or K, negative T or sigma, non-finite) give NaN, as ``bsm_price`` does.
    """
    S, K, T, r, q, sigma, call = _arrays(S, K, T, r, q, sigma, is_call)
    shape = S.shape
    S, K, T, r, q, sigma, call = (a.ravel() for a in (S, K, T, r, q, sigma, call))
    is_c = call != 0
    euro = np.atleast_1d(bsm_price(S, K, T, r, q, sigma, is_c))
    intrinsic = np.maximum(np.where(is_c, S - K, K - S), 0.0)
    out = np.where(np.isfinite(euro), np.maximum(euro, intrinsic), euro)
    amer = np.flatnonzero(early_exercise_matters(is_c, r, q) & np.isfinite(euro) & (T > 0) & (sigma > 0))
    if amer.size:
        c = is_c[amer]
        s_, k_ = S[amer], K[amer]
        r_, q_ = r[amer], q[amer]
        # put-call transformation: P(S, K, T, r, q) = C(K, S, T, q, r), i.e. carry b' = q - r
        spot = np.where(c, s_, k_)
        strike = np.where(c, k_, s_)
        rate = np.where(c, r_, q_)
        carry = np.where(c, r_ - q_, q_ - r_)
        t_, v_ = T[amer], sigma[amer]
        bs = _bs2002_call(spot, strike, t_, rate, carry, v_)  # compiled: numpy's error state does not apply
        # a non-finite value (extreme inputs) keeps the European/intrinsic bound rather than NaN
        out[amer] = np.where(np.isfinite(bs), np.maximum(bs, out[amer]), out[amer])
    out = out.reshape(shape)
    return out if out.ndim else out[()]


# --------------------------------------------------------------------------- greeks


def american_valuation(S, K, T, r, q, sigma, is_call, *, with_rho: bool = True) -> tuple[np.ndarray, Greeks]:
    """``american_price`` and its greeks (same units as ``european.greeks``) in one pass.

    Analytic BSM where early exercise does not matter; elsewhere finite differences of the American
    price, all scenarios in one vectorised call (a chain has a few hundred contracts, where numpy's
    per-call overhead rivals the arithmetic): central in S (relative bump 1e-4) and sigma (1e-4
    relative), backward in T (the value 1e-5 years later, i.e. theta as time passes), central in r
    (1e-5) only ``with_rho`` (rho is NaN otherwise: chains carry no rho, and it costs two more prices).
    Rounding of the price (~1e-15 of it) stays far below these differences; results are clipped to the
    bounds every American option obeys (0 <= delta <= 1 calls, -1 <= delta <= 0 puts, gamma, vega >= 0).
    """
    S, K, T, r, q, sigma, call = _arrays(S, K, T, r, q, sigma, is_call)
    shape = S.shape
    S, K, T, r, q, sigma, call = (a.ravel() for a in (S, K, T, r, q, sigma, call))
    is_c = call != 0
    price = np.array(np.atleast_1d(american_price(S, K, T, r, q, sigma, is_c)), dtype=np.float64)
    g = greeks(S, K, T, r, q, sigma, is_c)
    delta, gamma, theta, vega, rho = (np.array(np.atleast_1d(a), dtype=np.float64) for a in g)
    if not with_rho:
        rho = np.full_like(delta, np.nan)
    amer = np.flatnonzero(early_exercise_matters(is_c, r, q) & np.isfinite(delta))
    if amer.size:
        s_, k_, t_, r_, q_, v_, c_ = (a[amer] for a in (S, K, T, r, q, sigma, is_c))
        base = price[amer]
        hs = 1e-4 * s_
        hv = 1e-4 * v_
        ht = np.minimum(1e-5, 0.5 * t_)
        hr = np.full_like(s_, 1e-5)
        bumps = [(s_ + hs, t_, r_, v_), (s_ - hs, t_, r_, v_), (s_, t_, r_, v_ + hv), (s_, t_, r_, v_ - hv),
                 (s_, t_ - ht, r_, v_)]
        if with_rho:
            bumps += [(s_, t_, r_ + hr, v_), (s_, t_, r_ - hr, v_)]
        m = len(bumps)
        spot, time, rate, vol = (np.concatenate([b[i] for b in bumps]) for i in range(4))
        px = american_price(spot, np.tile(k_, m), time, rate, np.tile(q_, m), vol, np.tile(c_, m)).reshape(m, -1)
        up, dn, v_up, v_dn, later = px[:5]
        d = (up - dn) / (2.0 * hs)
        delta[amer] = np.where(c_, np.clip(d, 0.0, 1.0), np.clip(d, -1.0, 0.0))
        gamma[amer] = np.maximum((up - 2.0 * base + dn) / (hs * hs), 0.0)
        vega[amer] = np.maximum((v_up - v_dn) / (2.0 * hv) / 100.0, 0.0)
        theta[amer] = (later - base) / ht / 365.0
        if with_rho:
            rho[amer] = (px[5] - px[6]) / (2.0 * hr) / 100.0

    def shaped(a):
        a = a.reshape(shape)
        return a if a.ndim else a[()]

    return shaped(price), Greeks(shaped(delta), shaped(gamma), shaped(theta), shaped(vega), shaped(rho))


def american_greeks(S, K, T, r, q, sigma, is_call, *, with_rho: bool = True) -> Greeks:
    """Greeks of ``american_price``; see ``american_valuation``."""
    return american_valuation(S, K, T, r, q, sigma, is_call, with_rho=with_rho)[1]


# --------------------------------------------------------------------------- implied volatility


def _american_vol_core(price, S, K, T, r, q, is_call, resolution):
    price, S, K, T, r, q, call = _arrays(price, S, K, T, r, q, is_call)
    shape = price.shape
    price, S, K, T, r, q, call = (a.ravel() for a in (price, S, K, T, r, q, call))
    is_c = call != 0
    # European first: exact where early exercise does not matter; elsewhere its input checks and
    # its volatility (an upper bound of the American one, as A(sigma) >= E(sigma)) seed the solve.
    euro_vol, euro_code = _implied_vol_core(price, S, K, T, r, q, is_c, resolution)
    vol = np.array(np.atleast_1d(euro_vol), dtype=np.float64).ravel()
    code = np.array(np.atleast_1d(euro_code), dtype=np.int8).ravel()
    amer = early_exercise_matters(is_c, r, q) & ~np.isin(code, (_NONFINITE, _NONPOS_IN, _T_NONPOS, _NONPOS_PRICE))
    idx = np.flatnonzero(amer)
    if idx.size:
        v, c = _solve_american(price[idx], S[idx], K[idx], T[idx], r[idx], q[idx], is_c[idx],
                               vol[idx], resolution)
        vol[idx] = v
        code[idx] = c
    vol = vol.reshape(shape)
    code = code.reshape(shape)
    return (vol if vol.ndim else vol[()]), code


def _solve_american(p, S, K, T, r, q, c, euro_vol, resolution):
    """Safeguarded secant on A(sigma) - p inside [_SIGMA_MIN, _SIGMA_MAX], started from the European
    volatility of the price less the early-exercise premium at the European volatility."""
    n = p.size
    vol = np.full(n, np.nan)
    code = np.zeros(n, dtype=np.int8)
    intrinsic = np.maximum(np.where(c, S - K, K - S), 0.0)
    upper = np.where(c, S, K)
    scale = np.maximum(S, K)
    rounding = 16.0 * _EPS * scale       # what the American formula itself resolves

    def amer(sig, sel):
        return american_price(S[sel], K[sel], T[sel], r[sel], q[sel], sig, c[sel])

    # the zero-volatility end, cheaply: an American price at or below the larger of intrinsic and the
    # European value at the smallest volatility carries no information about sigma
    floor = np.maximum(intrinsic, bsm_price(S, K, T, r, q, _SIGMA_MIN, c))
    code = np.select([p < intrinsic - rounding, p <= floor + rounding, p >= upper],
                     [_BELOW, _NOINFO, _ABOVE], _OK).astype(np.int8)
    live = np.flatnonzero(code == _OK)
    if live.size == 0:
        return vol, code
    pl = p[live]
    ev = euro_vol[live]
    has_ev = np.isfinite(ev)
    # first guess: the European vol of the price net of the premium the European vol implies
    s0 = np.where(has_ev, ev, 0.3)
    with np.errstate(invalid="ignore"):
        a0 = amer(s0, live)
        premium = a0 - bsm_price(S[live], K[live], T[live], r[live], q[live], s0, c[live])
        guess = np.atleast_1d(_implied_vol_core(pl - premium, S[live], K[live], T[live], r[live], q[live],
                                                c[live], resolution)[0])
    s = np.where(np.isfinite(guess) & (guess > _SIGMA_MIN) & (guess < _SIGMA_MAX), guess, s0)
    lo = np.full(live.size, _SIGMA_MIN)
    hi = np.full(live.size, _SIGMA_MAX)
    lo = np.where(has_ev & (a0 <= pl), np.maximum(lo, s0), lo)
    hi = np.where(has_ev & (a0 > pl), np.minimum(hi, s0), hi)
    f = amer(s, live) - pl
    # the first slope: the European vega (the American one is close and smaller deep in the money)
    slope = np.atleast_1d(greeks(S[live], K[live], T[live], r[live], q[live], s, c[live]).vega) * 100.0
    out_s = np.full(live.size, np.nan)
    out_slope = np.full(live.size, np.nan)
    done_mask = np.zeros(live.size, dtype=bool)
    idx = np.arange(live.size)
    for _ in range(_MAX_ITER):
        lo = np.where(f < 0, np.maximum(lo, s), lo)
        hi = np.where(f > 0, np.minimum(hi, s), hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = -f / slope
        s_new = s + step
        bad = ~np.isfinite(s_new) | (s_new <= lo) | (s_new >= hi) | ~(slope > 0)
        s_new = np.where(bad, 0.5 * (lo + hi), s_new)
        finished = (f == 0) | (~bad & (np.abs(step) <= 1e-11 * s)) | ((hi - lo) <= 4.0 * _EPS * hi)
        if finished.any():
            fin = idx[finished]
            out_s[fin] = np.where(f[finished] == 0, s[finished], s_new[finished])
            out_slope[fin] = slope[finished]
            done_mask[fin] = True
            keep = ~finished
            idx, s, s_new, f, lo, hi = (a[keep] for a in (idx, s, s_new, f, lo, hi))
            if idx.size == 0:
                break
        sel = live[idx]
        f_new = amer(s_new, sel) - p[sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (f_new - f) / (s_new - s)
        s, f = s_new, f_new
    got = done_mask & np.isfinite(out_s)
    # a price that moves less than its rounding over `resolution` of sigma does not pin sigma down.
    # The slope is measured at the solution with a central difference: the last secant slope is made of
    # two prices that can agree to the last bit once converged (0/0), which would call a well-pinned
    # price uninformative (seen with numpy 2.4's SIMD exp/log, where a 1-ulp change decides it).
    # Only a price the secant calls uncertain is measured again, so the common case costs nothing more.
    with np.errstate(divide="ignore", invalid="ignore"):
        uncertain = rounding[live] / np.abs(out_slope) > resolution
        recheck = uncertain & got
        uncertain[recheck] = rounding[live][recheck] / np.abs(
            _vega_at(amer, live, out_s, recheck, out_slope)[recheck]) > resolution
    # pinned at an end of the bracket: the price lies outside what [1e-4, 10] can produce
    at_lo = got & (out_s <= _SIGMA_MIN * (1.0 + 1e-9))
    at_hi = got & (out_s >= _SIGMA_MAX * (1.0 - 1e-9))
    sub = np.select([~got, at_lo, at_hi, uncertain], [_NOCONV, _NOINFO, _ABOVE, _NOINFO], _OK).astype(np.int8)
    vol[live] = np.where(sub == _OK, out_s, np.nan)
    code[live] = sub
    return vol, code


def _vega_at(amer, live: np.ndarray, sig: np.ndarray, got: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """dA/dsigma at ``sig`` by a central difference of relative step 1e-4 where ``got``, else ``fallback``."""
    slope = np.array(fallback, dtype=np.float64)
    at = np.flatnonzero(got)
    if at.size:
        h = 1e-4 * sig[at]
        with np.errstate(invalid="ignore"):
            up, down = amer(sig[at] + h, live[at]), amer(sig[at] - h, live[at])
        slope[at] = (np.atleast_1d(up) - np.atleast_1d(down)) / (2.0 * h)
    return slope


def american_implied_vol_with_reasons(price, S, K, T, r, q, is_call, *, resolution: float = 1e-9):
    """Implied volatility under ``american_price`` and the reason strings (``IV_REASONS``) per quote.

    Where early exercise does not matter this is exactly ``implied_vol_with_reasons``.  Elsewhere:
    'below_intrinsic' under max(S - K, 0) (calls) or max(K - S, 0) (puts) by more than rounding,
    'no_information' at (or within rounding of) the larger of intrinsic and the value at sigma = 1e-4,
    e.g. a deep in-the-money put trading at parity, where any low volatility fits, or where the price
    moves less than its rounding over ``resolution`` of sigma; 'above_upper_bound' at or above S (calls)
    or K (puts) or above the value at sigma = 10.  Converges to ~1e-11 relative.
    """
    vol, code = _american_vol_core(price, S, K, T, r, q, is_call, resolution)
    return vol, _REASON_ARRAY[code]


def american_implied_vol(price, S, K, T, r, q, is_call, *, resolution: float = 1e-9) -> np.ndarray:
    """``american_implied_vol_with_reasons`` without the reasons."""
    return _american_vol_core(price, S, K, T, r, q, is_call, resolution)[0]
