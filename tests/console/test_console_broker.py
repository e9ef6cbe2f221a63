"""Broker and Transactions pages on a synced tastytrade account (stored sync state, no broker call)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.models import BrokerSyncState, Position, Transaction
from engine.queries import broker as q

ACCOUNT = "SENTINEL-5WX00042"
SYNCED = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


@pytest.fixture
def synced(empty, db, monkeypatch):  # type: ignore[no-untyped-def]
    from engine.config import get_settings
    from engine.db import session_scope

    monkeypatch.setenv("QM_BROKER", "tastytrade")
    get_settings.cache_clear()
    with session_scope(db) as s:
        s.add(BrokerSyncState(
            broker="tastytrade", account=ACCOUNT, environment="sandbox", last_sync_at=SYNCED, transactions_total=2,
            balances={"net_liquidating_value": "15500.0", "cash_balance": "10000.0", "buying_power": "10000.0"},
            positions=[{"symbol": "SPY   261218C00600000", "quantity": 2, "average_open_price": "4.00",
                        "instrument_type": "option", "underlying": "SPY"},
                       {"symbol": "SPY   261218C00610000", "quantity": -2, "average_open_price": "1.50",
                        "instrument_type": "option", "underlying": "SPY"}]))
        for i, (kind, sym, amount) in enumerate([("dividend", "KBWD", "27.74"), ("trade", "SPY   261218C00600000",
                                                                                 "-801.14")]):
            s.add(Transaction(broker="tastytrade", account=ACCOUNT, broker_txn_id=str(100 + i), type=kind, symbol=sym,
                              underlying=sym.split()[0], amount=Decimal(amount), executed_at=SYNCED))
    yield db
    get_settings.cache_clear()


def _page_modules() -> list[str]:
    """Every page module in pages/: a page added later without the shared header fails here too."""
    pages = Path(__file__).resolve().parents[2] / "pages"
    return sorted(p.stem for p in pages.glob("*.py") if not p.stem.startswith("_"))


def test_every_page_header_names_environment_and_account(synced, console) -> None:  # type: ignore[no-untyped-def]
    pages = _page_modules()
    assert {"overview", "broker", "backtests", "tax_lots"} <= set(pages)  # the listing itself works
    for page in pages:
        at = console().open(page)
        captions = " ".join(str(c.value) for c in at.caption)
        assert "SANDBOX" in captions and f"account {ACCOUNT}" in captions, page


def test_broker_page_side_by_side_and_adopt_through_the_gate(synced, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("broker")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Net liquidating value"] == "$15,500.00" and metrics["Cash"] == "$10,000.00"
    table = at.dataframe[0].value
    assert list(table["kind"]) == ["external", "external"]
    assert list(table["broker_quantity"]) == [2, -2] and list(table["engine_quantity"]) == [0, 0]
    external = at.dataframe[1].value
    assert list(external["underlying"]) == ["SPY"] and list(external["risk"]) == [500.0]
    at.text_input(key="adopt_reason").input("hedge I opened by hand")
    at.button(key="adopt").click().run()
    assert not at.exception
    assert "adopted +2 SPY   261218C00600000" in " ".join(str(s.value) for s in at.success)
    with Session(synced) as s:
        pos = s.exec(select(Position)).one()
    assert pos.strategy == "adopted" and pos.quantity == 2 and pos.entry_price == Decimal("2.50")
    assert list(q.positions_side_by_side(synced, _settings())["kind"]) == ["same", "same"]


def _settings():  # type: ignore[no-untyped-def]
    from engine.config import get_settings

    return get_settings()


def test_transactions_page_filters_and_exports(synced, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("transactions")
    assert not at.exception
    at.date_input(key="txn_dates").set_value((date(2026, 11, 1), date(2026, 12, 31))).run()
    frame = at.dataframe[0].value
    assert set(frame["type"]) == {"dividend", "trade"}
    at.multiselect(key="txn_types").select("dividend").run()
    assert list(at.dataframe[0].value["symbol"]) == ["KBWD"]
    csv = q.transactions_csv(q.transactions(synced, types=["dividend"])).decode()
    assert csv.splitlines()[0].startswith("executed_at,broker,account,type,symbol")
    assert "KBWD" in csv and "27.74" in csv
    assert q.transactions(synced, symbol="spy")["symbol"].tolist() == ["SPY   261218C00600000"]
