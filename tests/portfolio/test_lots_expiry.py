"""Expiry of a long put and a short call, by hand: a sale (or a buy-to-close) at zero on the expiry date
(IRS Pub 550 "Puts and Calls": an option that expires is treated as sold or closed on the expiry date)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from engine.portfolio.lots import Asset, CloseKind, Instrument, TradeEvent, compute_lots

PUT = Instrument("XYZ   250620P00045000", Asset.option, "XYZ", D(100), "P", D(45), date(2025, 6, 20))
CALL = Instrument("XYZ   250620C00060000", Asset.option, "XYZ", D(100), "C", D(60), date(2025, 6, 20))


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 15, tzinfo=UTC)


def test_long_put_expires_worthless_a_loss_of_its_cost() -> None:
    # 3 puts bought at 0.80 = 240 + 1.95 commission: basis 241.95, proceeds 0 on 20 June.
    r = compute_lots([TradeEvent("A", PUT, at(2025, 5, 1), D(3), D("0.80"), D("1.95"), trade_id="bp")],
                     expire_through=at(2025, 7, 1))
    (lot,) = r.closed_lots
    assert (lot.quantity, lot.basis, lot.proceeds, lot.realized) == (D(3), D("241.95"), D(0), D("-241.95"))
    assert (lot.sold, lot.close_kind, lot.term) == (date(2025, 6, 20), CloseKind.expire, "short")
    assert not r.open_lots


def test_long_put_held_over_a_year_expires_as_a_long_term_loss() -> None:
    # Bought 3 June 2024 for 2.10 x 100 + 0.65 = 210.65; expired 20 June 2025: more than a year held.
    r = compute_lots([TradeEvent("A", PUT, at(2024, 6, 3), D(1), D("2.10"), D("0.65"), trade_id="bp")],
                     expire_through=at(2025, 7, 1))
    (lot,) = r.closed_lots
    assert (lot.realized, lot.term) == (D("-210.65"), "long")


def test_short_call_expires_worthless_its_premium_is_the_gain() -> None:
    # 2 calls written at 1.25 = 250 - 1.30 commission: 248.70 received; the broker's expiry row (no side)
    # closes them at zero on 20 June: basis 0, all 248.70 a short-term gain.
    r = compute_lots([TradeEvent("A", CALL, at(2025, 5, 1), D(-2), D("1.25"), D("1.30"), trade_id="sc"),
                      TradeEvent("A", CALL, at(2025, 6, 20), D(2), D(0), trade_id="ep", kind=CloseKind.expire,
                                 side_from_position=True)])
    (lot,) = r.closed_lots
    assert (lot.quantity, lot.proceeds, lot.basis, lot.realized) == (D(-2), D("248.70"), D(0), D("248.70"))
    assert (lot.sold, lot.close_kind, lot.term, lot.closing_trade_id) == (date(2025, 6, 20), CloseKind.expire,
                                                                         "short", "ep")
    assert not r.open_lots
