"""Interactive Brokers through TWS / IB Gateway with ``ib_async``, behind the ``Broker`` Protocol.

The gateway connection is an ``IBClient`` (the part of ``ib_async.IB`` used here), so tests run against a
fake that returns real ``ib_async`` objects built without a connection.

Traps handled (issue 15):
- informational codes (10349 "TIF set to DAY by preset", 2100-2199 farm notices, ...) must not mark a live
  order cancelled; ib_async does exactly that for codes it does not list, so the status is read from the
  trade's log, skipping entries an informational code produced;
- an error that arrives before the order was ever acknowledged is a rejection (``BrokerRejected``);
- after 1100/1101 (connectivity lost / restored with data loss) or a 2103/2105/2157 farm drop, and after
  any reconnect, open orders and executions are queried again before the next answer, so no fill is lost
  (fills are keyed by IB's execId, so a re-queried fill is never applied twice);
- the nightly reset drops the connection while orders stay at IB: nothing is re-sent. ``submit`` first looks
  the client order id up (it travels in ``orderRef``) among open and completed orders, and returns that
  order instead of placing another; the engine's reconciliation learns the fate of anything in flight.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_UP, Decimal
from typing import TYPE_CHECKING, Any, Protocol

from engine.execution.brokers.ibkr_orders import (
    RESYNC_CODES,
    combo_contract,
    combo_order,
    contract_for_leg,
    is_informational,
    single_order,
)
from engine.execution.ports import (
    AssetType,
    BrokerAccount,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerPosition,
    BrokerPreview,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.options.occ import format_occ
from engine.portfolio.sync import BrokerBalances, BrokerTransaction

if TYPE_CHECKING:
    from ib_async import Contract, Order, Trade

    from engine.config import IBKRSettings
    from engine.risk import GatePass, ProposedOrder

log = logging.getLogger(__name__)

UNSET_DOUBLE = 1.7976931348623157e308
LIVE_PORTS = frozenset({4001, 7496})  # IB Gateway live, TWS live (4002 / 7497 are their paper ports)
LIVE_REFUSED = ("IBKR {what} is real money: orders need the live opt-in, QM_TRADING_MODE=live and "
                "QM_LIVE_TRADING_CONFIRMED=true (reading positions and syncing need nothing); for paper trading "
                "use a paper account on QM_IBKR__PORT=4002 (Gateway) or 7497 (TWS)")
PENDING = frozenset({"PendingSubmit", "ApiPending"})
LIVE = frozenset({"PreSubmitted", "Submitted", "ApiUpdate", "ValidationError", "PendingCancel"})
DONE_NOT_FILLED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})


class IBClient(Protocol):
    """The subset of ``ib_async.IB`` the adapter uses."""

    errorEvent: Any
    disconnectedEvent: Any

    def isConnected(self) -> bool: ...
    def disconnect(self) -> Any: ...
    def sleep(self, secs: float = ...) -> Any: ...
    def managedAccounts(self) -> list[str]: ...
    def positions(self, account: str = ...) -> list[Any]: ...
    def portfolio(self, account: str = ...) -> list[Any]: ...
    def accountSummary(self, account: str = ...) -> list[Any]: ...
    def qualifyContracts(self, *contracts: Contract) -> list[Contract]: ...
    def placeOrder(self, contract: Contract, order: Order) -> Trade: ...
    def cancelOrder(self, order: Order, manualCancelOrderTime: str = ...) -> Any: ...
    def whatIfOrder(self, contract: Contract, order: Order) -> Any: ...
    def trades(self) -> list[Trade]: ...
    def fills(self) -> list[Any]: ...
    def reqAllOpenOrders(self) -> list[Trade]: ...
    def reqCompletedOrders(self, apiOnly: bool) -> list[Trade]: ...
    def reqExecutions(self, execFilter: Any = ...) -> list[Any]: ...
    def reqPositions(self) -> list[Any]: ...
    def reqAccountSummary(self) -> Any: ...


def _dec(value: Any) -> Decimal:
    if value in (None, "") or value == UNSET_DOUBLE:
        return Decimal("0")
    return Decimal(str(value))


def environment_of(account: str) -> str:
    """IBKR paper accounts are the D-prefixed ones (DU..., DF...); every other account is real money."""
    return "paper" if account.upper().startswith("D") else "production"


class IBKRBroker:
    name = "ibkr"

    def __init__(self, ib: IBClient, account: str, *, reconnect: Callable[[], None] | None = None,
                 settle_s: float = 3.0, currency: str = "USD", live_port: bool = False,
                 live_trading: bool = False) -> None:
        self.ib = ib
        self.account_id = account
        # What the shared sync and the page header show; a live port is real money whatever the account.
        self.environment = "production" if live_port else environment_of(account)
        self._live_port = live_port
        self._live_trading = live_trading  # the operator's live opt-in (QM_TRADING_MODE=live, confirmed)
        self._reconnect = reconnect
        self._settle_s = settle_s
        self._currency = currency
        self._errors: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self._recent: list[tuple[int, int, str]] = []  # every message, in order (for request-scoped errors)
        self._needs_resync = False
        self._contracts: dict[str, Contract] = {}
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnect

    @classmethod
    def connect(cls, cfg: IBKRSettings, *, live_trading: bool | None = None) -> IBKRBroker:
        """Connect to TWS/Gateway. ``live_trading`` defaults to the settings' live opt-in: without it a live
        port or a real-money account can be read and synced but never sent an order."""
        import ib_async

        if live_trading is None:
            from engine.config import TradingMode, get_settings

            live_trading = get_settings().trading_mode is TradingMode.live  # implies the confirmation
        ib = ib_async.IB()

        def _connect() -> None:
            ib.connect(cfg.host, cfg.port, clientId=cfg.client_id, account=cfg.account or "", timeout=15)

        try:
            _connect()
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailable(f"TWS/Gateway not reachable at {cfg.host}:{cfg.port} "
                                    f"(QM_IBKR__HOST/QM_IBKR__PORT): {type(exc).__name__}") from None
        account = cfg.account or (ib.managedAccounts() or [""])[0]
        return cls(ib, account, reconnect=_connect, live_port=cfg.port in LIVE_PORTS, live_trading=live_trading)

    @property
    def account_number(self) -> str:
        """The shared sync's name for the account (``SyncableBroker``)."""
        return self.account_id

    def close(self) -> None:
        self.ib.disconnect()

    # -- connection ----------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if req_id and req_id > 0:
            self._errors[req_id].append((code, message))
        self._recent = [*self._recent[-199:], (req_id, code, message)]
        if code in RESYNC_CODES:
            self._needs_resync = True

    def _on_disconnect(self) -> None:
        self._needs_resync = True

    def _ready(self) -> None:
        if not self.ib.isConnected():
            if self._reconnect is None:
                raise BrokerUnavailable("not connected to TWS/Gateway")
            try:
                self._reconnect()
            except (OSError, TimeoutError, ConnectionError) as exc:
                raise BrokerUnavailable(f"reconnect to TWS/Gateway failed: {type(exc).__name__}") from None
            self._needs_resync = True
        if self._needs_resync:
            self.resync()

    def resync(self) -> None:
        """After a reconnect or a farm drop: subscribe to positions and account values again, and re-query
        open and completed orders and the executions, so nothing that happened meanwhile is missed."""
        self.ib.reqPositions()
        self.ib.reqAccountSummary()
        self.ib.reqAllOpenOrders()
        self.ib.reqCompletedOrders(False)
        self.ib.reqExecutions()
        self._needs_resync = False

    # -- orders --------------------------------------------------------------------------------

    def _qualified(self, legs: Sequence[Leg]) -> list[Contract]:
        missing = [leg for leg in legs if leg.instrument not in self._contracts]
        if missing:
            wanted = [contract_for_leg(leg, self._currency) for leg in missing]
            got = self.ib.qualifyContracts(*wanted)
            for leg, contract in zip(missing, wanted, strict=True):
                if not getattr(contract, "conId", 0) or contract not in got:
                    raise BrokerRejected(f"IB has no unique contract for {leg.instrument!r}")
                self._contracts[leg.instrument] = contract
        return [self._contracts[leg.instrument] for leg in legs]

    def _build(self, legs: Sequence[Leg], quantity: int, limit: Decimal, coid: str, tif: str,
               underlying: str) -> tuple[Contract, Order]:
        contracts = self._qualified(legs)
        if len(legs) == 1:
            return contracts[0], single_order(legs[0], quantity, limit, coid, self.account_id, tif)
        bag = combo_contract(underlying, legs, [c.conId for c in contracts], self._currency)
        return bag, combo_order(quantity, limit, coid, self.account_id, tif, len(legs))

    def _trade_for(self, client_order_id: str) -> Trade | None:
        found = [t for t in self.ib.trades() if t.order.orderRef == client_order_id]
        return found[-1] if found else None

    def submit(self, gate_pass: GatePass) -> BrokerOrder:
        if self.environment == "production" and not self._live_trading:
            what = "on a live port (4001 Gateway, 7496 TWS)" if self._live_port else f"account {self.account_id}"
            raise BrokerRejected(LIVE_REFUSED.format(what=what))
        self._ready()
        existing = self._trade_for(gate_pass.client_order_id)
        if existing is None:
            # After a reconnect (nightly reset) this session's trade list is rebuilt from IB only on request.
            self.resync()
            existing = self._trade_for(gate_pass.client_order_id)
        if existing is not None:
            return self._to_order(existing)
        try:
            contract, order = self._build(gate_pass.legs, gate_pass.quantity, gate_pass.limit_price,
                                          gate_pass.client_order_id, gate_pass.time_in_force, gate_pass.underlying)
        except ValueError as exc:
            raise BrokerRejected(str(exc)) from None
        try:
            trade = self.ib.placeOrder(contract, order)
        except (OSError, ConnectionError, TimeoutError) as exc:
            raise BrokerUnavailable(f"placeOrder {gate_pass.client_order_id}: {type(exc).__name__}") from None
        self._settle(trade)
        result = self._to_order(trade)
        if result.status is BrokerOrderStatus.rejected:
            raise BrokerRejected(result.reason or "rejected by IB")
        return result

    def _settle(self, trade: Trade) -> None:
        """Wait (bounded) for IB's first answer: an acknowledgement or an error."""
        deadline = time.monotonic() + self._settle_s
        while time.monotonic() < deadline:
            if trade.orderStatus.status not in PENDING or self._hard_errors(trade):
                return
            self.ib.sleep(0.05)

    def _hard_errors(self, trade: Trade) -> list[tuple[int, str]]:
        return [(c, m) for c, m in self._errors.get(trade.order.orderId, []) if not is_informational(c)]

    def status_of(self, trade: Trade) -> tuple[BrokerOrderStatus, str]:
        # The log, newest first, without the entries an informational code produced.
        entries = [e for e in trade.log if not (e.errorCode and is_informational(e.errorCode))]
        status = entries[-1].status if entries else trade.orderStatus.status
        if trade.orderStatus.status == "Filled" or status == "Filled":
            return BrokerOrderStatus.filled, ""
        acknowledged = any(e.status in LIVE and not e.errorCode for e in trade.log) or trade.orderStatus.filled > 0
        hard = self._hard_errors(trade) + [(e.errorCode, e.message) for e in trade.log
                                           if e.errorCode and not is_informational(e.errorCode)]
        reason = "; ".join(f"{c}: {m}" for c, m in dict(hard).items())
        if status in DONE_NOT_FILLED:
            if not acknowledged and (hard or status == "Inactive"):
                return BrokerOrderStatus.rejected, reason or status
            return BrokerOrderStatus.cancelled, reason
        if hard and not acknowledged:
            return BrokerOrderStatus.rejected, reason  # error-first: never live
        return BrokerOrderStatus.working, ""

    def _to_order(self, trade: Trade) -> BrokerOrder:
        status, reason = self.status_of(trade)
        order, st = trade.order, trade.orderStatus
        is_bag = getattr(trade.contract, "secType", "") == "BAG"
        sign = 1 if is_bag or order.action == "BUY" else -1  # a BAG's net price already has our sign
        avg = Decimal(str(st.avgFillPrice)) * sign if st.filled else None
        return BrokerOrder(client_order_id=order.orderRef, broker_order_id=str(order.permId or order.orderId),
                           status=status, quantity=int(order.totalQuantity),
                           filled_quantity=int(st.filled), avg_fill_price=avg, reason=reason)

    def cancel(self, client_order_id: str) -> BrokerOrder:
        self._ready()
        trade = self._trade_for(client_order_id)
        if trade is None:
            raise BrokerRejected(f"no order {client_order_id!r} at IB")
        if trade.orderStatus.status not in DONE_NOT_FILLED | {"Filled"}:
            self.ib.cancelOrder(trade.order)
        return self._to_order(trade)

    def order(self, client_order_id: str) -> BrokerOrder | None:
        self._ready()
        trade = self._trade_for(client_order_id)
        return None if trade is None else self._to_order(trade)

    def preview(self, order: ProposedOrder) -> BrokerPreview:
        """IB's ``whatIfOrder``: margin and commission impact, nothing sent to the exchange."""
        self._ready()
        try:
            contract, ib_order = self._build(order.legs, order.quantity, order.limit_price, order.client_order_id,
                                             order.time_in_force, order.underlying)
        except (ValueError, BrokerRejected) as exc:
            return BrokerPreview(Decimal("0"), Decimal("0"), errors=(str(exc),))
        seen = len(self._recent)
        state = self.ib.whatIfOrder(contract, ib_order)
        raw = {k: getattr(state, k, None) for k in ("status", "initMarginChange", "maintMarginChange",
                                                     "equityWithLoanChange", "commission", "minCommission",
                                                     "maxCommission", "commissionCurrency", "warningText")}
        # whatIfOrder runs under its own request id: the errors are the ones that arrived during the call.
        errors: list[str] = [f"{c}: {m}" for r, c, m in self._recent[seen:] if r != -1 and not is_informational(c)]
        warnings = (state.warningText,) if getattr(state, "warningText", "") else ()
        if not getattr(state, "initMarginChange", ""):
            errors.append("whatIfOrder returned no margin impact" + (f": {warnings[0]}" if warnings else ""))
            return BrokerPreview(Decimal("0"), Decimal("0"), errors=tuple(errors), warnings=warnings, raw=raw)
        # Buying power used = the fall in available funds (equity with loan - initial margin).
        bp = _dec(state.initMarginChange) - _dec(state.equityWithLoanChange)
        fees = _dec(state.commission) or _dec(state.maxCommission)
        return BrokerPreview(bp, fees, errors=tuple(errors), warnings=warnings, raw=raw)

    # -- state ---------------------------------------------------------------------------------

    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]:
        self._ready()
        out: dict[str, BrokerFill] = {}
        for f in self.ib.fills():
            c, ex = f.contract, f.execution
            if getattr(c, "secType", "") == "BAG":
                continue  # a combo's own execution repeats its legs'
            if client_order_id is not None and ex.orderRef != client_order_id:
                continue
            shares = _dec(ex.shares)
            if shares != shares.to_integral_value():
                # A fractional share is never an engine order (whole contracts and shares); the exact
                # execution is kept by transactions(), so nothing is truncated to a wrong fill here.
                log.warning("IBKR fill %s of %s shares of %s is fractional: left to transactions()",
                            ex.execId, shares, instrument_of(c))
                continue
            report = f.commissionReport
            out[ex.execId] = BrokerFill(
                fill_id=ex.execId, client_order_id=ex.orderRef, instrument=instrument_of(c),
                side=Side.buy if ex.side == "BOT" else Side.sell, quantity=int(shares),
                price=Decimal(str(ex.price)), commission=_dec(getattr(report, "commission", 0)), fees=Decimal("0"),
                at=(ex.time or f.time).astimezone(UTC))
        return sorted(out.values(), key=lambda f: (f.at, f.fill_id))

    def events(self) -> list[BrokerEvent]:
        # TWS reports no expiry/exercise events: they come with the Flex history (OptionEAE) into the lots.
        return []

    def positions(self) -> list[BrokerPosition]:
        self._ready()
        out = []
        for p in self.ib.positions(self.account_id):
            c = p.contract
            asset = AssetType.option if c.secType == "OPT" else AssetType.stock
            mult = Decimal(c.multiplier or "1") if asset is AssetType.option else Decimal(1)
            # IB's avgCost for options is per contract (x multiplier); ours is per share.
            out.append(BrokerPosition(instrument=instrument_of(c), quantity=_whole_units(p.position, instrument_of(c)),
                                      avg_price=Decimal(str(p.avgCost)) / mult, asset=asset, underlying=c.symbol))
        return out

    def _summary(self) -> dict[str, Decimal]:
        self._ready()
        values: dict[str, Decimal] = {}
        for v in self.ib.accountSummary(self.account_id):
            if v.currency in (self._currency, "BASE", ""):
                try:
                    values.setdefault(v.tag, Decimal(v.value))
                except ArithmeticError:
                    continue
        missing = [t for t in ("TotalCashValue", "BuyingPower", "NetLiquidation") if t not in values]
        if missing:
            raise BrokerUnavailable(f"account summary of {self.account_id} lacks {', '.join(missing)}")
        return values

    def account(self) -> BrokerAccount:
        values = self._summary()
        return BrokerAccount(cash=values["TotalCashValue"], buying_power=values["BuyingPower"],
                             equity=values["NetLiquidation"])

    def balances(self) -> BrokerBalances:
        """The account summary as the shared sync stores it (``SyncableBroker``)."""
        values = self._summary()
        return BrokerBalances(net_liquidating_value=values["NetLiquidation"], cash_balance=values["TotalCashValue"],
                              buying_power=values["BuyingPower"], equity_buying_power=values["BuyingPower"],
                              maintenance_requirement=values.get("MaintMarginReq", Decimal("0")),
                              raw={k: str(v) for k, v in values.items()})

    def transactions(self, since: date | None = None) -> list[BrokerTransaction]:
        """The session's executions as ``execution`` rows (keyed by IB's execId), exact in Decimal.

        They bridge the day until its Flex statement arrives; the history itself comes from Flex into the
        same table, and the lot engine reads only Flex trades (the broker's official record), so an
        execution is never counted twice."""
        self._ready()
        out: dict[str, BrokerTransaction] = {}
        for f in self.ib.fills():
            c, ex = f.contract, f.execution
            if getattr(c, "secType", "") == "BAG":
                continue  # a combo's own execution repeats its legs'
            at = (ex.time or f.time).astimezone(UTC)
            if since is not None and at.date() < since:
                continue
            shares = _dec(ex.shares) * (1 if ex.side == "BOT" else -1)
            price = _dec(ex.price)
            mult = _dec(getattr(c, "multiplier", "") or "1") or Decimal(1)
            fees = _dec(getattr(f.commissionReport, "commission", 0))
            out[ex.execId] = BrokerTransaction(
                broker="ibkr", account=self.account_id[:32], broker_txn_id=f"exec:{ex.execId}"[:64],
                type="execution", symbol=instrument_of(c), underlying=c.symbol, quantity=shares, price=price,
                amount=-shares * price * mult - fees, fees=fees, currency=getattr(c, "currency", "") or "USD",
                executed_at=at, raw={"client_order_id": ex.orderRef, "source": "tws", "multiplier": str(mult)})
        return sorted(out.values(), key=lambda t: (t.executed_at, t.broker_txn_id))


def _whole_units(value: Any, instrument: str) -> int:
    """A position in the port's whole units. A fractional one (fractional shares) is rounded away from zero,
    never truncated, so the risk gate counts at least all of it; the exact quantity is logged."""
    exact = _dec(value)
    whole = exact.to_integral_value(rounding=ROUND_UP)
    if whole != exact:
        log.warning("IBKR position %s of %s is fractional: counted as %s", exact, instrument, whole)
    return int(whole)


def instrument_of(contract: Any) -> str:
    """Our instrument id: the ticker for stock, the padded OCC symbol for an option."""
    if contract.secType == "OPT":
        expiry = datetime.strptime(contract.lastTradeDateOrContractMonth[:8], "%Y%m%d").date()
        return format_occ(contract.symbol, expiry, contract.right[:1], Decimal(str(contract.strike)))
    return contract.symbol
