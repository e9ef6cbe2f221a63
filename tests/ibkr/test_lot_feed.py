"""IBKR statements into the lot engine: real exercise/assignment rows without notes, expiries, broker lots."""

from __future__ import annotations

from decimal import Decimal as D

from engine.ibkr.flex_parse import parse_flex
from engine.ibkr.flex_store import import_statement
from engine.portfolio.lots import CloseKind, compute_lots
from engine.portfolio.lots.sources import load_events
from tests.conftest import shared_data


def _lots(db, *paths_or_xml):  # type: ignore[no-untyped-def]
    for item in paths_or_xml:
        import_statement(db, parse_flex(item))
    return compute_lots(load_events(db))


def test_short_call_assignment_in_a_real_statement_folds_the_premium(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    # SA 19SEP25 17 C written on 5 Aug for 0.77 (commission 0.30424), assigned on 19 Sep: 100 SA sold at 17
    # (commission 0.0166). The statement has no notes; the pairing is the book trades at the strike.
    r = _lots(migrated_sqlite, shared_data("ibkr_flex", "opensteuerauszug", "options_future_2025.xml"))
    (short,) = [lot for lot in r.open_lots
                if lot.instrument.symbol == "SA" and lot.acquired.isoformat() == "2025-09-19"]
    assert short.quantity == -100
    assert short.open_cash == D("1700") - D("0.0166") + D("77") - D("0.30424")
    option = [lot for lot in r.closed_lots if lot.instrument.symbol == "SA    250919C00017000"]
    assert [(lot.close_kind, lot.realized) for lot in option] == [(CloseKind.assign, D("0"))]
    # The three TLT calls bought on 21 May and left to expire on 13 Jun: a sale at zero on the expiry date.
    tlt = [lot for lot in r.closed_lots if lot.instrument.symbol.startswith("TLT")]
    assert {lot.close_kind for lot in tlt} == {CloseKind.expire}
    assert sum(lot.realized for lot in tlt) == -(D("20") + D("1.52795") + D("20") + D("0.82795") + D("14")
                                                 + D("0.70795"))


BROKER_LOTS = b"""<FlexQueryResponse><FlexStatements count="1"><FlexStatement accountId="U9" fromDate="20250101"
toDate="20250301"><Trades>
<Trade accountId="U9" assetCategory="STK" symbol="ABC" tradeID="1" dateTime="20250102;100000" buySell="BUY"
 quantity="10" tradePrice="10" proceeds="-100" ibCommission="-1" currency="USD" multiplier="1"
 levelOfDetail="EXECUTION" openCloseIndicator="O"/>
<Trade accountId="U9" assetCategory="STK" symbol="ABC" tradeID="2" dateTime="20250110;100000" buySell="BUY"
 quantity="10" tradePrice="20" proceeds="-200" ibCommission="-1" currency="USD" multiplier="1"
 levelOfDetail="EXECUTION" openCloseIndicator="O"/>
<Trade accountId="U9" assetCategory="STK" symbol="ABC" tradeID="3" dateTime="20250301;100000" buySell="SELL"
 quantity="-10" tradePrice="25" proceeds="250" ibCommission="-1" currency="USD" multiplier="1"
 levelOfDetail="EXECUTION" openCloseIndicator="C"/>
<Lot accountId="U9" assetCategory="STK" symbol="ABC" tradeID="3" quantity="-10" openDateTime="20250110;100000"
 levelOfDetail="CLOSED_LOT" buySell="SELL" tradePrice="25" currency="USD" multiplier="1"/>
</Trades></FlexStatement></FlexStatements></FlexQueryResponse>"""


def test_lot_rows_choose_the_lot_the_broker_closed(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    r = _lots(migrated_sqlite, BROKER_LOTS)
    (sold,) = r.closed_lots
    assert sold.opening_trade_id == "2" and sold.realized == D("249") - D("201")
    assert sold.closing_trade_id == "3"


def test_reverse_split_tender_and_cash_merger_from_a_real_statement(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    r = _lots(migrated_sqlite, shared_data("ibkr_flex", "portfolio_performance", "testIBFlexStatementFile01.xml"))
    # GCM: 12,000 shares bought on 1 Apr 2013 for 1,350 + 1,620 + 270 CAD and 16.20 commission; "SPLIT 1 FOR 25"
    # on 17 Jun 2013 leaves 480 shares with the same basis and acquisition date.
    gcm = [lot for lot in r.open_lots if lot.instrument.symbol == "GCM"]
    assert sum(lot.quantity for lot in gcm) == 480
    assert sum(lot.basis for lot in gcm) == D("3256.20")
    assert {lot.acquired.isoformat() for lot in gcm} == {"2013-04-01"}
    # UUU: 12,000 shares (31,962 CAD with commissions) tendered 1 for 1 into UUU.TEN2, then merged for
    # 2.86 CAD a share (34,320): 2,358 realized, which is the statement's own fifoPnlRealized.
    uuu = [lot for lot in r.closed_lots if lot.instrument.symbol == "UUU.TEN2"]
    assert sum(lot.quantity for lot in uuu) == 12000
    assert sum(lot.realized for lot in uuu) == D("2358")
    assert {lot.currency for lot in uuu} == {"CAD"} and {lot.term for lot in uuu} == {"short"}
    (check,) = [c for c in r.checks if c.symbol == "UUU.TEN2"]
    assert check.cause == "" and check.broker_pnl == D("2358")


FORWARD_SPLIT = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_corporate_actions.xml")


def test_forward_split_without_a_ratio_in_words_uses_the_added_shares(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    # "TESLA INC - 2:1 Split" adds 100 shares to the 100 held; "SPLIT CORP - 1:10 Reverse" takes 900 of 1,000.
    text = FORWARD_SPLIT.read_text()
    buys = ('<Trades><Trade accountId="U1234567" assetCategory="STK" symbol="TSLA" tradeID="t1" tradeDate="2024-06-03" '
            'buySell="BUY" quantity="100" tradePrice="180" proceeds="-18000" ibCommission="-1" currency="USD" '
            'multiplier="1"/><Trade accountId="U1234567" assetCategory="STK" symbol="SPLIT" tradeID="t2" '
            'tradeDate="2024-06-03" buySell="BUY" quantity="1000" tradePrice="1" proceeds="-1000" ibCommission="0" '
            'currency="USD" multiplier="1"/></Trades>')
    text = text.replace("<CorporateActions>", buys + "<CorporateActions>", 1)
    r = _lots(migrated_sqlite, text.encode())
    held = {lot.instrument.symbol: lot for lot in r.open_lots}
    assert held["TSLA"].quantity == 200 and held["TSLA"].basis == D("18001")
    assert held["SPLIT"].quantity == 100 and held["SPLIT"].basis == D("1000")
    # ACQUIRED CORP - Merger (TC) for 5,000: no lot held, so it closes nothing.
    assert [e.instrument.symbol for e, _units in r.unmatched] == ["ACQUIRED"]
