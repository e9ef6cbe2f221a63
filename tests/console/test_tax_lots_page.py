"""Tax lots page on a database with Pub 550's wash sale (CSV) and an IBKR statement with broker figures."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shared_data


def test_tax_lots_page_shows_lots_wash_sales_and_differences(empty, console, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from engine.ibkr.flex_parse import parse_flex
    from engine.ibkr.flex_store import import_statement
    from engine.portfolio.lots.csv_trades import import_trades_csv
    from engine.portfolio.lots.store import rebuild_lots

    csv_path = tmp_path / "t.csv"
    csv_path.write_text("date,symbol,side,quantity,price,fees\n2025-01-02,XYZ,buy,100,50,0\n"
                        "2025-02-10,XYZ,sell,100,40,0\n2025-02-20,XYZ,buy,50,55,0\n2025-03-01,XYZ,buy,25,45,0\n")
    import_trades_csv(db, csv_path, "taxable")
    import_statement(db, parse_flex(shared_data("ibkr_flex", "synthetic_ib-flex", "activity_backfill.xml")))
    rebuild_lots(db)
    from sqlmodel import Session, select

    from engine.models import TaxLot

    with Session(db) as s:
        assert {(t.account, t.broker) for t in s.exec(select(TaxLot))} == {("taxable", "csv"), ("U1234567", "ibkr")}
    at = console().open("tax_lots")
    assert not at.exception, [e.value for e in at.exception]
    frames = [df.value for df in at.dataframe]
    open_lots, closed, by_year = frames[0], frames[1], frames[2]
    assert set(open_lots[open_lots["account"] == "taxable"]["basis"]) == {3250.0, 1375.0}
    assert closed[closed["account"] == "taxable"]["wash_sale_disallowed"].tolist() == [750.0]
    assert by_year[by_year["year"] == 2025]["disallowed"].sum() == 750.0
    wash = frames[3]
    assert wash["replacement_acquired"].astype(str).tolist() == ["2025-02-20", "2025-03-01"]
    diffs = frames[4]
    assert set(diffs["symbol"]) == {"GOOG", "TSLA", "NVDA"}
    causes = dict(zip(diffs["symbol"], diffs["cause"], strict=True))
    assert causes["GOOG"].startswith("opening lot before the imported history")
    assert causes["NVDA"] == "the broker's figure excludes commissions: ours includes 80.00 of them"
    captions = " ".join(str(c.value) for c in at.caption)
    assert "3 differ" in captions
