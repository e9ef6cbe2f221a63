"""Our IV and greeks of an OCC-adjusted contract (150 shares for strike x 100): it is worth 1.5 standard
calls struck at strike / 1.5, so a quote priced that way must give back the vol it was priced with and
1.5 x that call's delta per quote point. Prices from the Black-Scholes formula written out here."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from engine.options.chain import enrich

S, K, T, R, SIGMA = 105.0, 100.0, 30 / 365, 0.04, 0.30


def _bs_call(s: float, k: float) -> tuple[float, float]:
    """(price, delta) of a European call, no dividends."""
    d1 = (math.log(s / k) + (R + SIGMA**2 / 2) * T) / (SIGMA * math.sqrt(T))
    d2 = d1 - SIGMA * math.sqrt(T)
    n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return s * n(d1) - k * math.exp(-R * T) * n(d2), n(d1)


def test_an_adjusted_contract_is_priced_as_its_deliverable_of_standard_calls() -> None:
    price, delta = _bs_call(S, K)
    adj = round(1.5 * price, 4)  # the 150-share contract struck at 150 = 1.5 calls struck at 100
    chain = pd.DataFrame({
        "occ_symbol": ["XYZ1  260417C00150000"], "right": ["C"], "strike": [150.0], "dte": [30.0],
        "bid": [adj], "ask": [adj], "mid": [adj], "underlying_price": [S], "shares_per_contract": [150],
    })
    out = enrich(chain, r=R, q=0.0, exercise="european").iloc[0]
    assert out["calc_iv"] == pytest.approx(SIGMA, abs=1e-4)
    assert out["calc_delta"] == pytest.approx(1.5 * delta, abs=1e-4)
