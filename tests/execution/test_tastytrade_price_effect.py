"""The price effect of every structure kind, opening and closing, as it goes on the wire to tastytrade.

Expected effects are the textbook ones (a long option or a debit spread is paid for, a credit spread or an
iron condor sold is paid to us, closing reverses it); prices are hand-picked quotes, and the wire body is
read back from the local API, so a sign flipped anywhere between the engine and the request shows here.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from engine.execution.brokers.tastytrade_orders import PriceEffectMismatch, build_order, derive_price_effect, wire_price
from engine.execution.ports import Leg, Side
from engine.options import structures as st
from engine.options.candidates import entry_limit, order_legs
from engine.options.occ import occ_padded

EXP = date(2026, 12, 18)


def _opt(right: str, strike: float, bid: str, ask: str) -> st.QuoteLeg:
    return st.QuoteLeg(occ_padded("SPY", EXP, right, strike), right, Decimal(str(strike)), EXP, 1, Decimal(bid),
                  Decimal(ask))


def _structures() -> dict[str, st.Structure]:
    return {
        "long_call": st.long_call(_opt("C", 600, "4.00", "4.20")),
        "long_put": st.long_put(_opt("P", 580, "3.10", "3.30")),
        "call_debit_spread": st.call_debit_spread(_opt("C", 600, "4.00", "4.20"), _opt("C", 610, "1.50", "1.60")),
        "bull_put_credit_spread": st.bull_put_credit_spread(_opt("P", 580, "3.10", "3.30"),
                                                           _opt("P", 570, "1.20", "1.30")),
        "covered_call": st.covered_call(Decimal("595.00"), _opt("C", 610, "1.50", "1.60"), symbol="SPY"),
        "iron_condor": st.iron_condor(_opt("P", 570, "1.20", "1.30"), _opt("P", 580, "3.10", "3.30"),
                                      _opt("C", 610, "1.50", "1.60"), _opt("C", 620, "0.50", "0.60")),
    }


# kind -> price effect when opening (textbook)
EXPECTED = {"long_call": "Debit", "long_put": "Debit", "call_debit_spread": "Debit",
            "bull_put_credit_spread": "Credit", "covered_call": "Debit", "iron_condor": "Credit"}
CLOSE = {"Debit": "Credit", "Credit": "Debit"}


def test_the_structures_support_every_kind_the_engine_builds() -> None:
    assert set(_structures()) == set(st.__all__) - {"MULTIPLIER", "QuoteLeg", "Structure", "stock_leg"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_opening_price_effect_is_derived_from_the_structure(kind: str) -> None:
    s = _structures()[kind]
    legs = order_legs(s)
    effect = EXPECTED[kind]
    assert derive_price_effect(legs).value == effect
    limit = entry_limit(s)
    assert (limit > 0) == (effect == "Debit")  # the engine's own limit agrees with the structure
    price, wire_effect = wire_price(build_order("qm-open", legs, 3, limit, "open"))
    assert wire_effect == effect
    assert Decimal(price) == abs(limit)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_closing_reverses_the_price_effect(kind: str) -> None:
    s = _structures()[kind]
    closing = tuple(leg.reversed() for leg in order_legs(s))
    effect = CLOSE[EXPECTED[kind]]
    assert derive_price_effect(closing).value == effect
    limit = -entry_limit(s)  # closing near where it opened: the opposite cash flow
    order = build_order("qm-close", closing, 2, limit, "close")
    price, wire_effect = wire_price(order)
    assert wire_effect == effect
    assert Decimal(price) == abs(limit)
    assert all("Close" in leg.action.value for leg in order.legs)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("intent", ["open", "close"])
def test_a_limit_with_the_wrong_sign_is_refused_before_sending(kind: str, intent: str) -> None:
    legs = order_legs(_structures()[kind])
    limit = entry_limit(_structures()[kind])
    if intent == "close":
        legs = tuple(leg.reversed() for leg in legs)
        limit = -limit
    with pytest.raises(PriceEffectMismatch, match="refusing"):
        build_order("qm-wrong", legs, 1, -limit, intent)


def test_hand_computed_limits_and_actions_of_the_multi_leg_orders() -> None:
    s = _structures()
    # call debit spread: mid 4.10 - 1.55 = 2.55, natural 4.20 - 1.50 = 2.70 -> (2.55 + 2.70) / 2 = 2.625 -> 2.62
    assert entry_limit(s["call_debit_spread"]) == Decimal("2.62")
    # bull put credit: mid -3.20 + 1.25 = -1.95, natural -3.10 + 1.30 = -1.80 -> -1.875 -> -1.88 (half-even)
    assert entry_limit(s["bull_put_credit_spread"]) == Decimal("-1.88")
    # iron condor: mid 1.25 - 3.20 - 1.55 + 0.55 = -2.95; natural 1.30 - 3.10 - 1.50 + 0.60 = -2.70 -> -2.825
    assert entry_limit(s["iron_condor"]) == Decimal("-2.82")
    # covered call: 595 - 1.55 = 593.45 at mid, 595 - 1.50 = 593.50 natural -> 593.475 -> 593.48
    assert entry_limit(s["covered_call"]) == Decimal("593.48")
    order = build_order("qm-ic", order_legs(s["iron_condor"]), 2, Decimal("-2.82"), "open")
    body = json.loads(order.model_dump_json(exclude_none=True, by_alias=True))
    assert body["price"] == "2.82" and body["price-effect"] == "Credit"
    assert [(leg["action"], leg["quantity"]) for leg in body["legs"]] == [
        ("Buy to Open", 2), ("Sell to Open", 2), ("Sell to Open", 2), ("Buy to Open", 2)]
    cc = json.loads(build_order("qm-cc", order_legs(s["covered_call"]), 1, Decimal("593.48"), "open")
                    .model_dump_json(exclude_none=True, by_alias=True))
    assert [(leg["instrument-type"], leg["symbol"], leg["quantity"]) for leg in cc["legs"]] == [
        ("Equity", "SPY", 100), ("Equity Option", "SPY   261218C00610000", 1)]
    assert cc["price-effect"] == "Debit" and cc["external-identifier"] == "qm-cc"


def test_mixed_payoffs_take_the_limits_sign() -> None:
    # A risk reversal (buy a call, sell a put) can be a debit or a credit: the limit decides.
    legs = (Leg(occ_padded("SPY", EXP, "C", 610), Side.buy), Leg(occ_padded("SPY", EXP, "P", 570), Side.sell))
    assert derive_price_effect(legs) is None
    assert wire_price(build_order("qm-rr", legs, 1, Decimal("0.35"), "open"))[1] == "Debit"
    assert wire_price(build_order("qm-rr", legs, 1, Decimal("-0.35"), "open"))[1] == "Credit"


def test_time_in_force_day_and_gtc_and_bad_values() -> None:
    legs = order_legs(_structures()["long_call"])
    assert build_order("qm-d", legs, 1, Decimal("4.15"), "open").time_in_force.value == "Day"
    assert build_order("qm-g", legs, 1, Decimal("4.15"), "open", "gtc").time_in_force.value == "GTC"
    with pytest.raises(ValueError, match="time_in_force"):
        build_order("qm-x", legs, 1, Decimal("4.15"), "open", "ioc")
    with pytest.raises(ValueError, match="quantity"):
        build_order("qm-x", legs, 0, Decimal("4.15"), "open")
