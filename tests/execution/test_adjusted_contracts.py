"""OCC-adjusted contracts (issue 13 item 2, carried past selection): an allowed adjusted contract is ordered,
filled, booked, marked, margined and settled with its own deliverable, in the engine's books and the paper
broker's, and they agree to the cent.

The OCC convention (its adjustment memos: "multiplier 100, new deliverable 150 shares"): after a 3:2 split
the contract keeps its strike and its multiplier, so premium and strike are still x 100 per contract, and it
delivers 150 shares for strike x 100. Every number below is computed by hand in the comments. Paper
defaults: $1.00 commission per option contract opened, $0 to close, $0.10 fee per contract.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

from sqlmodel import Session, col, select

from engine.execution.economics import max_loss_per_unit
from engine.execution.ports import AssetType, Leg, Side
from engine.execution.reconcile import reconcile
from engine.models import OrderEvent
from engine.portfolio.marks import GREEKS, LegQuote, apply_mark
from engine.risk import Intent
from tests.execution import test_settlement
from tests.execution.test_settlement import (
    EXP,
    NY,
    START,
    Books,
    assert_cash_agrees,
    occ,
    order,
    positions,
    settle,
    stock,
)

books = test_settlement.books  # the engine + paper broker fixture, shared

ADJ160 = occ("XYZ1", "C", "160")  # 150 shares per contract, strike 160 (160 x 100 = $16,000 to exercise)
ADJ170 = occ("XYZ1", "C", "170")
STD110 = occ("XYZ", "C", "110")


def why(b: Books, order_id: int | None) -> str:
    """The reason of the order's last transition (a refusal's words)."""
    with Session(b.db) as s:
        return s.exec(select(OrderEvent.reason).where(OrderEvent.order_id == order_id)
                      .order_by(col(OrderEvent.id).desc())).first() or ""


def adjusted(instrument: str, side: Side, deliverable: int = 150) -> Leg:
    strike = D(int(instrument[13:21])) / 1000
    return Leg(instrument, side, 1, AssetType.option, "XYZ", "C", strike, EXP, deliverable)


def test_an_adjusted_call_is_booked_marked_and_exercised_with_its_deliverable(books: Books) -> None:
    books.quotes.set(ADJ160, "2.00", "2.00")  # no spread: the fill is 2.00
    # buy 2 at 2.00: premium 2.00 x 100 x 2 = 400; commissions 2 x 1.00, fees 2 x 0.10 -> cash -402.20
    filled = order(books, "adj", "long_call", (adjusted(ADJ160, Side.buy),), 2, "2.00", "200")
    assert filled.status == "filled" and filled.avg_fill_price == D("2.00")
    assert_cash_agrees(books, "99597.80")
    [pos] = positions(books)
    assert Leg.from_dict(pos.legs[0]).deliverable == 150

    # marked at 2.50: unrealized (2.50 - 2.00) x 100 x 2 = 100.00; the broker's equity 99597.80 + 2.50 x 200
    books.quotes.set(ADJ160, "2.50", "2.50")
    quote = LegQuote(D("2.50"), D("2.50"), dict.fromkeys(GREEKS, 0.0), 105.0)
    apply_mark(pos, [Leg.from_dict(pos.legs[0])], {ADJ160: quote})
    assert pos.unrealized_pnl == D("100.00")
    assert books.broker.account().equity == D("100097.80") == START + pos.realized_pnl + pos.unrealized_pnl

    # settles at 120: 150 x 120 = 18,000 of shares for 16,000, in the money: 2 x 150 = 300 shares delivered
    # for 2 x 160 x 100 = 32,000 (a standard contract would deliver 200 for the same 32,000)
    assert settle(books, "XYZ", "120") == []
    option, shares = positions(books)
    assert option.status == "closed" and option.realized_pnl == D("-2.20")  # the fees so far
    assert (shares.structure, shares.quantity, shares.status) == ("stock", 300, "open")
    assert shares.entry_price == D("108.00")  # (premium 400 + 32,000) / 300
    assert_cash_agrees(books, "67597.80")  # 99597.80 - 32,000
    [held] = books.broker.positions()
    assert (held.instrument, held.quantity, held.avg_price) == ("XYZ", 300, D("106.6667"))  # 32,000 / 300
    [event] = books.broker.events()
    assert (event.stock_quantity, event.cash) == (300, D("-32000.00"))

    # sell the 300 shares: bid 119.99 / ask 120.01 -> -120.00 + 0.25 x 0.01 -> -119.99; proceeds 35,997
    books.quotes.set("XYZ", "119.99", "120.01")
    books.clock.now = datetime(2026, 3, 23, 10, 0, tzinfo=NY)
    assert order(books, "sell", "stock", (stock("XYZ", Side.sell),), 300, "-119.00", "0", Intent.close,
                 position_id=shares.id).status == "filled"
    _, shares = positions(books)
    assert shares.status == "closed" and shares.realized_pnl == D("3597.00")  # 35,997 - 32,400
    # whole trade: 35,997 - 32,000 - 400 - 2.20 = 3,594.80
    assert_cash_agrees(books, "103594.80")
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []


def test_an_adjusted_call_out_of_the_money_expires_though_a_standard_one_would_be_exercised(books: Books) -> None:
    books.quotes.set(ADJ170, "1.00", "1.00")
    assert order(books, "adj", "long_call", (adjusted(ADJ170, Side.buy),), 1, "1.00", "100").status == "filled"
    # settles at 112: a standard 170 call is far out; 150 x 112 = 16,800 < 17,000: this one is out too,
    # while at 114: 150 x 114 = 17,100 > 17,000 it is in, by 1.00 per quote point (a standard one is not)
    assert settle(books, "XYZ", "112") == []
    [pos] = positions(books)
    assert pos.status == "closed" and pos.realized_pnl == D("-101.10")  # premium 100 + fees 1.10
    assert_cash_agrees(books, "99898.90")


def test_a_short_adjusted_call_needs_its_deliverable_in_shares_to_be_covered(books: Books) -> None:
    books.quotes.set(ADJ160, "2.00", "2.00")
    # 100 shares cover a standard call but not one that delivers 150: the venue refuses it as naked
    assert order(books, "stk", "stock", (stock("XYZ", Side.buy),), 100, "105.02", "10").status == "filled"
    refused = order(books, "cc", "covered_call", (adjusted(ADJ160, Side.sell),), 1, "-2.00", "0")
    assert refused.status == "rejected" and "naked short options" in why(books, refused.id)
    # with 50 more shares (150 in all) it is covered
    assert order(books, "stk2", "stock", (stock("XYZ", Side.buy),), 50, "105.02", "10").status == "filled"
    written = order(books, "cc2", "covered_call", (adjusted(ADJ160, Side.sell),), 1, "-2.00", "0")
    assert written.status == "filled"
    # assigned at 170: the 150 shares leave for 160 x 100 = 16,000, the position holds none afterwards
    assert settle(books, "XYZ", "170") == []
    assert books.broker.positions() == []
    # cash: -10,501 - 5,250.50 (50 at 105.01) + 200 - 1.10 + 16,000
    assert_cash_agrees(books, "100447.40")


def test_a_spread_mixing_deliverables_is_refused_naming_the_field(books: Books) -> None:
    books.quotes.set(ADJ160, "2.00", "2.00")
    mixed = order(books, "mix", "call_debit_spread", (adjusted(ADJ160, Side.buy), adjusted(STD110, Side.sell, 100)),
                  1, "1.00", "100")
    assert mixed.status == "rejected"
    assert "legs mix deliverables (100, 150 shares per contract) (Leg.deliverable)" in why(books, mixed.id)
    assert positions(books) == [] and books.broker.orders() == []  # the gate refused it: never sent


def test_max_loss_of_a_covered_adjusted_call_reads_the_kink_at_the_strike_per_delivered_share() -> None:
    # one unit = 150 shares at 100 + one short adjusted 160 call at 2.00: net (150 x 100 - 200) / 100 = 148.00
    legs = [Leg("XYZ", Side.buy, 150, AssetType.stock, "XYZ"), adjusted(ADJ160, Side.sell)]
    # worst case: the shares go to 0, the call expires: loss 15,000 - 200 = 14,800
    assert max_loss_per_unit(legs, D("148.00")) == D("14800.00")
