"""``sync --broker ibkr`` stores the same sync state as tastytrade (positions, balances, differences), so the
Broker page shows IBKR and its external positions count in the gate's risk and can be adopted."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from ib_async import Option, Position, Stock
from sqlmodel import Session, select

from engine.execution.brokers.ibkr import IBKRBroker
from engine.models import BrokerSyncState, Transaction
from engine.portfolio.sync import SyncableBroker, external_risk, latest_state
from tests.ibkr.fake_ib import FakeIB

SHORT_PUT = Option("AAPL", "20261218", 140.0, "P", "SMART", multiplier="100", currency="USD")


def test_ibkr_broker_offers_what_the_shared_sync_needs() -> None:
    broker = IBKRBroker(FakeIB(), "DU1")
    assert isinstance(broker, SyncableBroker)
    assert (broker.account_number, broker.environment) == ("DU1", "paper")
    b = broker.balances()
    assert (b.net_liquidating_value, b.cash_balance, b.buying_power) == (D("30100.25"), D("25000.50"), D("100000"))


def test_sync_ibkr_writes_broker_sync_state_and_external_risk(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import get_settings
    from engine.db import get_engine
    from engine.ibkr.sync import sync_ibkr

    ib = FakeIB()
    # 2 short AAPL 140 puts opened for 3.10 (IB's avgCost is per contract: 310) and 50 MSFT.
    ib._positions = [Position("DU1", SHORT_PUT, -2.0, 310.0),
                     Position("DU1", Stock("MSFT", "SMART", "USD"), 50.0, 401.25)]
    ib.fill(SHORT_PUT, "e-1", "SLD", 2, 3.10, 1.30, "c-1")
    broker = IBKRBroker(ib, "DU1")
    settings = get_settings()
    out = sync_ibkr(settings, broker=broker, history=False)
    assert out["executions_new"] == 1
    db = get_engine(settings.db_url)
    with Session(db) as session:
        state = latest_state(session, "ibkr")
        assert state is not None and (state.account, state.environment) == ("DU1", "paper")
        assert {p["symbol"]: p["quantity"] for p in state.positions} == {"AAPL  261218P00140000": -2, "MSFT": 50}
        assert D(state.balances["net_liquidating_value"]) == D("30100.25")
        assert [d["kind"] for d in state.differences] == ["external", "external"]
        # The engine opened neither: both count in the gate. Short put: 140 x 200 - 620 received = 27,380;
        # MSFT at zero: 50 x 401.25 = 20,062.50.
        assert external_risk(session, "ibkr") == {"AAPL": D("27380.00"), "MSFT": D("20062.50")}
        (txn,) = session.exec(select(Transaction).where(Transaction.broker == "ibkr")).all()
        # Sold 2 contracts at 3.10: 620 received less 1.30 commission.
        assert (txn.type, txn.quantity, txn.amount, txn.fees) == ("execution", D(-2), D("618.70"), D("1.30"))
    again = sync_ibkr(settings, broker=broker, history=False)
    assert again["executions_new"] == 0
    with Session(db) as session:
        assert len(session.exec(select(BrokerSyncState)).all()) == 1
