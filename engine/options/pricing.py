"""Option pricing for the engine: one place that decides which model a contract gets.

US equity options are American.  ``option_price``, ``option_greeks`` and ``option_implied_vol_with_reasons``
use the Bjerksund-Stensland (2002) American model where early exercise has value (puts; calls on a dividend
payer) and the exact European Black-Scholes-Merton formulas elsewhere (calls without dividends), see
``engine.options.american``.  ``exercise="european"`` forces BSM (index options).

The models live in their own modules and are re-exported here, so ``from engine.options.pricing import
bsm_price, greeks, implied_vol, ...`` keeps working:

- ``engine.options.normal``: normal cdf/pdf, erfc, bivariate normal cdf;
- ``engine.options.european``: ``bsm_price``, ``greeks``, ``Greeks``;
- ``engine.options.impliedvol``: European implied volatility (``implied_vol``, ``IV_REASONS``, ...);
- ``engine.options.american``: ``american_price``, ``american_greeks``, ``american_implied_vol``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from engine.options.american import (
    american_greeks,
    american_implied_vol,
    american_implied_vol_with_reasons,
    american_price,
    american_valuation,
    early_exercise_matters,
)
from engine.options.european import Greeks, bsm_price, greeks
from engine.options.impliedvol import IV_REASONS, implied_vol, implied_vol_reasons, implied_vol_with_reasons
from engine.options.normal import bivariate_norm_cdf, erfc, norm_cdf, norm_pdf

__all__ = [
    "EXERCISE_STYLES",
    "IV_REASONS",
    "Exercise",
    "Greeks",
    "american_greeks",
    "american_implied_vol",
    "american_implied_vol_with_reasons",
    "american_price",
    "american_valuation",
    "bivariate_norm_cdf",
    "bsm_price",
    "early_exercise_matters",
    "erfc",
    "greeks",
    "implied_vol",
    "implied_vol_reasons",
    "implied_vol_with_reasons",
    "norm_cdf",
    "norm_pdf",
    "option_greeks",
    "option_implied_vol_with_reasons",
    "option_price",
    "option_valuation",
]

Exercise = Literal["american", "european"]
EXERCISE_STYLES: tuple[str, ...] = ("american", "european")


def _check(exercise: str) -> None:
    if exercise not in EXERCISE_STYLES:
        raise ValueError(f"exercise must be one of {EXERCISE_STYLES}, got {exercise!r}")


def option_price(S, K, T, r, q, sigma, is_call, *, exercise: Exercise = "american") -> np.ndarray:
    """Price per share under the contract's exercise style (American: BS2002 where it matters)."""
    _check(exercise)
    fn = american_price if exercise == "american" else bsm_price
    return fn(S, K, T, r, q, sigma, is_call)


def option_greeks(S, K, T, r, q, sigma, is_call, *, exercise: Exercise = "american",
                  with_rho: bool = True) -> Greeks:
    """Greeks per share (theta per day, vega and rho per point) under the contract's exercise style;
    American rho costs two more prices per contract, so chains ask ``with_rho=False`` (rho NaN there)."""
    _check(exercise)
    if exercise == "american":
        return american_greeks(S, K, T, r, q, sigma, is_call, with_rho=with_rho)
    return greeks(S, K, T, r, q, sigma, is_call)


def option_valuation(S, K, T, r, q, sigma, is_call, *, exercise: Exercise = "american",
                     with_rho: bool = True) -> tuple[np.ndarray, Greeks]:
    """(price, greeks) at once: the American greeks reuse the price they difference."""
    _check(exercise)
    if exercise == "american":
        return american_valuation(S, K, T, r, q, sigma, is_call, with_rho=with_rho)
    return bsm_price(S, K, T, r, q, sigma, is_call), greeks(S, K, T, r, q, sigma, is_call)


def option_implied_vol_with_reasons(price, S, K, T, r, q, is_call, *, exercise: Exercise = "american",
                                    resolution: float = 1e-9):
    """(implied vols, reason strings) under the contract's exercise style."""
    _check(exercise)
    fn = american_implied_vol_with_reasons if exercise == "american" else implied_vol_with_reasons
    return fn(price, S, K, T, r, q, is_call, resolution=resolution)
