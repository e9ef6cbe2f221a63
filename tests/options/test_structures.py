"""Structures: net prices, max loss/profit and breakevens worked out by hand."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from engine.options.occ import format_occ
from engine.options.structures import (
    QuoteLeg,
    bull_put_credit_spread,
    call_debit_spread,
    covered_call,
    iron_condor,
    long_call,
    long_put,
)

ql = pytest.importorskip("QuantLib")

EXP = date(2026, 3, 20)


def row(right, strike, bid, ask, *, delta=math.nan, iv=0.30, dte=45, expiry=EXP, theta=math.nan,
        gamma=math.nan, vega=math.nan):
    return {
        "underlying": "XYZ", "occ_symbol": format_occ("XYZ", expiry, right, strike), "expiry": expiry,
        "dte": dte, "strike": float(strike), "right": right, "bid": bid, "ask": ask, "mid": (bid + ask) / 2,
        "iv": iv, "delta": delta, "gamma": gamma, "theta": theta, "vega": vega, "underlying_price": 100.0,
    }


D = Decimal


def test_long_call_by_hand():
    s = long_call(row("C", 100, 4.90, 5.10))
    assert s.net_price("mid") == D("5.00")            # (4.90 + 5.10) / 2
    assert s.net_price("natural") == D("5.10")        # buy at the ask
    assert s.net_price_per_contract() == D("500.00")
    assert s.max_loss() == D("5") and s.max_loss_per_contract() == D("500.00")
    assert s.max_profit().is_infinite()
    assert s.breakevens() == [D("105")]               # 100 + 5.00
    assert not s.is_credit


def test_long_put_by_hand():
    s = long_put(row("P", 100, 3.90, 4.10))
    assert s.max_loss() == D("4")
    assert s.max_profit() == D("96")                   # stock to zero: 100 - 4
    assert s.breakevens() == [D("96")]


def test_call_debit_spread_by_hand():
    s = call_debit_spread(row("C", 100, 4.90, 5.10, delta=0.60), row("C", 110, 1.45, 1.55, delta=0.30))
    assert s.net_price("mid") == D("3.50")             # 5.00 - 1.50
    assert s.net_price("natural") == D("3.65")         # 5.10 (ask) - 1.45 (bid)
    assert s.max_loss() == D("3.5") and s.max_loss_per_contract() == D("350.00")
    assert s.max_profit() == D("6.5") and s.max_profit_per_contract() == D("650.00")  # width 10 - 3.50
    assert s.breakevens() == [D("103.5")]
    assert s.max_loss_per_contract("natural") == D("365.00")
    # payoff per share at expiry: below 100 lose 3.50, above 110 make 6.50, linear between
    np.testing.assert_allclose(s.payoff_at_expiry([90, 100, 103.5, 105, 110, 120], per_contract=False),
                               [-3.5, -3.5, 0.0, 1.5, 6.5, 6.5], atol=1e-12)
    np.testing.assert_allclose(s.payoff_at_expiry([90, 120]), [-350.0, 650.0], atol=1e-9)
    # net delta: 0.60 - 0.30 = 0.30 per share, 30 per contract
    assert s.net_greeks()["delta"] == pytest.approx(0.30)
    assert s.net_greeks(per_contract=True)["delta"] == pytest.approx(30.0)


def test_bull_put_credit_spread_by_hand():
    s = bull_put_credit_spread(row("P", 95, 2.00, 2.10), row("P", 90, 0.80, 0.90))
    assert s.net_price("mid") == D("-1.20")            # credit: 2.05 - 0.85
    assert s.net_price("natural") == D("-1.10")        # sell 95 at 2.00, buy 90 at 0.90
    assert s.is_credit
    assert s.max_profit() == D("1.2") and s.max_profit_per_contract() == D("120.00")
    assert s.max_loss() == D("3.8") and s.max_loss_per_contract() == D("380.00")   # width 5 - 1.20
    assert s.breakevens() == [D("93.8")]               # 95 - 1.20
    assert s.max_loss_per_contract("natural") == D("390.00")  # 5 - 1.10


def test_covered_call_by_hand():
    s = covered_call(100.0, row("C", 105, 1.95, 2.05, delta=0.35), symbol="XYZ")
    assert s.net_price("mid") == D("98.00")            # 100 - 2.00
    assert s.max_loss() == D("98")                     # the stock goes to zero
    assert s.max_profit() == D("7")                    # called away at 105: 105 - 98
    assert s.breakevens() == [D("98")]
    assert s.net_greeks(per_contract=True)["delta"] == pytest.approx(65.0)  # (1 - 0.35) x 100
    # an unknown leg greek makes the net greek unknown, never silently zero
    bare = covered_call(100.0, row("C", 105, 1.95, 2.05), symbol="XYZ")
    assert math.isnan(bare.net_greeks()["delta"])


def test_iron_condor_by_hand():
    s = iron_condor(row("P", 85, 0.45, 0.55), row("P", 90, 1.15, 1.25),
                    row("C", 110, 1.25, 1.35), row("C", 115, 0.55, 0.65))
    # credit at mid: -0.50 + 1.20 + 1.30 - 0.60 = 1.40
    assert s.net_price("mid") == D("-1.40")
    # natural: sell 1.15 + 1.25, buy 0.55 + 0.65 -> credit 1.20
    assert s.net_price("natural") == D("-1.20")
    assert s.max_profit() == D("1.4")
    assert s.max_loss() == D("3.6")                    # wing width 5 - 1.40
    assert s.breakevens() == [D("88.6"), D("111.4")]   # 90 - 1.40 and 110 + 1.40
    np.testing.assert_allclose(s.payoff_at_expiry([80, 88.6, 100, 111.4, 130], per_contract=False),
                               [-3.6, 0.0, 1.4, 0.0, -3.6], atol=1e-12)


def test_iron_condor_with_uneven_wings_loses_on_the_wide_side():
    s = iron_condor(row("P", 80, 0.25, 0.35), row("P", 90, 1.15, 1.25),
                    row("C", 110, 1.25, 1.35), row("C", 115, 0.55, 0.65))
    # credit: -0.30 + 1.20 + 1.30 - 0.60 = 1.60; put wing 10 wide -> max loss 10 - 1.60
    assert s.max_loss() == D("8.4")
    assert s.max_profit() == D("1.6")


def test_max_loss_per_contract_is_exact_in_cents():
    # 0.70 per share = 70.00 per contract (float: 0.7 * 100 = 70.00000000000001)
    s = long_call(row("C", 100, 0.65, 0.75))
    assert s.max_loss_per_contract("mid") == D("70.00")


def test_value_today_matches_quantlib_and_converges_to_expiry_payoff():
    long_leg = row("C", 100, 4.90, 5.10, iv=0.32, dte=45)
    short_leg = row("C", 110, 1.45, 1.55, iv=0.28, dte=45)
    s = call_debit_spread(long_leg, short_leg)
    r, q = 0.04, 0.0  # calls without dividends: the exact European path
    prices = np.array([90.0, 100.0, 115.0])
    got = s.value_today(prices, 10, r=r, q=q, per_contract=False)
    t = 35 / 365
    want = []
    for spot in prices:
        fwd, disc = spot * math.exp((r - q) * t), math.exp(-r * t)
        c1 = ql.blackFormula(ql.Option.Call, 100.0, fwd, 0.32 * math.sqrt(t), disc)
        c2 = ql.blackFormula(ql.Option.Call, 110.0, fwd, 0.28 * math.sqrt(t), disc)
        want.append(c1 - c2 - 3.50)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    # at expiry the model value is the payoff
    np.testing.assert_allclose(s.value_today(prices, 45, r=r, q=q), s.payoff_at_expiry(prices), atol=1e-9)
    # on a dividend payer the calls are American: Bjerksund-Stensland 2002 (independent transcription)
    from tests.options.bs2002_reference import bs2002

    got = s.value_today(prices, 10, r=r, q=0.02, per_contract=False)
    want = [bs2002(True, p, 100.0, t, r, 0.02, 0.32) - bs2002(True, p, 110.0, t, r, 0.02, 0.28) - 3.50 for p in prices]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_leg_uses_provider_greeks_else_ours():
    r = row("C", 100, 4.90, 5.10, delta=math.nan)
    r["calc_delta"] = 0.58
    assert QuoteLeg.from_row(r, +1).delta == 0.58
    r["delta"] = 0.61
    assert QuoteLeg.from_row(r, +1).delta == 0.61


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: call_debit_spread(row("C", 110, 1.45, 1.55), row("C", 100, 4.9, 5.1)), "below short"),
        (lambda: call_debit_spread(row("C", 100, 4.9, 5.1), row("C", 110, 1.4, 1.5, expiry=date(2026, 4, 17))),
         "one expiry"),
        (lambda: bull_put_credit_spread(row("P", 90, 0.8, 0.9), row("P", 95, 2.0, 2.1)), "below short"),
        (lambda: long_call(row("P", 100, 1, 2)), "legs 'C'"),
        (lambda: iron_condor(row("P", 90, 1, 1.1), row("P", 85, 0.5, 0.6), row("C", 110, 1, 1.1),
                             row("C", 115, 0.5, 0.6)), "strikes"),
    ],
)
def test_invalid_structures_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
