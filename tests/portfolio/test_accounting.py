from __future__ import annotations

from decimal import Decimal

import pytest

from engine.execution.ports import AssetType, Leg, Side
from engine.portfolio.accounting import Book, cash_flow, net_price, structure_multiplier

D = Decimal


def test_long_call_round_trip_to_the_cent() -> None:
    # Buy 3 at 3.10 (fees 3 x 1.10 = 3.30), sell 2 at 4.05 (fees 0.20), sell 1 at 2.50 (fees 0.10).
    book = Book(100)
    book.open(3, D("3.10"), D("3.30"))
    assert book.realized == D("-3.30") and book.entry_price == D("3.10")
    # unrealized at a 3.50 mark: (3.50 - 3.10) x 100 x 3 = 120
    assert book.unrealized(D("3.50")) == D("120.00")
    first = book.close(2, D("-4.05"), D("0.20"))  # (4.05 - 3.10) x 100 x 2 - 0.20 = 189.80
    assert first == D("189.80")
    second = book.close(1, D("-2.50"), D("0.10"))  # (2.50 - 3.10) x 100 - 0.10 = -60.10
    assert second == D("-60.10")
    assert book.quantity == 0 and book.realized == D("-3.30") + D("189.80") - D("60.10")


def test_weighted_average_entry() -> None:
    book = Book(100)
    book.open(1, D("2.00"), D("0"))
    book.open(3, D("3.00"), D("0"))
    assert book.entry_price == D("2.75")  # (2 + 9) / 4


def test_credit_spread_accounting() -> None:
    # Sell a put spread for 1.20 credit (entry -1.20), buy it back at 0.45: (1.20 - 0.45) x 100 x 2 = 150
    book = Book(100)
    book.open(2, D("-1.20"), D("0"))
    assert book.market_value(D("-0.80")) == D("-160.00")  # a liability while open
    assert book.unrealized(D("-0.80")) == D("80.00")
    assert book.close(2, D("0.45"), D("0")) == D("150.00")


def test_identity_start_plus_pnl_equals_cash_plus_value() -> None:
    start = D("100000")
    book = Book(100)
    cash = start + cash_flow(D("3.10"), 3, 100, D("3.30"))
    book.open(3, D("3.10"), D("3.30"))
    cash += cash_flow(D("-4.05"), 1, 100, D("0.10"))
    book.close(1, D("-4.05"), D("0.10"))
    mark = D("3.77")
    assert start + book.realized + book.unrealized(mark) == cash + book.market_value(mark)


def test_closing_more_than_held_raises() -> None:
    book = Book(100)
    book.open(1, D("1"), D("0"))
    with pytest.raises(ValueError, match="cannot close 2"):
        book.close(2, D("-1"), D("0"))


def test_net_price_of_a_debit_spread_and_a_covered_call() -> None:
    long_c = Leg("X  C1", Side.buy)
    short_c = Leg("X  C2", Side.sell)
    assert net_price([long_c, short_c], {"X  C1": D("3.40"), "X  C2": D("1.15")}) == D("2.25")
    stock = Leg("X", Side.buy, 100, AssetType.stock)
    # covered call in quote terms: (100 x 50.00 - 100 x 1.20) / 100 = 48.80 per share
    assert structure_multiplier([stock, short_c]) == 100
    assert net_price([stock, short_c], {"X": D("50.00"), "X  C2": D("1.20")}) == D("48.80")
    assert structure_multiplier([stock]) == 1


def test_a_position_closed_in_pieces_realizes_its_cost_to_the_cent() -> None:
    # 3 calls bought at 1.00, 1.00 and 1.01: $301.00 in all, an average of 1.003333... per share.
    book = Book(100)
    for price in ("1.00", "1.00", "1.01"):
        book.open(1, Decimal(price), Decimal("0"))
    pieces = [book.close(1, Decimal("-2.00"), Decimal("0")) for _ in range(3)]
    # each close receives $200.00; the three bases are $100.33, $100.34 and $100.33 (differences of the
    # open basis in cents: 301.00 - 200.67, 200.67 - 100.33, 100.33 - 0)
    assert pieces == [Decimal("99.67"), Decimal("99.66"), Decimal("99.67")]
    assert sum(pieces) == Decimal("299.00")  # 600.00 received - 301.00 paid
    assert all(p == p.quantize(Decimal("0.01")) for p in pieces)


def test_an_average_entry_stored_to_six_digits_still_closes_to_the_cent() -> None:
    # The position table keeps 6 decimals: 3 units bought for $537.60 in all read back as 1.792000 -> exact,
    # but 3 units for $537.61 read back as 1.792033 (not 1.7920333...). Closing all at 1.19 per share
    # receives $357.00, so the realized P&L is 357.00 - 537.61 = -180.61, never -180.6099.
    book = Book(100, 3, Decimal("1.792033"))
    assert book.close(3, Decimal("-1.19"), Decimal("0")) == Decimal("-180.61")
