"""Lot engine by hand: FIFO, specific id, broker lots, splits, options with expiry, exercise and assignment
(IRS Pub 550 "Puts and Calls"), and wash sales from Pub 550's examples and rules."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

from engine.portfolio.lots import (
    Asset,
    CloseKind,
    Instrument,
    LotPick,
    SplitEvent,
    TradeEvent,
    compute_lots,
)

XYZ = Instrument("XYZ")


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 15, tzinfo=UTC)


def trade(day: datetime, qty: str, price: str, tid: str, inst: Instrument = XYZ, fees: str = "0",
          account: str = "A", **kw) -> TradeEvent:  # type: ignore[no-untyped-def]
    return TradeEvent(account, inst, day, D(qty), D(price), D(fees), trade_id=tid, **kw)


def option(symbol: str, right: str, strike: str, expiry: date) -> Instrument:
    return Instrument(symbol, Asset.option, "XYZ", D(100), right, D(strike), expiry)


def closed(result, tid):  # type: ignore[no-untyped-def]
    return [lot for lot in result.closed_lots if lot.closing_trade_id == tid]


def test_fifo_with_fees_and_term() -> None:
    r = compute_lots([trade(at(2023, 1, 3), "100", "10", "b1", fees="1"),
                      trade(at(2024, 6, 3), "100", "20", "b2", fees="1"),
                      trade(at(2024, 6, 10), "-150", "30", "s1", fees="3")])
    a, b = sorted(closed(r, "s1"), key=lambda lot: lot.acquired)
    # 100 of b1: basis 1001, proceeds 100/150 of (4500 - 3) = 2998; 50 of b2: basis 1000.50, proceeds 1499.
    assert (a.basis, a.proceeds, a.realized, a.term) == (D("1001"), D("2998"), D("1997"), "long")
    assert (b.basis, b.proceeds, b.realized, b.term) == (D("1000.5"), D("1499"), D("498.5"), "short")
    (left,) = r.open_lots
    assert left.quantity == 50 and left.basis == D("1000.5")


def test_holding_period_is_more_than_one_year() -> None:
    r = compute_lots([trade(at(2024, 3, 1), "1", "10", "b"), trade(at(2025, 3, 1), "-1", "12", "s")])
    assert r.closed_lots[0].term == "short"  # the anniversary itself is still short-term
    r = compute_lots([trade(at(2024, 3, 1), "1", "10", "b"), trade(at(2025, 3, 2), "-1", "12", "s")])
    assert r.closed_lots[0].term == "long"


def test_specific_identification_and_broker_lots() -> None:
    buys = [trade(at(2024, 1, 2), "10", "10", "b1"), trade(at(2024, 2, 2), "10", "20", "b2")]
    r = compute_lots([*buys, trade(at(2024, 3, 1), "-10", "15", "s", lot_ids=("b2",))])
    assert closed(r, "s")[0].realized == D("-50") and closed(r, "s")[0].method == "specific"
    r = compute_lots([*buys, trade(at(2024, 3, 1), "-10", "15", "s", lot_picks=(LotPick(date(2024, 2, 2), D(10)),))])
    assert closed(r, "s")[0].opening_trade_id == "b2"
    r = compute_lots([*buys, trade(at(2024, 3, 1), "-10", "15", "s")])
    assert closed(r, "s")[0].realized == D("50")  # FIFO


def test_split_keeps_basis_and_acquisition_date() -> None:
    r = compute_lots([trade(at(2024, 1, 2), "100", "50", "b"), SplitEvent("XYZ", at(2024, 5, 1), D(2)),
                      trade(at(2024, 6, 1), "-50", "30", "s")])
    (sold,) = closed(r, "s")
    assert sold.quantity == 50 and sold.basis == D("1250") and sold.acquired == date(2024, 1, 2)
    (left,) = r.open_lots
    assert left.quantity == 150 and left.basis == D("3750")


CALL = option("XYZ   250620C00050000", "C", "50", date(2025, 6, 20))
PUT = option("XYZ   250620P00050000", "P", "50", date(2025, 6, 20))


def test_expiry_long_and_short_are_a_close_at_zero_on_expiry() -> None:
    r = compute_lots([trade(at(2025, 5, 1), "2", "1.50", "bc", CALL, fees="1.30"),
                      trade(at(2025, 5, 1), "-1", "2.00", "sp", PUT, fees="0.65")],
                     expire_through=at(2025, 7, 1))
    long_call = next(lot for lot in r.closed_lots if lot.instrument is CALL)
    short_put = next(lot for lot in r.closed_lots if lot.instrument is PUT)
    assert (long_call.basis, long_call.proceeds, long_call.realized) == (D("301.30"), D("0"), D("-301.30"))
    assert long_call.sold == date(2025, 6, 20) and long_call.close_kind is CloseKind.expire
    assert (short_put.proceeds, short_put.basis, short_put.realized) == (D("199.35"), D("0"), D("199.35"))
    assert short_put.term == "short"


def _exercise(inst: Instrument, opt_qty: str, premium: str, kind: CloseKind, stock_qty: str,
              stock: list[TradeEvent] | None = None):  # type: ignore[no-untyped-def]
    delivery = trade(at(2025, 6, 20), stock_qty, "50", "stk")
    events = [*(stock or []), trade(at(2025, 5, 1), opt_qty, premium, "open", inst),
              trade(at(2025, 6, 20), str(-D(opt_qty)), "0", "ex", inst, kind=kind, delivery=delivery)]
    return compute_lots(events)


def test_long_call_exercised_premium_adds_to_stock_basis() -> None:
    r = _exercise(CALL, "1", "3", CloseKind.exercise, "100")
    (stock,) = [lot for lot in r.open_lots if lot.instrument is XYZ]
    assert stock.basis == D("5300") and stock.acquired == date(2025, 6, 20)
    assert sum(lot.realized for lot in r.closed_lots) == 0  # the option realizes nothing by itself


def test_short_put_assigned_premium_reduces_stock_basis() -> None:
    r = _exercise(PUT, "-1", "2", CloseKind.assign, "100")
    (stock,) = [lot for lot in r.open_lots if lot.instrument is XYZ]
    assert stock.basis == D("4800")


def test_long_put_exercised_premium_reduces_proceeds() -> None:
    held = [trade(at(2025, 1, 2), "100", "60", "b")]
    r = _exercise(PUT, "1", "4", CloseKind.exercise, "-100", held)
    (sale,) = closed(r, "stk")
    assert (sale.basis, sale.proceeds, sale.realized) == (D("6000"), D("4600"), D("-1400"))


def test_short_call_assigned_premium_adds_to_proceeds() -> None:
    held = [trade(at(2025, 1, 2), "100", "40", "b")]
    r = _exercise(CALL, "-1", "2.5", CloseKind.assign, "-100", held)
    (sale,) = closed(r, "stk")
    assert (sale.basis, sale.proceeds, sale.realized) == (D("4000"), D("5250"), D("1250"))


def test_pub550_partial_replacement() -> None:
    """Pub 550: 100 shares bought for $5,000; 50 for $2,750 and 25 for $1,125 within 30 days; the 100 sold
    for $4,000: $750 of the $1,000 loss disallowed, $250 allowed; new bases $3,250 and $1,375."""
    r = compute_lots([trade(at(2025, 1, 2), "100", "50", "b1"), trade(at(2025, 2, 10), "-100", "40", "s"),
                      trade(at(2025, 2, 20), "50", "55", "b2"), trade(at(2025, 3, 1), "25", "45", "b3")])
    (sale,) = closed(r, "s")
    assert sale.realized == D("-1000") and sale.wash_sale_disallowed == D("750")
    assert sale.realized + sale.wash_sale_disallowed == D("-250")
    bases = {lot.opening_trade_id: lot.basis for lot in r.open_lots}
    assert bases == {"b2": D("3250"), "b3": D("1375")}
    # Holding period tacked: the 39 days of b1 (2 Jan -> 10 Feb) are added before each replacement.
    hp = {lot.opening_trade_id: lot.holding_period_start for lot in r.open_lots}
    assert hp == {"b2": date(2025, 1, 12), "b3": date(2025, 1, 21)}


def test_replacement_before_the_sale_across_accounts_and_replaces_once() -> None:
    events = [trade(at(2025, 1, 2), "100", "50", "b1"),
              trade(at(2025, 1, 20), "100", "45", "ira", account="B"),  # within 30 days before the sale
              trade(at(2025, 2, 1), "-100", "40", "s1"),  # loss 1000, replaced by account B's lot
              trade(at(2025, 2, 3), "-100", "40", "s2", account="B")]  # loss on the replacement itself
    r = compute_lots(events)
    (s1,) = closed(r, "s1")
    assert s1.wash_sale_disallowed == D("1000")
    (s2,) = closed(r, "s2")
    # B's basis 4500 + 1000 carried; its holding period starts 30 days (b1 held 2 Jan -> 1 Feb) earlier.
    assert s2.basis == D("5500") and s2.realized == D("-1500")
    assert s2.holding_period_start == date(2024, 12, 21)
    # b1 was bought within 30 days before s2 but is the lot sold by s1, not a purchase replacing s2.
    assert s2.wash_sale_disallowed == 0
    assert len(r.wash_sales) == 1 and r.wash_sales[0].replacement_account == "B"


def test_gain_and_outside_window_are_not_wash_sales() -> None:
    r = compute_lots([trade(at(2025, 1, 2), "10", "50", "b1"), trade(at(2025, 2, 1), "-10", "40", "s"),
                      trade(at(2025, 3, 4), "10", "41", "b2")])  # 31 days after
    assert closed(r, "s")[0].wash_sale_disallowed == 0


def test_call_option_bought_within_30_days_is_a_replacement() -> None:
    r = compute_lots([trade(at(2025, 1, 2), "100", "50", "b1"), trade(at(2025, 2, 1), "-100", "45", "s"),
                      trade(at(2025, 2, 15), "1", "2", "call", CALL)])
    assert closed(r, "s")[0].wash_sale_disallowed == D("500")
    (call,) = [lot for lot in r.open_lots if lot.instrument is CALL]
    assert call.basis == D("700") and call.wash_sale_adjustment == D("500")


def test_lots_report_json_shape(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from engine.cli import main

    csv_path = tmp_path / "trades.csv"
    csv_path.write_text("date,symbol,side,quantity,price,fees\n"
                        "2025-01-02,XYZ,buy,100,50,0\n"
                        "2025-02-10,XYZ,sell,100,40,0\n"
                        "2025-02-20,XYZ,buy,50,55,0\n"
                        "2025-03-01,XYZ,buy,25,45,0\n"
                        "2025-03-20,XYZ   270618C00050000,buy,1,2.00,0.65\n")  # 38 days after: no replacement
    assert main(["lots", "import-trades", str(csv_path), "--account", "taxable"]) == 0
    assert main(["lots", "import-trades", str(csv_path), "--account", "taxable"]) == 0  # idempotent
    capsys.readouterr()
    assert main(["lots", "report", "--account", "taxable", "--year", "2025", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"closed", "open"}
    (row,) = out["closed"]
    assert set(row) == {"symbol", "quantity", "acquired", "sold", "basis", "proceeds", "realized",
                        "wash_sale_disallowed", "term", "closing_trade_id", "currency"}
    assert (row["basis"], row["proceeds"], row["realized"], row["wash_sale_disallowed"]) == (
        "5000.00", "4000.00", "-1000.00", "750.00")
    assert row["closing_trade_id"] == "2" and row["acquired"] == "2025-01-02" and row["term"] == "short"
    assert all(set(o) == {"symbol", "quantity", "acquired", "holding_period_start", "basis",
                          "wash_sale_adjustment"} for o in out["open"])
    assert [o["basis"] for o in out["open"]] == ["3250.00", "1375.00", "200.65"]


def test_broker_figures_are_compared_and_each_difference_has_a_cause() -> None:
    events = [trade(at(2025, 1, 2), "10", "10", "b", fees="1"),
              trade(at(2025, 1, 3), "-5", "12", "s-match", fees="1", broker_pnl=D("8.50"), closes_only=True),
              trade(at(2025, 1, 4), "-5", "12", "s-nofee", fees="1", broker_pnl=D("10")),
              trade(at(2025, 1, 5), "-5", "12", "s-orphan", inst=Instrument("OLD"), broker_pnl=D("3"),
                    closes_only=True)]
    r = compute_lots(events)
    by_id = {c.closing_trade_id: c for c in r.checks}
    assert by_id["s-match"].cause == "" and by_id["s-match"].our_pnl == D("8.5")
    assert by_id["s-nofee"].cause == "the broker's figure excludes commissions: ours includes 1.50 of them"
    assert by_id["s-orphan"].cause.startswith("opening lot before the imported history (5 units")
    assert [c.closing_trade_id for c in r.differences] == ["s-nofee", "s-orphan"]
    assert not [lot for lot in r.open_lots if lot.instrument.symbol == "OLD"]  # a close never opens a short


def test_a_replacement_share_replaces_only_once() -> None:
    r = compute_lots([trade(at(2025, 1, 2), "100", "50", "l1"), trade(at(2025, 1, 5), "100", "50", "l2"),
                      trade(at(2025, 3, 1), "-100", "40", "s1"), trade(at(2025, 3, 2), "-100", "40", "s2"),
                      trade(at(2025, 3, 10), "100", "41", "r")])
    assert closed(r, "s1")[0].wash_sale_disallowed == D("1000")
    assert closed(r, "s2")[0].wash_sale_disallowed == 0  # r already replaced s1's shares
    (rep,) = r.open_lots
    assert rep.basis == D("5100")


def test_option_loss_is_washed_by_the_same_contract_bought_back() -> None:
    r = compute_lots([trade(at(2025, 5, 1), "1", "3", "o1", CALL), trade(at(2025, 5, 10), "-1", "1", "o2", CALL),
                      trade(at(2025, 5, 20), "1", "1.5", "o3", CALL)])
    assert closed(r, "o2")[0].wash_sale_disallowed == D("200")
    (again,) = r.open_lots
    assert again.basis == D("350") and again.holding_period_start == date(2025, 5, 11)


def test_paper_fills_feed_the_lot_engine() -> None:
    from engine.models import Fill
    from engine.portfolio.lots.sources import paper_events

    fills = [Fill(broker_fill_id="f1", order_id=1, client_order_id="c1", instrument="XYZ   250620C00050000",
                  side="buy", quantity=2, multiplier=100, price=D("1.50"), commission=D("2"), fees=D("0.2"),
                  filled_at=at(2025, 5, 1)),
             Fill(broker_fill_id="f2", order_id=2, client_order_id="c2", instrument="XYZ   250620C00050000",
                  side="sell", quantity=2, multiplier=100, price=D("2.50"), commission=D("0"), fees=D("0.2"),
                  filled_at=at(2025, 5, 8))]
    r = compute_lots(paper_events(fills))
    (lot,) = r.closed_lots
    assert (lot.basis, lot.proceeds, lot.realized, lot.account) == (D("302.2"), D("499.8"), D("197.6"), "paper")


def test_csv_rows_with_bad_values_name_the_row_field_and_value(tmp_path: Path) -> None:
    import pytest

    from engine.portfolio.lots.csv_trades import CsvTradeError, read_trades_csv

    cases = {"2025-13-01,XYZ,buy,1,1,0": "row 1: date='2025-13-01'",
             "2025-01-02,XYZ,hold,1,1,0": "row 1: side='hold'",
             "2025-01-02,XYZ,buy,-5,1,0": "row 1: quantity='-5'",
             "2025-01-02,XYZ,buy,1,abc,0": "row 1: price='abc'"}
    for row, message in cases.items():
        path = tmp_path / "t.csv"
        path.write_text("date,symbol,side,quantity,price,fees\n" + row + "\n")
        with pytest.raises(CsvTradeError, match=message.replace("(", r"\(")):
            read_trades_csv(path, "a")
    path.write_text("day,symbol,side,quantity,price,fees\n")
    with pytest.raises(CsvTradeError, match="header must be date,symbol,side,quantity,price,fees"):
        read_trades_csv(path, "a")


def test_plain_broker_rows_with_actions_and_an_expiration() -> None:
    """Rows as a broker like tastytrade reports them: positive quantities with a buy/sell action, and an
    expiration row with no side that removes whatever is open at zero."""
    from engine.models import Transaction
    from engine.portfolio.lots.sources import generic_events

    occ = "XYZ   250620P00050000"
    rows = [Transaction(id=1, broker="tastytrade", account="5WX1", broker_txn_id="1", type="Trade", symbol=occ,
                        quantity=D(2), price=D("1.10"), fees=D("2.28"), executed_at=at(2025, 6, 2),
                        raw={"action": "Sell to Open", "transaction_sub_type": "Sell to Open"}),
            Transaction(id=2, broker="tastytrade", account="5WX1", broker_txn_id="2", type="Receive Deliver",
                        symbol=occ, quantity=D(2), price=D(0), fees=D(0), executed_at=at(2025, 6, 20),
                        raw={"transaction_sub_type": "Expiration"})]
    r = compute_lots(generic_events(rows))
    (lot,) = r.closed_lots
    assert (lot.quantity, lot.proceeds, lot.basis, lot.realized) == (D(-2), D("217.72"), D(0), D("217.72"))
    assert lot.close_kind is CloseKind.expire and lot.sold == date(2025, 6, 20) and not r.open_lots


def test_broker_lot_picks_take_their_quantities() -> None:
    # IBKR closed 5 of the 2 Jan lot and 5 of the 3 Feb lot (not 10 of the first).
    buys = [trade(at(2024, 1, 2), "10", "10", "b1"), trade(at(2024, 2, 3), "10", "20", "b2")]
    picks = (LotPick(date(2024, 1, 2), D(5)), LotPick(date(2024, 2, 3), D(5)))
    r = compute_lots([*buys, trade(at(2024, 3, 1), "-10", "15", "s", lot_picks=picks)])
    sold = sorted(closed(r, "s"), key=lambda lot: lot.acquired)
    assert [(lot.opening_trade_id, lot.quantity, lot.method) for lot in sold] == [("b1", 5, "broker"),
                                                                                  ("b2", 5, "broker")]
    assert sum(lot.realized for lot in sold) == D("0")


def test_after_hours_fill_keeps_its_new_york_date() -> None:
    # 19:30 New York on 31 Dec 2024 is 00:30 UTC on 1 Jan 2025: the sale belongs to 2024.
    late = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    r = compute_lots([trade(at(2024, 6, 3), "1", "10", "b"), trade(late, "-1", "12", "s")])
    assert r.closed_lots[0].sold == date(2024, 12, 31)
