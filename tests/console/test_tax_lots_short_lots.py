"""Tax lots page with short option lots (a real-shape repro statement): negative quantities and the right
unrealized P&L, under the console's page header (environment and account)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import shared_data


def test_short_lots_are_negative_and_their_unrealized_pnl_is_credit_minus_the_mark(empty, console, db) -> None:  # type: ignore[no-untyped-def]
    from engine.ibkr.flex_parse import parse_flex
    from engine.ibkr.flex_store import import_statement
    from engine.portfolio.lots.store import rebuild_lots
    from engine.queries.tax_lots import open_lots

    path = shared_data("ibkr_flex", "opensteuerauszug", "minimal_short_options_repro_2025.xml")
    import_statement(db, parse_flex(path))
    rebuild_lots(db, as_of=datetime(2025, 12, 31, 23, tzinfo=UTC))  # the statement's year end
    lots = open_lots(db)
    short = lots[lots["symbol"] == "XXXX  260220C00200000"]
    # 5 written for 1,750 - 3.50 and 7 for 1,960 - 4.90: 3,701.60 received. Marked at 1.50 the 12 cost
    # 1,800 to buy back: 1,901.60 unrealized (the statement's own fifoPnlUnrealized says the same).
    assert sorted(short["quantity"]) == [-7.0, -5.0]
    assert round(short["basis"].sum(), 2) == -3701.60
    assert round(short["unrealized"].sum(), 2) == 1901.60
    assert sorted(round(x, 2) for x in short["unrealized"]) == [905.10, 996.50]  # 1,955.10-1,050; 1,746.50-750
    stock = lots[lots["symbol"] == "XXXX"]
    assert stock["quantity"].tolist() == [1200.0] and round(stock["unrealized"].sum(), 2) == 23988.0

    at = console().open("tax_lots")
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Tax lots"
    captions = " ".join(str(c.value) for c in at.caption)
    assert "broker" in captions and "account" in captions  # the header every page has
