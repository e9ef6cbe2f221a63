"""Flex re-import: overlapping statements add nothing twice, but a later statement's corrections of an
earlier period (withholding reversed and charged again under the dividend's actionID) are new rows."""

from __future__ import annotations

import re
from decimal import Decimal as D

from sqlmodel import Session, select

from engine.ibkr.flex_parse import parse_flex
from engine.ibkr.flex_store import import_statement
from engine.models import Transaction
from tests.conftest import shared_data

# The 2024 window as IBKR reported it then: NLCP's 15 Apr 2024 dividend and its withholding, one actionID.
STATEMENT_2024 = b"""<FlexQueryResponse><FlexStatements count="1">
<FlexStatement accountId="U0000000" fromDate="20240101" toDate="20241231"><CashTransactions>
<CashTransaction currency="USD" assetCategory="STK" symbol="NLCP" conid="509735674"
 description="NLCP(US6514951036) CASH DIVIDEND USD 0.41 PER SHARE (Ordinary Dividend)"
 dateTime="20240415 202000" amount="17" type="Dividends" reportDate="20240415" settleDate="20240415"
 actionID="136123481"/>
<CashTransaction currency="USD" assetCategory="STK" symbol="NLCP" conid="509735674"
 description="NLCP(US6514951036) CASH DIVIDEND USD 0.41 PER SHARE - US TAX"
 dateTime="20240415 202000" amount="-5.1" type="Withholding Tax" reportDate="20240415" settleDate="20240415"
 actionID="136123481"/>
</CashTransactions></FlexStatement></FlexStatements></FlexQueryResponse>"""


def test_corrections_of_an_earlier_year_are_new_and_reimport_stays_idempotent(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    path = shared_data("ibkr_flex", "opensteuerauszug", "options_future_2025.xml")
    text = path.read_text()
    cash_rows = len(re.findall(r"<CashTransaction\s", text))
    corrections = re.findall(r'<CashTransaction [^>]*actionID="136123481"', text)
    assert len(corrections) == 4  # +5.10, -4.48, +1.05, -0.92 reported on 31 Jan 2025

    first = import_statement(migrated_sqlite, parse_flex(STATEMENT_2024))
    assert first["CashTransaction"] == {"read": 2, "new": 2}
    second = import_statement(migrated_sqlite, parse_flex(path))
    assert second["CashTransaction"] == {"read": cash_rows, "new": cash_rows}
    # Overlapping statements (the same two again) change nothing.
    assert import_statement(migrated_sqlite, parse_flex(path))["CashTransaction"]["new"] == 0
    assert import_statement(migrated_sqlite, parse_flex(STATEMENT_2024))["CashTransaction"]["new"] == 0
    with Session(migrated_sqlite) as session:
        rows = session.exec(select(Transaction).where(Transaction.symbol == "NLCP")).all()
    nlcp = [t.amount for t in rows if t.raw.get("dateTime", "").startswith("20240415")]
    # Net withholding on the April 2024 dividend: -5.10 + 5.10 - 4.48 + 1.05 - 0.92 = -4.35.
    assert sorted(nlcp) == sorted([D("17"), D("-5.1"), D("5.1"), D("-4.48"), D("1.05"), D("-0.92")])
    assert sum(a for a in nlcp if a < 17) == D("-4.35")



def test_cash_rows_stored_under_the_old_action_id_keys_are_not_imported_again(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    data = parse_flex(STATEMENT_2024)
    with Session(migrated_sqlite) as session:
        for n, record in enumerate(data.records, start=1):
            session.add(Transaction(broker="ibkr", account="U0000000", type="dividend",
                                    broker_txn_id="CashTransaction:actionID:136123481" + ("" if n == 1 else f"#{n}"),
                                    amount=D(record.get("amount")), executed_at=record.when,
                                    raw={"record": "CashTransaction", **record.attrs}))
        session.commit()
    assert import_statement(migrated_sqlite, data)["CashTransaction"] == {"read": 2, "new": 0}
