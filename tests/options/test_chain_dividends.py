"""Chains are enriched with the underlying's dividend yield and American exercise (issue 11 item 10).

Before: candidates enriched every chain with q = 0 and European BSM, so a dividend payer's calls and
every put got a wrong IV and wrong greeks.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from engine.options import candidates
from engine.options.chain import CHAIN_COLUMNS, enrich

ql = pytest.importorskip("QuantLib")

R, Q, VOL, SPOT = 0.04, 0.03, 0.30, 100.0


def _exact_american(strike: float, days: int, call: bool) -> float:
    """QuantLib's American price (Andersen-Lake-Offengenden fixed point, accurate scheme)."""
    today = ql.Date(15, 7, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(SPOT)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, Q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, R, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), VOL, dc)))
    option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, strike),
                              ql.AmericanExercise(today, today + days))
    option.setPricingEngine(ql.QdFpAmericanEngine(process, ql.QdFpAmericanEngine.accurateScheme()))
    return option.NPV()


def test_enrich_reads_american_prices_of_a_dividend_payer():
    rows = []
    for days in (30, 45):
        for strike in (90.0, 95.0, 100.0, 105.0, 110.0):
            for right in ("C", "P"):
                px = _exact_american(strike, days, right == "C")
                rows.append({**dict.fromkeys(CHAIN_COLUMNS, np.nan), "underlying": "XYZ",
                             "occ_symbol": f"XYZ {days} {right} {strike}", "expiry": date(2025, 8, 14),
                             "dte": days, "strike": strike, "right": right, "bid": px - 0.01, "ask": px + 0.01,
                             "mid": px, "underlying_price": SPOT, "quote_time": None, "source": "test"})
    out = enrich(pd.DataFrame(rows, columns=list(CHAIN_COLUMNS)), r=R, q=Q)
    assert (out["calc_iv_reason"] == "ok").all()
    # the true vol is 0.30; the American approximation under-prices by cents, so its IV is a little high
    assert np.max(np.abs(out["calc_iv"] - VOL)) < 0.002
    # deltas against QuantLib's finite differences on the same contracts are checked in test_american;
    # here the sign and size are those of a 0.30-vol chain with q = 3%
    atm_call = out[(out["strike"] == 100.0) & (out["right"] == "C") & (out["dte"] == 30)].iloc[0]
    assert 0.50 < atm_call["calc_delta"] < 0.56


def test_european_q0_reading_of_the_same_prices_is_what_was_wrong():
    """The same quotes read the old way (q = 0, European) are off by far more than the tolerance above."""
    px = _exact_american(100.0, 45, False)
    row = {**dict.fromkeys(CHAIN_COLUMNS, np.nan), "underlying": "XYZ", "occ_symbol": "XYZ P",
           "expiry": date(2025, 8, 29),
           "dte": 45, "strike": 100.0, "right": "P", "bid": px - 0.01, "ask": px + 0.01, "mid": px,
           "underlying_price": SPOT, "quote_time": None, "source": "test"}
    old = enrich(pd.DataFrame([row], columns=list(CHAIN_COLUMNS)), r=R, q=0.0, exercise="european")
    new = enrich(pd.DataFrame([row], columns=list(CHAIN_COLUMNS)), r=R, q=Q)
    assert abs(old["calc_iv"].iloc[0] - VOL) > 0.01
    assert abs(new["calc_iv"].iloc[0] - VOL) < 0.002


def test_candidates_enrich_with_the_symbols_own_yield(monkeypatch):
    from engine.data.sim import SimMarket

    market = SimMarket(7, 40)
    now = datetime(2025, 7, 15, 14, 0, tzinfo=timezone.utc)
    symbol = "IERM"  # a dividend payer of this simulated universe
    expected = market.dividend_yield(symbol, date(2025, 7, 15))
    assert expected > 0.02
    seen: dict = {}

    class Stop(Exception):
        pass

    def spy(chain, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(candidates, "enrich", spy)
    # the IV rank (it picks which chain to ask for) and the filtered request are not what is tested here
    monkeypatch.setattr(candidates, "current_iv_rank", lambda *a, **k: None)
    monkeypatch.setattr(candidates, "chain_request_for", lambda *a, **k: None)
    monkeypatch.setattr(candidates, "fetch_chain", lambda m, sym, at, request: m.option_chain(sym, at))
    settings = SimpleNamespace(risk_free_rate=0.04)
    with pytest.raises(Stop):
        candidates.build_candidates(None, market, settings, SimpleNamespace(symbol=symbol), now)  # type: ignore[arg-type]
    assert seen["q"] == expected and seen["r"] == 0.04
