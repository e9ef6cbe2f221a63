"""Flex parser over every recorded statement: counts from an independent XML pass, dates, unknown input."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from xml.dom import minidom

import pytest

from engine.ibkr.flex_parse import parse_flex, parse_flex_date, parse_flex_datetime
from engine.ibkr.flex_store import import_statement
from engine.models import BrokerPositionSnapshot, Transaction
from tests.conftest import shared_data

RECORDS = ("Trade", "Lot", "OpenPosition", "CashTransaction", "CorporateAction", "OptionEAE")


def _files() -> list[Path]:
    root = shared_data("ibkr_flex")
    return sorted(root.glob("*/*.xml"))


def _independent_counts(path: Path) -> Counter[str]:
    """Count record elements with minidom (a different XML parser): an element with attributes is a row
    (an <OptionEAE> without attributes is the section that holds the rows)."""
    doc = minidom.parse(str(path))
    counts: Counter[str] = Counter()
    for tag in RECORDS:
        for el in doc.getElementsByTagName(tag):
            if el.attributes.length:
                counts[tag] += 1
    return counts


def test_every_statement_parses_with_counts_from_the_files() -> None:
    files = _files()
    assert len(files) >= 70
    totals: Counter[str] = Counter()
    for path in files:
        data = parse_flex(path)
        expected = _independent_counts(path)
        assert Counter(data.counts()) == expected, path.name
        keys = [(r.account, r.key) for r in data.records]
        assert len(keys) == len(set(keys)), f"{path.name}: duplicate record keys"
        for r in data.records:
            r.when  # every date in every record parses  # noqa: B018
        totals.update(expected)
    # Every record type occurs somewhere in the recorded data.
    assert all(totals[t] > 0 for t in RECORDS), totals


def test_both_date_formats() -> None:
    assert parse_flex_date("2025-01-13;13:30:47") == date(2025, 1, 13)
    assert parse_flex_date("20250101") == date(2025, 1, 1)
    assert parse_flex_date("MULTI") is None
    # 13:30:47 in New York on 13 Jan (EST, UTC-5) is 18:30:47 UTC.
    assert parse_flex_datetime("2025-01-13;13:30:47") == datetime(2025, 1, 13, 18, 30, 47, tzinfo=UTC)
    assert parse_flex_datetime("20250101;133047") == datetime(2025, 1, 1, 18, 30, 47, tzinfo=UTC)
    assert parse_flex_datetime("2013-03-05, 19:45:00") == datetime(2013, 3, 6, 0, 45, tzinfo=UTC)
    assert parse_flex_datetime("20250704 093000") == datetime(2025, 7, 4, 13, 30, tzinfo=UTC)  # EDT
    with pytest.raises(ValueError, match="2025/01/13"):
        parse_flex_date("2025/01/13")




def test_unknown_section_and_attribute_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_minimal.xml").read_text()
    text = text.replace("<Trades>", "<BrandNewSection><Row a=\"1\"/></BrandNewSection><Trades>")
    text = text.replace('execID="test123"', 'execID="test123" fancyNewField="x"')
    with caplog.at_level("WARNING"):
        data = parse_flex(text.encode())
    assert data.counts() == {"Trade": 1}
    assert any("BrandNewSection" in w for w in data.warnings)
    assert any("fancyNewField" in w for w in data.warnings)
    assert "fancyNewField" not in data.records[0].attrs
    assert "BrandNewSection" in caplog.text


def test_import_is_idempotent_and_incremental(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, func, select

    path = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_backfill.xml")
    text = path.read_text()
    first = import_statement(migrated_sqlite, parse_flex(path))
    expected = _independent_counts(path)
    assert {k: v["new"] for k, v in first.items()} == dict(expected)
    again = import_statement(migrated_sqlite, parse_flex(path))
    assert all(v["new"] == 0 for v in again.values())
    # An overlapping statement: the last day's statement alone, plus one new trade.
    statements = re.findall(r"<FlexStatement .*?</FlexStatement>", text, flags=re.S)
    last = statements[-1].replace("</Trades>", '<Trade accountId="U1234567" currency="USD" assetCategory="STK" '
                                  'symbol="AMD" tradeID="100099" tradeDate="20250103" dateTime="20250103;150000" '
                                  'buySell="BUY" quantity="10" tradePrice="120" proceeds="-1200" ibCommission="-1" '
                                  'multiplier="1" levelOfDetail="EXECUTION" /></Trades>')
    overlap = f"<FlexQueryResponse><FlexStatements count=\"1\">{last}</FlexStatements></FlexQueryResponse>"
    third = import_statement(migrated_sqlite, parse_flex(overlap.encode()))
    assert third["Trade"] == {"read": 3, "new": 1}
    assert third["OpenPosition"]["new"] == 0
    with Session(migrated_sqlite) as s:
        n_txn = s.exec(select(func.count()).select_from(Transaction)).one()
        n_pos = s.exec(select(func.count()).select_from(BrokerPositionSnapshot)).one()
    assert n_txn == expected["Trade"] + expected["CashTransaction"] + 1
    assert n_pos == expected["OpenPosition"]


def test_trade_fields_land_in_the_transaction(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    path = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_minimal.xml")
    import_statement(migrated_sqlite, parse_flex(path))
    with Session(migrated_sqlite) as s:
        (txn,) = s.exec(select(Transaction)).all()
    assert (txn.account, txn.symbol, txn.type) == ("U1234567", "AAPL", "trade")
    assert txn.quantity == 100 and txn.price == pytest.approx(185.5)
    assert txn.amount == -18550 and txn.fees == 1
    assert txn.executed_at == datetime(2025, 1, 15, 14, 30, 15, tzinfo=UTC)


def test_cash_transactions_land_by_type(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    path = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_cash.xml")
    import_statement(migrated_sqlite, parse_flex(path))
    doc = minidom.parse(str(path))
    expected: Counter[str] = Counter()
    names = {"Dividends": "dividend", "Payment In Lieu Of Dividends": "dividend", "Withholding Tax": "withholding",
             "Broker Interest Received": "interest", "Broker Interest Paid": "interest", "Other Fees": "fee",
             "Deposits/Withdrawals": "transfer", "Deposits & Withdrawals": "transfer", "Bond Interest": "interest",
             "Bond Interest Received": "interest", "Advisor Fees": "fee",
             "Commission Adjustments": "fee"}
    for el in doc.getElementsByTagName("CashTransaction"):
        if el.attributes.length:
            expected[names.get(el.getAttribute("type"), "cash")] += 1
    with Session(migrated_sqlite) as s:
        got = Counter(t.type for t in s.exec(select(Transaction)))
    assert got == expected and {"dividend", "withholding", "interest", "fee"} <= set(got)
