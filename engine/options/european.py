"""European options under Black-Scholes-Merton: prices and analytic greeks, vectorised with numpy.

Conventions (all inputs broadcast against each other, any shapes):
- ``S`` spot, ``K`` strike, ``T`` time to expiry in years (calendar days / 365),
- ``r`` risk-free rate and ``q`` dividend yield, both continuously compounded decimals,
- ``sigma`` volatility as a decimal (0.25 = 25%), ``is_call`` bool (scalar or array).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.options.normal import norm_cdf, norm_pdf

__all__ = ["Greeks", "bsm_price", "greeks"]



def _arrays(*values):
    return np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))


def bsm_price(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """European option price under BSM with continuous dividend yield.

    T == 0 gives the intrinsic value, sigma == 0 (T > 0) the discounted forward intrinsic value.
    Negative T or sigma, non-positive S or K, or non-finite inputs give NaN.
    """
    S, K, T, r, q, sigma, call = _arrays(S, K, T, r, q, sigma, is_call)
    theta = np.where(call != 0, 1.0, -1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        disc = np.exp(-r * T)
        fwd = S * np.exp((r - q) * T)
        sd = sigma * np.sqrt(T)
        d1 = (np.log(fwd / K) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        price = disc * theta * (fwd * norm_cdf(theta * d1) - K * norm_cdf(theta * d2))
        degenerate = sd == 0.0
        if degenerate.any():
            intrinsic_fwd = disc * np.maximum(theta * (fwd - K), 0.0)
            intrinsic_now = np.maximum(theta * (S - K), 0.0)
            price = np.where(degenerate, np.where(T == 0.0, intrinsic_now, intrinsic_fwd), price)
    bad = ~((S > 0) & (K > 0) & (T >= 0) & (sigma >= 0) & np.isfinite(S) & np.isfinite(K)
            & np.isfinite(T) & np.isfinite(r) & np.isfinite(q) & np.isfinite(sigma))
    price = np.where(bad, np.nan, price)
    return price if price.ndim else price[()]


class Greeks(NamedTuple):
    """Per one option (not per contract): multiply by 100 for a standard equity contract.

    delta: dV/dS; gamma: d2V/dS2; theta: dV per calendar day (annual theta / 365);
    vega: dV per 1 vol point (0.01 of sigma); rho: dV per 1 rate point (0.01 of r).
    """

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


def greeks(S, K, T, r, q, sigma, is_call) -> Greeks:
    """Analytic BSM greeks. NaN where T <= 0 or sigma <= 0 (undefined or degenerate) or inputs bad."""
    S, K, T, r, q, sigma, call = _arrays(S, K, T, r, q, sigma, is_call)
    is_c = call != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sqrt_t = np.sqrt(T)
        sd = sigma * sqrt_t
        d1 = (np.log(S / K) + (r - q) * T + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        div_disc = np.exp(-q * T)
        disc = np.exp(-r * T)
        pdf1 = norm_pdf(d1)
        n_d1 = norm_cdf(np.where(is_c, d1, -d1))  # N(d1) for calls, N(-d1) for puts
        n_d2 = norm_cdf(np.where(is_c, d2, -d2))
        sign = np.where(is_c, 1.0, -1.0)
        delta = sign * div_disc * n_d1
        gamma = div_disc * pdf1 / (S * sd)
        theta_year = (-S * div_disc * pdf1 * sigma / (2.0 * sqrt_t)
                      - sign * r * K * disc * n_d2 + sign * q * S * div_disc * n_d1)
        vega = S * div_disc * pdf1 * sqrt_t / 100.0
        rho = sign * K * T * disc * n_d2 / 100.0
    bad = ~((S > 0) & (K > 0) & (T > 0) & (sigma > 0) & np.isfinite(S) & np.isfinite(K)
            & np.isfinite(T) & np.isfinite(r) & np.isfinite(q) & np.isfinite(sigma))

    def clean(a):
        a = np.where(bad, np.nan, a)
        return a if a.ndim else a[()]

    return Greeks(clean(delta), clean(gamma), clean(theta_year / 365.0), clean(vega), clean(rho))


