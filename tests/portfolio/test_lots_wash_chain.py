"""Wash sales that chain through split replacement lots, and acquisitions that are distinct across accounts
and CSV files even when their row numbers are the same (IRS Pub 550 "Wash Sales", by hand)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

from engine.models import Transaction
from engine.portfolio.lots import Instrument, TradeEvent, compute_lots
from engine.portfolio.lots.csv_trades import read_trades_csv
from engine.portfolio.lots.sources import generic_events

XYZ = Instrument("XYZ")


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 15, tzinfo=UTC)


def trade(day: datetime, qty: str, price: str, tid: str, fees: str = "0", account: str = "A") -> TradeEvent:
    return TradeEvent(account, XYZ, day, D(qty), D(price), D(fees), trade_id=tid)


def test_loss_carried_into_a_split_replacement_is_washed_again_when_that_piece_is_sold() -> None:
    # b1 50 @ 50 = 2,500 sold 10 Feb @ 40: loss 500. b2 100 @ 45 on 20 Feb: 50 of them replace, so that
    # half's basis is 2,250 + 500 = 2,750 and the other half's 2,250. s2 sells all 100 on 3 Mar @ 34:
    # the replacement half loses 2,750 - 1,700 = 1,050, the other half 2,250 - 1,700 = 550; loss 1,600.
    # b3 buys 200 on 20 Mar (17 days later): 100 of them replace both halves, 1,600 disallowed in all.
    r = compute_lots([trade(at(2025, 1, 2), "50", "50", "b1"), trade(at(2025, 2, 10), "-50", "40", "s1"),
                      trade(at(2025, 2, 20), "100", "45", "b2"), trade(at(2025, 3, 3), "-100", "34", "s2"),
                      trade(at(2025, 3, 20), "200", "35", "b3", fees="2")])
    s2 = [lot for lot in r.closed_lots if lot.closing_trade_id == "s2"]
    assert sorted(lot.realized for lot in s2) == [D("-1050"), D("-550")]
    assert sum(lot.wash_sale_disallowed for lot in s2) == D("1600")
    opened = sorted(r.open_lots, key=lambda lot: lot.wash_sale_adjustment)
    # b3 costs 7,002 (fees 2, pro rata 0.50 / 0.50 / 1 on 50 / 50 / 100 shares).
    assert [(lot.quantity, lot.wash_sale_adjustment, lot.basis, lot.fees) for lot in opened] == [
        (D(100), D(0), D("3501"), D(1)), (D(50), D(550), D("2300.5"), D("0.5")),
        (D(50), D(1050), D("2800.5"), D("0.5"))]
    # Holding periods: the b2 half carrying b1's 39 days starts 12 Jan and is sold 3 Mar (50 days), so its
    # replacement starts 50 days before 20 Mar = 29 Jan; the other half was held 11 days: 9 Mar.
    assert [lot.holding_period_start for lot in opened] == [date(2025, 3, 20), date(2025, 3, 9),
                                                           date(2025, 1, 29)]
    ids = [lot.lot_id for lot in r.lots]
    assert len(ids) == len(set(ids))


def test_split_apportions_fees_so_the_halves_add_up() -> None:
    # Pub 550's partial replacement with fees on the replacement: 100 bought for 4,500 + 1 fee, 50 replace.
    r = compute_lots([trade(at(2025, 1, 2), "50", "50", "b1"), trade(at(2025, 2, 10), "-50", "40", "s1"),
                      trade(at(2025, 2, 20), "100", "45", "b2", fees="1")])
    pieces = sorted(r.open_lots, key=lambda lot: lot.wash_sale_adjustment)
    assert [(lot.fees, lot.basis) for lot in pieces] == [(D("0.5"), D("2250.5")), (D("0.5"), D("2750.5"))]


def _csv(tmp_path: Path, name: str, body: str, account: str, first_id: int) -> list[Transaction]:
    path = tmp_path / name
    path.write_text("date,symbol,side,quantity,price,fees\n" + body)
    rows = read_trades_csv(path, account)
    for i, row in enumerate(rows):
        row.id = first_id + i  # as stored: every row its own Transaction id
    return rows


def test_same_csv_row_numbers_in_two_accounts_are_different_purchases(tmp_path: Path) -> None:
    # Account A: row 1 buys 100 @ 50, row 2 sells them 10 Feb @ 40 (loss 1,000). Account B's row 1 buys
    # 100 @ 45 on 1 Feb (9 days before) and its row 2 sells them 12 Feb @ 46. B's shares replace A's:
    # 1,000 disallowed, B's basis 4,500 + 1,000 = 5,500, so B's sale loses 900.
    a = _csv(tmp_path, "a.csv", "2025-01-02,XYZ,buy,100,50,0\n2025-02-10,XYZ,sell,100,40,0\n", "A", 1)
    b = _csv(tmp_path, "b.csv", "2025-02-01,XYZ,buy,100,45,0\n2025-02-12,XYZ,sell,100,46,0\n", "B", 10)
    r = compute_lots(generic_events([*a, *b]))
    (sale_a,) = [lot for lot in r.closed_lots if lot.account == "A"]
    (sale_b,) = [lot for lot in r.closed_lots if lot.account == "B"]
    assert sale_a.wash_sale_disallowed == D("1000")
    assert (sale_b.basis, sale_b.realized) == (D("5500"), D("-900"))
    # The report's closing_trade_id stays the 1-based CSV row.
    assert (sale_a.closing_trade_id, sale_b.closing_trade_id) == ("2", "2")


def test_same_row_number_in_two_files_of_one_account_are_different_purchases(tmp_path: Path) -> None:
    a = _csv(tmp_path, "a.csv", "2025-01-02,XYZ,buy,100,50,0\n2025-02-10,XYZ,sell,100,40,0\n", "A", 1)
    b = _csv(tmp_path, "b.csv", "2025-02-20,XYZ,buy,100,45,0\n", "A", 10)
    r = compute_lots(generic_events([*a, *b]))
    (sale,) = r.closed_lots
    assert sale.wash_sale_disallowed == D("1000")
    (rep,) = r.open_lots
    assert rep.basis == D("5500")
