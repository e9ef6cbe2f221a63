"""An independent scalar transcription of Bjerksund-Stensland (2002) for tests.

Written from E. G. Haug, "The Complete Guide to Option Pricing Formulas" (2nd ed., section 3.7.4:
phi, ksi and the call; puts by the put-call transformation P(S, X, T, r, b) = C(X, S, T, r - b, -b)),
with math.erf and scipy's bivariate normal (Genz's adaptive integration), no code shared with
engine.options.  Slow (one contract at a time): for checking, not for use.
"""

from __future__ import annotations

import math

from scipy.stats import multivariate_normal


def _cnd(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _cbnd(a: float, b: float, rho: float) -> float:
    return float(multivariate_normal.cdf([a, b], mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]],
                                         abseps=1e-13, releps=1e-13))


def _bsm(call: bool, s: float, x: float, t: float, r: float, b: float, v: float) -> float:
    d1 = (math.log(s / x) + (b + v * v / 2) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    if call:
        return s * math.exp((b - r) * t) * _cnd(d1) - x * math.exp(-r * t) * _cnd(d2)
    return x * math.exp(-r * t) * _cnd(-d2) - s * math.exp((b - r) * t) * _cnd(-d1)


def _phi(s, t, gamma, h, i, r, b, v):
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1) * v * v) * t
    d = -(math.log(s / h) + (b + (gamma - 0.5) * v * v) * t) / (v * math.sqrt(t))
    kappa = 2 * b / (v * v) + 2 * gamma - 1
    return math.exp(lam) * s**gamma * (_cnd(d) - (i / s) ** kappa * _cnd(d - 2 * math.log(i / s) / (v * math.sqrt(t))))


def _ksi(s, t2, gamma, h, i2, i1, t1, r, b, v):
    drift = b + (gamma - 0.5) * v * v
    e1 = (math.log(s / i1) + drift * t1) / (v * math.sqrt(t1))
    e2 = (math.log(i2**2 / (s * i1)) + drift * t1) / (v * math.sqrt(t1))
    e3 = (math.log(s / i1) - drift * t1) / (v * math.sqrt(t1))
    e4 = (math.log(i2**2 / (s * i1)) - drift * t1) / (v * math.sqrt(t1))
    f1 = (math.log(s / h) + drift * t2) / (v * math.sqrt(t2))
    f2 = (math.log(i2**2 / (s * h)) + drift * t2) / (v * math.sqrt(t2))
    f3 = (math.log(i1**2 / (s * h)) + drift * t2) / (v * math.sqrt(t2))
    f4 = (math.log(s * i1**2 / (h * i2**2)) + drift * t2) / (v * math.sqrt(t2))
    rho = math.sqrt(t1 / t2)
    lam = -r + gamma * b + 0.5 * gamma * (gamma - 1) * v * v
    kappa = 2 * b / (v * v) + (2 * gamma - 1)
    return math.exp(lam * t2) * s**gamma * (
        _cbnd(-e1, -f1, rho) - (i2 / s) ** kappa * _cbnd(-e2, -f2, rho)
        - (i1 / s) ** kappa * _cbnd(-e3, -f3, -rho) + (i1 / i2) ** kappa * _cbnd(-e4, -f4, -rho))


def _call(s: float, x: float, t: float, r: float, b: float, v: float) -> float:
    if b >= r:  # never exercised early
        return _bsm(True, s, x, t, r, b, v)
    t1 = 0.5 * (math.sqrt(5) - 1) * t
    beta = (0.5 - b / v**2) + math.sqrt((b / v**2 - 0.5) ** 2 + 2 * r / v**2)
    b_inf = beta / (beta - 1) * x
    b_0 = max(x, r / (r - b) * x)
    ht1 = -(b * t1 + 2 * v * math.sqrt(t1)) * x**2 / ((b_inf - b_0) * b_0)
    ht2 = -(b * t + 2 * v * math.sqrt(t)) * x**2 / ((b_inf - b_0) * b_0)
    i1 = b_0 + (b_inf - b_0) * (1 - math.exp(ht1))
    i2 = b_0 + (b_inf - b_0) * (1 - math.exp(ht2))
    if s >= i2:
        return s - x
    a1 = (i1 - x) * i1 ** (-beta)
    a2 = (i2 - x) * i2 ** (-beta)
    args = (r, b, v)
    return (a2 * s**beta - a2 * _phi(s, t1, beta, i2, i2, *args)
            + _phi(s, t1, 1, i2, i2, *args) - _phi(s, t1, 1, i1, i2, *args)
            - x * _phi(s, t1, 0, i2, i2, *args) + x * _phi(s, t1, 0, i1, i2, *args)
            + a1 * _phi(s, t1, beta, i1, i2, *args) - a1 * _ksi(s, t, beta, i1, i2, i1, t1, *args)
            + _ksi(s, t, 1, i1, i2, i1, t1, *args) - _ksi(s, t, 1, x, i2, i1, t1, *args)
            - x * _ksi(s, t, 0, i1, i2, i1, t1, *args) + x * _ksi(s, t, 0, x, i2, i1, t1, *args))


def bs2002(call: bool, s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    """American price per share by Bjerksund-Stensland 2002 (continuous dividend yield q)."""
    b = r - q
    return _call(s, k, t, r, b, v) if call else _call(k, s, t, r - b, -b, v)
