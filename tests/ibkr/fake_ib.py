"""A fake gateway behind ``IBClient``: real ``ib_async`` objects (Trade, OrderStatus, Fill, Execution,
Position, AccountValue, OrderState) built without a connection, and IB's behaviour scripted per test.

It reproduces what ib_async's wrapper does on an error for an order (``wrapper.error``): a code ib_async
does not list as a warning flags the trade Cancelled with a log entry carrying the code, even when IB
meant it as information (10349)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from eventkit import Event
from ib_async import (
    AccountValue,
    CommissionReport,
    Contract,
    Execution,
    Fill,
    Order,
    OrderState,
    OrderStatus,
    Position,
    Trade,
)
from ib_async.objects import TradeLogEntry

IB_WARNINGS = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167})  # ib_async wrapper.error
T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class FakeIB:
    def __init__(self) -> None:
        self.errorEvent = Event("errorEvent")
        self.disconnectedEvent = Event("disconnectedEvent")
        self.connected = True
        self._trades: list[Trade] = []
        self.server_trades: list[Trade] = []  # what IB still has after a reset (returned by req*Orders)
        self._fills: list[Fill] = []
        self.server_fills: list[Fill] = []
        self.placed: list[tuple[Contract, Order]] = []
        self.on_place: Callable[[Trade], None] = lambda trade: self.ack(trade)
        self.what_if = OrderState(initMarginChange="1200.5", equityWithLoanChange="-10", commission=1.3)
        self.what_if_error: tuple[int, str] | None = None
        self.calls: list[str] = []
        self._next_id = 100
        self._con_id = 5000
        self.summary = [AccountValue("DU1", "TotalCashValue", "25000.50", "USD", ""),
                        AccountValue("DU1", "BuyingPower", "100000", "USD", ""),
                        AccountValue("DU1", "NetLiquidation", "30100.25", "USD", "")]
        self._positions: list[Position] = []

    # connection
    def isConnected(self) -> bool:
        return self.connected

    def disconnect(self) -> None:
        self.connected = False

    def sleep(self, secs: float = 0.02) -> bool:
        return True

    def managedAccounts(self) -> list[str]:
        return ["DU1"]

    # state
    def positions(self, account: str = "") -> list[Position]:
        return list(self._positions)

    def portfolio(self, account: str = "") -> list:
        return []

    def accountSummary(self, account: str = "") -> list[AccountValue]:
        return list(self.summary)

    def qualifyContracts(self, *contracts: Contract) -> list[Contract]:
        for c in contracts:
            self._con_id += 1
            c.conId = self._con_id
        return list(contracts)

    # orders
    def placeOrder(self, contract: Contract, order: Order) -> Trade:
        self.calls.append("placeOrder")
        self._next_id += 1
        order.orderId = self._next_id
        order.permId = 9_000_000 + self._next_id
        trade = Trade(contract, order, OrderStatus(orderId=order.orderId, status=OrderStatus.PendingSubmit), [],
                      [TradeLogEntry(T, OrderStatus.PendingSubmit)])
        self._trades.append(trade)
        self.placed.append((contract, order))
        self.on_place(trade)
        return trade

    def cancelOrder(self, order: Order, manualCancelOrderTime: str = "") -> Trade | None:
        for t in self._trades:
            if t.order is order:
                self.status(t, "Cancelled")
                return t
        return None

    def whatIfOrder(self, contract: Contract, order: Order) -> OrderState:
        self.calls.append("whatIfOrder")
        if self.what_if_error is not None:
            self.errorEvent.emit(777, *self.what_if_error, None)  # under the request's own id
            return OrderState()
        return self.what_if

    def trades(self) -> list[Trade]:
        return list(self._trades)

    def fills(self) -> list[Fill]:
        return list(self._fills)

    def reqAllOpenOrders(self) -> list[Trade]:
        self.calls.append("reqAllOpenOrders")
        for t in self.server_trades:
            if t not in self._trades:
                self._trades.append(t)
        return list(self._trades)

    def reqCompletedOrders(self, apiOnly: bool) -> list[Trade]:
        self.calls.append("reqCompletedOrders")
        return []

    def reqPositions(self) -> list[Position]:
        self.calls.append("reqPositions")
        return list(self._positions)

    def reqAccountSummary(self) -> None:
        self.calls.append("reqAccountSummary")

    def reqExecutions(self, execFilter: object = None) -> list[Fill]:
        self.calls.append("reqExecutions")
        for f in self.server_fills:
            if f not in self._fills:
                self._fills.append(f)
        return list(self._fills)

    # scripting IB's answers
    def ack(self, trade: Trade) -> None:
        self.status(trade, "Submitted")

    def status(self, trade: Trade, status: str, filled: float = 0, avg: float = 0) -> None:
        trade.orderStatus.status = status
        trade.orderStatus.filled = filled
        trade.orderStatus.avgFillPrice = avg
        trade.log.append(TradeLogEntry(T, status))

    def error(self, trade: Trade | None, code: int, message: str) -> None:
        """What ib_async's wrapper does with an error message, then the errorEvent."""
        req_id = trade.order.orderId if trade else -1
        if trade is not None:
            warning = code in IB_WARNINGS or 2100 <= code < 2200
            if warning:
                trade.orderStatus.status = OrderStatus.ValidationError
                trade.log.append(TradeLogEntry(T, OrderStatus.ValidationError, message, code))
            elif not trade.isDone():
                trade.orderStatus.status = OrderStatus.Cancelled
                trade.log.append(TradeLogEntry(T, OrderStatus.Cancelled, message, code))
        self.errorEvent.emit(req_id, code, message, None)

    def fill(self, trade_or_contract: Trade | Contract, exec_id: str, side: str, shares: float, price: float,
             commission: float, order_ref: str, server_only: bool = False) -> Fill:
        contract = trade_or_contract.contract if isinstance(trade_or_contract, Trade) else trade_or_contract
        ex = Execution(execId=exec_id, time=T, acctNumber="DU1", side=side, shares=shares, price=price,
                       orderRef=order_ref)
        f = Fill(contract, ex, CommissionReport(execId=exec_id, commission=commission, currency="USD"), T)
        (self.server_fills if server_only else self._fills).append(f)
        return f
