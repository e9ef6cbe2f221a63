"""The product's list of differences from the broker's realized P&L names every row that carries one,
including rows that change no lot: a currency conversion, a cancelled execution and its cancellation, a
delisting. Each with our figure (0: no lot realized) and its cause."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.ibkr.flex_parse import parse_flex
from engine.ibkr.flex_store import import_statement
from engine.portfolio.lots import compute_lots
from engine.portfolio.lots.sources import load_events
from tests.conftest import shared_data


@pytest.mark.parametrize(("folder", "name", "expected"), [
    ("synthetic_ib-flex", "activity_forex.xml", {("AUD.USD", D("402.00")): "currency conversion"}),
    ("synthetic_ib-flex", "activity_cancelled_trades.xml",
     {("GOOGL", D("261.50")): "cancelled", ("GOOGL", D("-261.50")): "cancelled"}),
    ("synthetic_ib-flex", "activity_corporate_actions.xml", {("DELIST", D("-500.00")): "delisting (DW)"}),
    # A close of 3 calls bought before the statement: the broker says 0 realized, and so would an empty
    # match; it is still a close with no lot, so it is listed.
    ("ibflex_fragments", "Trade__TradeTestCase.xml",
     {("VXX   110917C00005000", D("0")): "opening lot before the imported history"}),
])
def test_rows_outside_the_lots_are_listed_with_their_cause(migrated_sqlite, folder: str, name: str,  # type: ignore[no-untyped-def]
                                                           expected: dict[tuple[str, D], str]) -> None:
    import_statement(migrated_sqlite, parse_flex(shared_data("ibkr_flex", folder, name)))
    result = compute_lots(load_events(migrated_sqlite))
    listed = {(d.symbol, d.broker_pnl): d for d in result.differences}
    for key, cause in expected.items():
        assert key in listed, f"{name}: {key} missing from the differences {sorted(listed)}"
        diff = listed[key]
        assert diff.our_pnl == 0 and cause in diff.cause
        assert diff.difference == -key[1]
