"""IBKR adapter: a real-money account or a live port never trades without the live opt-in (reading and
syncing it is fine); fractional share quantities are never silently truncated."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal as D

import pytest
from ib_async import Position, Stock

from engine.config import RiskSettings
from engine.execution.brokers.ibkr import IBKRBroker
from engine.execution.ports import AssetType, BrokerRejected, Leg, Side
from engine.risk import Intent, PortfolioRisk, ProposedOrder, evaluate
from tests.ibkr.fake_ib import FakeIB

CALL = Leg("AAPL  261218C00150000", Side.buy, 1, AssetType.option, "AAPL", "C", D("150"), date(2026, 12, 18))


def _gate_pass():  # type: ignore[no-untyped-def]
    order = ProposedOrder(client_order_id="c-live", underlying="AAPL", sector="Information Technology",
                          intent=Intent.open, legs=(CALL,), quantity=1, limit_price=D("2.40"),
                          max_loss_per_unit=D("1"), buying_power_per_unit=D("1"))
    big = D("1000000000")
    decision = evaluate(order, PortfolioRisk(big, big, big, 0, D("0")), RiskSettings())
    assert decision.gate_pass is not None
    return decision.gate_pass


class GatewayIB(FakeIB):
    """The fake with ``connect`` (what ``IBKRBroker.connect`` calls on ``ib_async.IB``)."""

    def __init__(self, accounts: list[str]) -> None:
        super().__init__()
        self.accounts = accounts

    def connect(self, host: str, port: int, clientId: int, account: str = "", timeout: float = 0) -> None:
        self.connected = True

    def managedAccounts(self) -> list[str]:
        return self.accounts


@pytest.mark.parametrize(("port", "account"), [(4001, "DU1"), (7496, "DU1"), (4002, "U7654321")])
def test_live_port_or_real_account_refuses_orders_without_the_live_opt_in(
        monkeypatch: pytest.MonkeyPatch, port: int, account: str) -> None:
    from engine.config import load_settings

    monkeypatch.setenv("QM_IBKR__PORT", str(port))
    fake = GatewayIB([account])
    monkeypatch.setattr("ib_async.IB", lambda: fake)
    broker = IBKRBroker.connect(load_settings().ibkr)  # paper trading mode (the default)
    assert broker.environment == "production"
    assert broker.positions() == []  # reading (sync, tax lots) is allowed
    with pytest.raises(BrokerRejected, match="QM_TRADING_MODE=live") as err:
        broker.submit(_gate_pass())
    assert "QM_LIVE_TRADING_CONFIRMED" in str(err.value)
    assert fake.placed == []


def test_paper_port_and_account_trade_and_live_opt_in_trades(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import load_settings

    fake = GatewayIB(["DU1"])
    monkeypatch.setattr("ib_async.IB", lambda: fake)
    paper = IBKRBroker.connect(load_settings().ibkr)
    assert paper.environment == "paper"
    paper.submit(_gate_pass())
    live = IBKRBroker(FakeIB(), "U7654321", live_trading=True)
    live.submit(_gate_pass())
    assert live.ib.placed  # type: ignore[attr-defined]


def test_fractional_shares_are_not_truncated(caplog: pytest.LogCaptureFixture) -> None:
    ib = FakeIB()
    msft = Stock("MSFT", "SMART", "USD")
    ib._positions = [Position("DU1", msft, 10.5, 401.25)]
    ib.fill(msft, "e-frac", "BOT", 0.5, 400.0, 0.01, "")
    broker = IBKRBroker(ib, "DU1")
    with caplog.at_level(logging.WARNING):
        (pos,) = broker.positions()
    # The port counts whole units: the position is rounded away from zero (the gate counts at least all of
    # it) and the exact quantity is logged.
    assert pos.quantity == 11 and "10.5" in caplog.text
    assert broker.fills() == []  # half a share is no engine order; the exact row is in transactions()
    (txn,) = broker.transactions()
    assert (txn.quantity, txn.amount) == (D("0.5"), D("-200.01"))
