"""IBKR adapter without a gateway: a fake ``IBClient`` returning real ib_async objects."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from ib_async import Option, Position, Stock

from engine.config import RiskSettings
from engine.execution.brokers.ibkr import IBKRBroker, instrument_of
from engine.execution.ports import (
    AssetType,
    Broker,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    PreviewingBroker,
    Side,
)
from engine.risk import Intent, PortfolioRisk, ProposedOrder, evaluate
from tests.ibkr.fake_ib import FakeIB

EXP = date(2026, 12, 18)
CALL_150 = Leg("AAPL  261218C00150000", Side.buy, 1, AssetType.option, "AAPL", "C", D("150"), EXP)
CALL_160 = Leg("AAPL  261218C00160000", Side.sell, 1, AssetType.option, "AAPL", "C", D("160"), EXP)
PUT_140 = Leg("AAPL  261218P00140000", Side.sell, 1, AssetType.option, "AAPL", "P", D("140"), EXP)


def proposed(cid: str, legs: list[Leg], qty: int, limit: str) -> ProposedOrder:
    return ProposedOrder(client_order_id=cid, underlying="AAPL", sector="Information Technology",
                         intent=Intent.open, legs=tuple(legs), quantity=qty, limit_price=D(limit),
                         max_loss_per_unit=D("1"), buying_power_per_unit=D("1"))


def gate(cid: str, legs: list[Leg], qty: int, limit: str):  # type: ignore[no-untyped-def]
    big = D("1000000000")
    decision = evaluate(proposed(cid, legs, qty, limit), PortfolioRisk(big, big, big, 0, D("0")), RiskSettings())
    assert decision.gate_pass is not None
    return decision.gate_pass


@pytest.fixture
def ib() -> FakeIB:
    return FakeIB()


@pytest.fixture
def broker(ib: FakeIB) -> IBKRBroker:
    return IBKRBroker(ib, "DU1", settle_s=0.2)


def test_is_a_broker_and_previews(broker: IBKRBroker) -> None:
    assert isinstance(broker, Broker) and isinstance(broker, PreviewingBroker)


def test_single_leg_limit_order_carries_order_ref(broker: IBKRBroker, ib: FakeIB) -> None:
    result = broker.submit(gate("c-1", [CALL_150], 2, "2.40"))
    contract, order = ib.placed[0]
    assert isinstance(contract, Option) and contract.lastTradeDateOrContractMonth == "20261218"
    assert (contract.strike, contract.right, contract.multiplier) == (150.0, "C", "100")
    assert (order.action, order.totalQuantity, order.lmtPrice, order.orderType) == ("BUY", 2, 2.40, "LMT")
    assert order.orderRef == "c-1" and order.account == "DU1" and order.tif == "DAY"
    assert result.status is BrokerOrderStatus.working and result.client_order_id == "c-1"


def test_sell_to_close_limit_is_positive_for_ib(broker: IBKRBroker, ib: FakeIB) -> None:
    broker.submit(gate("c-2", [CALL_150.reversed()], 1, "-2.10"))
    _, order = ib.placed[0]
    assert (order.action, order.lmtPrice) == ("SELL", 2.10)


def test_two_leg_combo_is_a_bag_with_one_net_limit(broker: IBKRBroker, ib: FakeIB) -> None:
    broker.submit(gate("c-3", [CALL_150, CALL_160], 3, "4.15"))
    bag, order = ib.placed[0]
    assert bag.secType == "BAG" and bag.symbol == "AAPL"
    assert [(leg.action, leg.ratio) for leg in bag.comboLegs] == [("BUY", 1), ("SELL", 1)]
    assert all(leg.conId for leg in bag.comboLegs)
    assert (order.action, order.totalQuantity, order.lmtPrice) == ("BUY", 3, 4.15)
    assert order.orderComboLegs == []  # guaranteed combo: one overall limit, no per-leg prices


def test_credit_combo_has_a_negative_net_limit(broker: IBKRBroker, ib: FakeIB) -> None:
    broker.submit(gate("c-4", [PUT_140, CALL_160], 1, "-1.25"))
    _, order = ib.placed[0]
    assert (order.action, order.lmtPrice) == ("BUY", -1.25)


def test_per_leg_prices_only_on_two_leg_non_guaranteed_combos() -> None:
    from engine.execution.brokers.ibkr_orders import combo_order

    order = combo_order(1, D("1"), "x", "DU1", "day", 2, leg_prices=[D("2.5"), D("1.5")], non_guaranteed=True)
    assert [leg.price for leg in order.orderComboLegs] == [2.5, 1.5]
    assert order.smartComboRoutingParams[0].tag == "NonGuaranteed"
    with pytest.raises(ValueError, match="2-leg non-guaranteed"):
        combo_order(1, D("1"), "x", "DU1", "day", 3, leg_prices=[D("1")] * 3, non_guaranteed=True)
    with pytest.raises(ValueError, match="guaranteed"):
        combo_order(1, D("1"), "x", "DU1", "day", 2, leg_prices=[D("1"), D("1")])


def test_submit_is_idempotent_by_client_order_id(broker: IBKRBroker, ib: FakeIB) -> None:
    gp = gate("c-5", [CALL_150], 1, "2.40")
    first = broker.submit(gp)
    second = broker.submit(gp)
    assert ib.calls.count("placeOrder") == 1 and first.broker_order_id == second.broker_order_id


def test_informational_10349_does_not_cancel_a_live_order(broker: IBKRBroker, ib: FakeIB) -> None:
    def answer(trade):  # type: ignore[no-untyped-def]
        ib.ack(trade)
        ib.error(trade, 10349, "Order TIF was set to DAY based on order preset.")

    ib.on_place = answer
    result = broker.submit(gate("c-6", [CALL_150], 1, "2.40"))
    (trade,) = ib.trades()
    assert trade.orderStatus.status == "Cancelled"  # what ib_async concludes
    assert result.status is BrokerOrderStatus.working  # what is true at IB
    assert broker.order("c-6").status is BrokerOrderStatus.working  # type: ignore[union-attr]


def test_error_first_is_a_rejection(broker: IBKRBroker, ib: FakeIB) -> None:
    ib.on_place = lambda trade: ib.error(trade, 201, "Order rejected - reason: insufficient margin")
    with pytest.raises(BrokerRejected, match="201"):
        broker.submit(gate("c-7", [CALL_150], 1, "2.40"))
    assert broker.order("c-7").status is BrokerOrderStatus.rejected  # type: ignore[union-attr]


def test_price_off_the_tick_grid_on_a_new_order_is_a_rejection(broker: IBKRBroker, ib: FakeIB) -> None:
    ib.on_place = lambda trade: ib.error(trade, 110, "The price does not conform to the minimum price variation")
    with pytest.raises(BrokerRejected, match="110"):
        broker.submit(gate("c-7b", [CALL_150], 1, "2.403"))


def test_farm_notice_after_acknowledgement_keeps_the_order_working(broker: IBKRBroker, ib: FakeIB) -> None:
    def answer(trade):  # type: ignore[no-untyped-def]
        ib.ack(trade)
        ib.error(trade, 2104, "Market data farm connection is OK:usfarm")
        ib.error(trade, 399, "Order Message: Warning: your order will not be placed at the exchange until ...")

    ib.on_place = answer
    assert broker.submit(gate("c-7c", [CALL_150], 1, "2.40")).status is BrokerOrderStatus.working


def test_cancel_after_acknowledgement_is_a_cancellation(broker: IBKRBroker, ib: FakeIB) -> None:
    broker.submit(gate("c-8", [CALL_150], 1, "2.40"))
    assert broker.cancel("c-8").status is BrokerOrderStatus.cancelled


def test_fill_status_and_fills_by_exec_id(broker: IBKRBroker, ib: FakeIB) -> None:
    broker.submit(gate("c-9", [CALL_150, CALL_160], 2, "4.15"))
    (trade,) = ib.trades()
    ib.status(trade, "Filled", filled=2, avg=4.10)
    leg1 = Option("AAPL", "20261218", 150.0, "C", "SMART", multiplier="100", currency="USD")
    leg2 = Option("AAPL", "20261218", 160.0, "C", "SMART", multiplier="100", currency="USD")
    ib.fill(leg1, "e1", "BOT", 2, 6.30, 1.30, "c-9")
    ib.fill(leg2, "e2", "SLD", 2, 2.20, 1.30, "c-9")
    ib.fill(trade, "e0", "BOT", 2, 4.10, 0, "c-9")  # the BAG's own execution: repeats the legs
    order = broker.order("c-9")
    assert order is not None and order.status is BrokerOrderStatus.filled and order.avg_fill_price == D("4.1")
    fills = broker.fills("c-9")
    assert [(f.fill_id, f.instrument, f.side, f.quantity, f.price, f.commission) for f in fills] == [
        ("e1", "AAPL  261218C00150000", Side.buy, 2, D("6.3"), D("1.3")),
        ("e2", "AAPL  261218C00160000", Side.sell, 2, D("2.2"), D("1.3"))]


def test_reconnect_resubscribes_and_requeries_executions_so_no_fill_is_lost(broker: IBKRBroker,
                                                                              ib: FakeIB) -> None:
    broker.submit(gate("c-10", [CALL_150], 1, "2.40"))
    leg = Option("AAPL", "20261218", 150.0, "C", "SMART", multiplier="100", currency="USD")
    ib.fill(leg, "late", "BOT", 1, 2.40, 0.65, "c-10", server_only=True)  # filled while we were cut off
    ib.errorEvent.emit(-1, 1101, "Connectivity restored - data lost", None)
    assert [f.fill_id for f in broker.fills("c-10")] == ["late"]
    assert {"reqExecutions", "reqAllOpenOrders", "reqPositions", "reqAccountSummary"} <= set(ib.calls)
    ib.errorEvent.emit(-1, 2103, "Market data farm connection is broken:usfarm", None)
    n = ib.calls.count("reqExecutions")
    assert [f.fill_id for f in broker.fills("c-10")] == ["late"]  # re-queried, not duplicated
    assert ib.calls.count("reqExecutions") == n + 1


def test_nightly_reset_keeps_the_order_in_flight_and_never_duplicates(ib: FakeIB) -> None:
    reconnects: list[int] = []

    def reconnect() -> None:
        reconnects.append(1)
        ib.connected = True

    broker = IBKRBroker(ib, "DU1", reconnect=reconnect, settle_s=0.1)
    gp = gate("c-11", [CALL_150], 1, "2.40")
    broker.submit(gp)
    # The reset: the session's trades are gone from the client but the order still works at IB.
    ib.server_trades = ib.trades()
    ib._trades.clear()
    ib.connected = False
    ib.disconnectedEvent.emit()
    again = broker.submit(gp)  # the engine retries after the reset
    assert reconnects and ib.calls.count("placeOrder") == 1
    assert again.status is BrokerOrderStatus.working and again.client_order_id == "c-11"


def test_unavailable_when_the_gateway_is_gone(ib: FakeIB) -> None:
    broker = IBKRBroker(ib, "DU1")
    ib.connected = False
    with pytest.raises(BrokerUnavailable):
        broker.submit(gate("c-12", [CALL_150], 1, "2.40"))
    assert "placeOrder" not in ib.calls


def test_preview_uses_what_if(broker: IBKRBroker, ib: FakeIB) -> None:
    preview = broker.preview(proposed("c-13", [CALL_150, CALL_160], 1, "4.15"))
    assert ib.calls == ["whatIfOrder"]
    assert preview.buying_power_effect == D("1210.5") and preview.fees == D("1.3") and preview.errors == ()
    from ib_async import OrderState

    ib.what_if = OrderState(warningText="Order size exceeds limit")
    bad = broker.preview(proposed("c-14", [CALL_150], 1, "2.40"))
    assert bad.errors and "exceeds" in bad.errors[0]
    ib.what_if_error = (201, "Order rejected - reason: YOUR ORDER IS NOT ACCEPTED. INSUFFICIENT EQUITY")
    refused = broker.preview(proposed("c-15", [CALL_150], 1, "2.40"))
    assert any(e.startswith("201: Order rejected") for e in refused.errors)
    assert "placeOrder" not in ib.calls


def test_positions_and_account_from_ib_objects(broker: IBKRBroker, ib: FakeIB) -> None:
    opt = Option("AAPL", "20261218", 150.0, "C", "SMART", multiplier="100", currency="USD")
    ib._positions = [Position("DU1", opt, -2.0, 310.0), Position("DU1", Stock("MSFT", "SMART", "USD"), 50.0, 401.25)]
    pos = {p.instrument: p for p in broker.positions()}
    assert pos["AAPL  261218C00150000"].quantity == -2 and pos["AAPL  261218C00150000"].avg_price == D("3.1")
    assert pos["MSFT"].asset is AssetType.stock and pos["MSFT"].avg_price == D("401.25")
    acct = broker.account()
    assert (acct.cash, acct.buying_power, acct.equity) == (D("25000.50"), D("100000"), D("30100.25"))
    assert instrument_of(opt) == "AAPL  261218C00150000"
