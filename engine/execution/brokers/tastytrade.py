"""The tastytrade broker behind the ``Broker`` port (issue 14), on the official async SDK (PyPI ``tastytrade``).

- One anyio blocking portal, owned by the adapter, runs every SDK coroutine on one event loop thread:
  the engine's code stays synchronous and no call builds a loop of its own.
- Sessions are OAuth refresh-token sessions: the SDK refreshes the 15-minute access token before it
  expires; a 401 (token revoked or expired early) forces one refresh and a resend; a refused grant is a
  ``TastytradeAuthError`` naming QM_TASTYTRADE__REFRESH_TOKEN (engine.execution.brokers.tastytrade_http).
- Orders carry our client order id as their external identifier. Submission is idempotent: the id is
  looked up first (live orders, then recent history), and a timeout, 5xx or disconnect while placing is a
  ``BrokerUnavailable``: the engine keeps the order "submitting" until ``order()`` finds it by that
  identifier or proves it absent. It is never sent twice.
- Fills are the legs' fills of the order (and of the orders it replaced), polled each cycle.
- What must survive a restart is read from the engine's own order rows (``order_times``, wired by the
  factory): when an order was created (its history is searched back to that day) and when it last went
  to "submitting" (committed before the broker call), so an order not visible yet right after a restart
  is not taken for absent and sent a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import ValidationError
from tastytrade import Account, Session
from tastytrade.account import Transaction as TTTransaction
from tastytrade.order import InstrumentType, LimitOrder, OrderAction, PlacedOrder
from tastytrade.utils import TastytradeError

from engine.config import TastytradeSettings
from engine.execution.brokers import tastytrade_orders as tto
from engine.execution.brokers.tastytrade_http import ResilientTransport, TastytradeAuthError, TastytradeServerError
from engine.execution.ports import (
    OPTION_MULTIPLIER,
    AssetType,
    BrokerAccount,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerPreview,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
)
from engine.options.occ import parse_occ
from engine.portfolio.sync import BrokerBalances, BrokerTransaction
from engine.risk import is_gate_pass

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class OrderTimes:
    """The engine's persisted times of one client order id (from its order rows, see the factory)."""

    created_at: datetime
    sent_at: datetime | None  # when it last went to "submitting": the placement may be in flight from then

__all__ = ["TastytradeAuthError", "TastytradeBroker"]

_EVENT_KINDS = {"Expiration": "expired", "Assignment": "assigned", "Exercise": "exercised"}


class TastytradeBroker:
    name = "tastytrade"

    def __init__(self, config: TastytradeSettings, *, transport: httpx2.AsyncBaseTransport | None = None,
                 timeout_seconds: float = 10.0, request_budget_seconds: float = 20.0, backoff_seconds: float = 0.5,
                 history_days: int = 7, now: Callable[[], datetime] | None = None,
                 fees_grace: timedelta = timedelta(minutes=10), absent_after: timedelta = timedelta(seconds=60),
                 order_times: Callable[[str], OrderTimes | None] | None = None) -> None:
        if not config.configured:
            raise ValueError("tastytrade needs QM_TASTYTRADE__CLIENT_SECRET and QM_TASTYTRADE__REFRESH_TOKEN")
        self.config = config
        self.environment = "sandbox" if config.sandbox else "production"
        self.history_days = history_days
        self.fees_grace = fees_grace
        self.absent_after = absent_after
        self._unknown_since: dict[str, datetime] = {}  # client order id -> when a placement's outcome was lost
        self._order_times: Callable[[str], OrderTimes | None] = order_times or (lambda cid: None)
        self._now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self._legs: dict[str, tuple[Leg, ...]] = {}  # client order id -> legs, for unit conversion
        self._ids: dict[str, int] = {}  # client order id -> newest broker order id known
        inner = transport or httpx2.AsyncHTTPTransport(retries=0)
        self.transport = ResilientTransport(inner, request_budget_seconds, backoff_seconds)
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._session: Session = self._portal.call(self._open_session, timeout_seconds)
            self.account_number = self._call(self._resolve_account)
        except BaseException:
            self.close()
            raise

    # --- plumbing --------------------------------------------------------------------------------------

    async def _open_session(self, timeout_seconds: float) -> Session:
        assert self.config.client_secret is not None and self.config.refresh_token is not None
        session = Session(self.config.client_secret.get_secret_value(), self.config.refresh_token.get_secret_value(),
                          is_test=self.config.sandbox, transport=self.transport, timeout=timeout_seconds)
        if self.config.api_url:
            session._client.base_url = httpx2.URL(self.config.api_url)
        self.transport.session = session
        return session

    def close(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            try:
                self._portal.call(session._client.aclose)
            except Exception:  # closing must not mask the error that made us close
                log.debug("closing the tastytrade client failed", exc_info=True)
        self._portal_cm.__exit__(None, None, None)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, write: bool = False) -> T:
        """Run one SDK coroutine on the portal and translate its failures into the port's two kinds."""
        try:
            return self._portal.call(fn, *args)
        except TastytradeAuthError:
            raise
        except (httpx2.TransportError, TastytradeServerError) as exc:  # timeouts, disconnects, 5xx
            raise BrokerUnavailable(f"tastytrade: {type(exc).__name__}: {exc}") from exc
        except TastytradeError as exc:  # a 4xx with the broker's error body: a definite answer
            text = str(exc).strip() or "refused"
            if write:
                raise BrokerRejected(f"tastytrade refused: {text}") from exc
            raise BrokerUnavailable(f"tastytrade error: {text}") from exc
        except (ValidationError, KeyError) as exc:  # an answer we cannot read: treat its outcome as unknown
            raise BrokerUnavailable(f"tastytrade answer not understood: {exc}") from exc

    async def _resolve_account(self) -> str:
        wanted = self.config.account_number
        if wanted:
            account = await Account.get(self._session, wanted)
            return account.account_number
        accounts = await Account.get(self._session)
        if len(accounts) != 1:
            numbers = ", ".join(a.account_number for a in accounts) or "none"
            raise BrokerRejected(f"this tastytrade login has {len(accounts)} open accounts ({numbers}): set "
                                 "QM_TASTYTRADE__ACCOUNT_NUMBER to the one to trade")
        return accounts[0].account_number

    def _account(self) -> Account:
        # Account methods only use the number: no extra request to build one.
        return Account.model_construct(account_number=self.account_number)

    # --- orders ----------------------------------------------------------------------------------------

    def _order_for(self, client_order_id: str, legs: tuple[Leg, ...], quantity: int, limit_price: Decimal,
                   intent: str, time_in_force: str) -> LimitOrder:
        try:
            return tto.build_order(client_order_id, legs, quantity, limit_price, intent, time_in_force)
        except ValueError as exc:
            raise BrokerRejected(str(exc)) from exc

    def preview(self, order: Any) -> BrokerPreview:
        """The broker's dry run of a ``ProposedOrder``: buying-power effect, fees, errors and warnings."""
        intent = order.intent.value if hasattr(order.intent, "value") else str(order.intent)
        try:
            tt = tto.build_order(order.client_order_id, order.legs, order.quantity, order.limit_price, intent,
                                 order.time_in_force)
        except ValueError as exc:
            return BrokerPreview(Decimal(0), Decimal(0), errors=(str(exc),))
        try:
            data = self._call(self._dry_run, tt, write=True)
        except BrokerRejected as exc:
            return BrokerPreview(Decimal(0), Decimal(0), errors=(str(exc),))
        return tto.preview_of(data)

    async def _dry_run(self, order: LimitOrder) -> dict[str, Any]:
        url = f"/accounts/{self.account_number}/orders/dry-run"
        return await self._session._post(url, content=order.model_dump_json(exclude_none=True, by_alias=True))

    def submit(self, gate_pass: Any) -> BrokerOrder:
        if not is_gate_pass(gate_pass):
            raise BrokerRejected("tastytrade only accepts orders that passed the risk gate")
        cid = gate_pass.client_order_id
        legs = tuple(gate_pass.legs)
        self._legs[cid] = legs
        # Idempotent: an id the broker has seen is never placed again. No in-flight wait here: the engine
        # committed "submitting" just now, and this lookup is what decides whether to place at all.
        existing = self._lookup(cid)
        if existing is not None:
            return existing
        intent = gate_pass.intent.value if hasattr(gate_pass.intent, "value") else str(gate_pass.intent)
        tt = self._order_for(cid, legs, gate_pass.quantity, gate_pass.limit_price, intent, gate_pass.time_in_force)
        try:
            data = self._call(self._place, tt, write=True)
        except BrokerUnavailable:
            self._unknown_since.setdefault(cid, self._now())
            raise
        self._unknown_since.pop(cid, None)
        if data.get("errors"):
            raise BrokerRejected("tastytrade refused: " + "; ".join(
                f"{m.get('code')}: {m.get('message')}" for m in data["errors"]))
        placed = self._call(self._parse, data)
        self._ids[cid] = placed.id
        return tto.to_broker_order(cid, placed, legs)

    async def _place(self, order: LimitOrder) -> dict[str, Any]:
        url = f"/accounts/{self.account_number}/orders"
        return await self._session._post(url, content=order.model_dump_json(exclude_none=True, by_alias=True))

    @staticmethod
    async def _parse(data: dict[str, Any]) -> PlacedOrder:
        return tto.LenientPlacedOrder(**data["order"])  # KeyError / ValidationError: outcome unknown

    async def _get_order(self, order_id: int) -> PlacedOrder:
        return tto.LenientPlacedOrder(**await self._session._get(f"/accounts/{self.account_number}/orders/{order_id}"))

    async def _live_orders(self) -> list[PlacedOrder]:
        data = await self._session._get(f"/accounts/{self.account_number}/orders/live")
        return [tto.LenientPlacedOrder(**i) for i in data["items"]]

    async def _order_history(self, since: date | None = None) -> list[PlacedOrder]:
        start = self._now().date() - timedelta(days=self.history_days)
        if since is not None:
            start = min(start, since)
        params = {"per-page": 200, "page-offset": None, "start-date": start}
        return await self._session._paginate(tto.LenientPlacedOrder, f"/accounts/{self.account_number}/orders",
                                             params)

    async def _chain(self, client_order_id: str, since: date | None) -> list[PlacedOrder]:
        """Every broker order carrying this client order id (a replace makes a new one), oldest first."""
        found: dict[int, PlacedOrder] = {}
        known = self._ids.get(client_order_id)
        if known is not None:
            order = await self._get_order(known)
            found[order.id] = order
        else:
            for order in await self._live_orders():
                if order.external_identifier == client_order_id:
                    found[order.id] = order
            if not found:
                for order in await self._order_history(since):
                    if order.external_identifier == client_order_id:
                        found[order.id] = order
        # Follow the replace links both ways: replaced orders keep their fills, the newest is the live one.
        pending = [o for o in found.values()]
        while pending:
            o = pending.pop()
            for link in (o.replaces_order_id, o.replacing_order_id):
                if link is not None and link not in found:
                    linked = await self._get_order(link)
                    found[linked.id] = linked
                    pending.append(linked)
        return [found[k] for k in sorted(found)]

    def _newest(self, client_order_id: str) -> tuple[PlacedOrder | None, list[PlacedOrder]]:
        # History is searched back to the order's creation day: a GTC order (or one looked for after a long
        # outage) can be older than the default window, and not finding it would mean sending it again.
        times = self._order_times(client_order_id)
        since = _utc(times.created_at).date() if times is not None else None
        chain = self._call(self._chain, client_order_id, since)
        if not chain:
            return None, chain
        newest = chain[-1]
        self._ids[client_order_id] = newest.id
        return newest, chain

    def order(self, client_order_id: str) -> BrokerOrder | None:
        newest, chain = self._newest(client_order_id)
        if newest is None:
            lost = self._in_flight_since(client_order_id)
            if lost is not None and self._now() - lost < self.absent_after:
                # An order whose placement timed out may still be in flight at the broker: "absent" only
                # once it has had time to appear, or the engine would send it a second time.
                raise BrokerUnavailable(f"tastytrade: {client_order_id} not visible yet after a lost answer; "
                                        f"absent only after {self.absent_after.total_seconds():.0f}s")
            return None
        return self._answer(client_order_id, newest, chain)

    def _in_flight_since(self, client_order_id: str) -> datetime | None:
        """When a placement of this id may have started: this process's memory of a lost answer, else the
        engine's persisted time of its move to "submitting" (so a restart does not forget it)."""
        lost = self._unknown_since.get(client_order_id)
        times = self._order_times(client_order_id)
        sent = _utc(times.sent_at) if times is not None and times.sent_at is not None else None
        return max((t for t in (lost, sent) if t is not None), default=None)

    def _lookup(self, client_order_id: str) -> BrokerOrder | None:
        newest, chain = self._newest(client_order_id)
        return None if newest is None else self._answer(client_order_id, newest, chain)

    def _answer(self, client_order_id: str, newest: PlacedOrder, chain: list[PlacedOrder]) -> BrokerOrder:
        answer = tto.to_broker_order(client_order_id, newest, self._legs.get(client_order_id))
        if len(chain) > 1:
            # Fills of the replaced orders count for the structure too, and the structure's size is what
            # they filled plus what the newest order still asks for (a replacement carries only the rest).
            parts = [tto.to_broker_order(client_order_id, o, self._legs.get(client_order_id)) for o in chain]
            before = sum(p.filled_quantity for p in parts[:-1])
            filled = before + answer.filled_quantity
            paid = sum((p.avg_fill_price * p.filled_quantity for p in parts if p.avg_fill_price is not None),
                       Decimal(0))
            answer = BrokerOrder(answer.client_order_id, answer.broker_order_id, answer.status,
                                 before + answer.quantity, filled, paid / filled if filled else None, answer.reason)
        return answer

    def live_orders(self) -> list[BrokerOrder]:
        """Today's orders at the broker (all of them, the engine's carry their client order id)."""
        return [tto.to_broker_order(o.external_identifier or "", o, self._legs.get(o.external_identifier or ""))
                for o in self._call(self._live_orders)]

    def order_history(self) -> list[BrokerOrder]:
        """Orders of the last ``history_days`` (every page)."""
        return [tto.to_broker_order(o.external_identifier or "", o, self._legs.get(o.external_identifier or ""))
                for o in self._call(self._order_history)]

    def accounts(self) -> list[str]:
        """The open account numbers of this login."""
        return [a.account_number for a in self._call(self._accounts)]

    async def _accounts(self) -> list[Account]:
        return await Account.get(self._session)

    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]:
        """The legs' fills, each with the commission and fees tastytrade booked on its trade transaction.

        A fill whose transaction is not visible yet is held back (the order reads as partly filled and the
        fill comes with its fees at the next poll) unless it is older than ``fees_grace``: then it is
        reported without fees rather than never (the nightly sync still stores the fee transaction)."""
        if client_order_id is not None:
            _, chain = self._newest(client_order_id)
            pairs = [(client_order_id, o) for o in chain]
        else:
            pairs = [(o.external_identifier, o) for o in self._call(self._recent_orders) if o.external_identifier]
        filled = [(cid, o) for cid, o in pairs if any(leg.fills for leg in o.legs)]
        if not filled:
            return []
        since = min(f.filled_at for _, o in filled for leg in o.legs for f in leg.fills or []).date()
        underlyings = sorted({o.underlying_symbol for _, o in filled})
        trades = [t for u in underlyings for t in self._call(self._trades, since, u)]
        return [f for cid, o in filled for f in tto.fills_with_fees(cid, o, trades, self._now(), self.fees_grace)]

    async def _trades(self, since: date, underlying: str) -> list[TTTransaction]:
        return await self._account().get_history(self._session, per_page=250, page_offset=None, sort="Asc",
                                                 start_date=since, underlying_symbol=underlying, types=["Trade"])

    async def _recent_orders(self) -> list[PlacedOrder]:
        return await self._order_history()

    def cancel(self, client_order_id: str) -> BrokerOrder:
        newest, _ = self._newest(client_order_id)
        if newest is None:
            raise BrokerRejected(f"tastytrade has no order {client_order_id}")
        if newest.cancellable:
            self._call(self._delete, newest.id, write=True)
        answer = self.order(client_order_id)
        assert answer is not None
        return answer

    async def _delete(self, order_id: int) -> None:
        await self._account().delete_order(self._session, order_id)

    def replace(self, gate_pass: Any) -> BrokerOrder:
        """A new limit for a working order, authorised like a new order: by a ``GatePass`` for exactly the
        replacement (same client order id and legs, the quantity that *remains*, the order's own time in
        force, the new limit), which ``engine.risk.evaluate`` issues after the broker's dry run of it
        (``engine.execution.brokers.tastytrade_replace.gated_replace`` does both and updates the order row).

        Adapter-only, not on the ``Broker`` port: the engine never reprices a working order (a stale entry
        expires or is cancelled, an exit is re-proposed as the next attempt with its own id), so nothing in
        the engine calls it; the pass keeps it behind the gate for whoever does.

        The SDK's replace answer is not trusted for the new order's id: it is looked up by the replaced
        order's link, so the client order id keeps pointing at the live order."""
        if not is_gate_pass(gate_pass):
            raise BrokerRejected("tastytrade only replaces orders with a replacement that passed the risk gate")
        cid = gate_pass.client_order_id
        newest, _ = self._newest(cid)
        if newest is None:
            raise BrokerRejected(f"tastytrade has no order {cid}")
        legs = self._legs.get(cid) or tto.legs_from_order(newest)
        ordered, filled = tto.units(newest, legs)
        remaining = ordered - filled
        if newest.status not in tto.WORKING or remaining <= 0:
            raise BrokerRejected(f"tastytrade order {cid} is {newest.status.value} with {remaining} left: "
                                 "nothing to replace")
        try:
            tif = tto.time_in_force_of(newest)
        except ValueError as exc:
            raise BrokerRejected(str(exc)) from exc
        intent = "open" if newest.legs[0].action in (OrderAction.BUY_TO_OPEN, OrderAction.SELL_TO_OPEN) else "close"
        _check_replacement(gate_pass, legs, remaining, tif, intent)
        # The legs go with the remaining quantity: a partly filled order is replaced by one for what is
        # left, never by the original size again (the SDK's replace leaves the legs out).
        tt = self._order_for(cid, legs, remaining, gate_pass.limit_price, intent, tif)
        self._call(self._replace, newest.id, tt, write=True)
        new_id = self._call(self._replacement_of, newest.id, cid)
        if new_id is not None:
            self._ids[cid] = new_id
        answer = self.order(cid)
        assert answer is not None
        return answer

    async def _replace(self, order_id: int, order: LimitOrder) -> None:
        # Its answer names the old order (or the new one, depending on the version): not used.
        await self._session._put(f"/accounts/{self.account_number}/orders/{order_id}",
                                 content=order.model_dump_json(exclude_none=True, by_alias=True))

    async def _replacement_of(self, old_id: int, client_order_id: str) -> int | None:
        candidates = [o for o in await self._live_orders()
                      if o.replaces_order_id == old_id
                      or (o.external_identifier == client_order_id and o.id != old_id)]
        if candidates:
            return max(o.id for o in candidates)
        old = await self._get_order(old_id)
        return old.replacing_order_id

    # --- account ---------------------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        rows = self._call(self._positions)
        out = []
        for p in rows:
            sign = -1 if p.quantity_direction.lower() == "short" else 1
            asset = AssetType.stock if p.instrument_type is InstrumentType.EQUITY else AssetType.option
            out.append(BrokerPosition(p.symbol, sign * int(p.quantity), p.average_open_price, asset,
                                      p.underlying_symbol))
        return out

    async def _positions(self) -> list[Any]:
        return await self._account().get_positions(self._session)

    def balances(self) -> BrokerBalances:
        data = self._call(self._balances)

        def d(key: str) -> Decimal:
            return Decimal(str(data.get(key) or "0"))
        # Read field by field: balance bodies vary between environments and API versions, and only these
        # few figures matter here (the SDK's model requires ~50 fields).
        return BrokerBalances(net_liquidating_value=d("net-liquidating-value"), cash_balance=d("cash-balance"),
                              buying_power=d("derivative-buying-power"),
                              equity_buying_power=d("equity-buying-power"),
                              maintenance_requirement=d("maintenance-requirement"), raw=data)

    async def _balances(self) -> dict[str, Any]:
        return await self._session._get(f"/accounts/{self.account_number}/balances/USD")

    def account(self) -> BrokerAccount:
        b = self.balances()
        return BrokerAccount(cash=b.cash_balance, buying_power=b.buying_power, equity=b.net_liquidating_value)

    # --- transactions and events -------------------------------------------------------------------------

    def transactions(self, since: date | None = None) -> list[BrokerTransaction]:
        """Every transaction on or after ``since`` (all pages, oldest first)."""
        rows = self._call(self._history, since)
        return [_transaction(self.account_number, t) for t in rows]

    async def _history(self, since: date | None, types: list[str] | None = None) -> list[TTTransaction]:
        return await self._account().get_history(self._session, per_page=250, page_offset=None, sort="Asc",
                                                 start_date=since, types=types)

    def events(self) -> list[BrokerEvent]:
        """Expirations, exercises and assignments of the last ``history_days``, from Receive Deliver rows."""
        since = self._now().date() - timedelta(days=self.history_days)
        rows = self._call(self._history, since, ["Receive Deliver"])
        return _events(rows)


def _check_replacement(gate_pass: Any, legs: tuple[Leg, ...], remaining: int, time_in_force: str,
                       intent: str) -> None:
    """The pass must authorise exactly the replacement the broker will get; every mismatch is named."""
    def shape(ls: Any) -> list[tuple[str, str, int]]:
        return sorted((leg.instrument, leg.side.value, leg.ratio) for leg in ls)

    given_intent = "open" if str(getattr(gate_pass.intent, "value", gate_pass.intent)) == "open" else "close"
    problems = []
    if shape(gate_pass.legs) != shape(legs):
        problems.append(f"legs {shape(gate_pass.legs)} are not the working order's {shape(legs)}")
    if gate_pass.quantity != remaining:
        problems.append(f"quantity {gate_pass.quantity} is not the {remaining} that remain")
    if str(gate_pass.time_in_force).lower() != time_in_force:
        problems.append(f"time_in_force {gate_pass.time_in_force!r} is not the order's {time_in_force!r}")
    if given_intent != intent:
        problems.append(f"intent {given_intent!r} is not the order's {intent!r}")
    if problems:
        raise BrokerRejected(f"replacement of {gate_pass.client_order_id} refused: " + "; ".join(problems))


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _signed_quantity(t: TTTransaction) -> Decimal:
    q = t.quantity or Decimal(0)
    return -q if t.action is not None and "Sell" in t.action.value else q


def _fees(t: TTTransaction) -> Decimal:
    parts = (t.commission, t.clearing_fees, t.regulatory_fees, t.proprietary_index_option_fees, t.other_charge)
    return -sum((p for p in parts if p is not None), Decimal(0))  # the SDK signs debits negative


_TYPES = {("Trade", None): "trade", ("Money Movement", "Dividend"): "dividend",
          ("Money Movement", "Credit Interest"): "interest", ("Money Movement", "Debit Interest"): "interest",
          ("Money Movement", "Deposit"): "transfer", ("Money Movement", "Withdrawal"): "transfer",
          ("Money Movement", "Transfer"): "transfer", ("Money Movement", "Fee"): "fee",
          ("Receive Deliver", "Expiration"): "expiration", ("Receive Deliver", "Assignment"): "assignment",
          ("Receive Deliver", "Exercise"): "exercise", ("Receive Deliver", "Dividend"): "dividend_reinvest"}


def transaction_type(kind: str, sub_type: str) -> str:
    """A short type for the shared table. Never "expired"/"assigned"/"exercised": those names are the
    engine's own applied events (engine.execution.reconcile), which count in the engine's cash."""
    found = _TYPES.get((kind, sub_type)) or _TYPES.get((kind, None))
    if found:
        return found
    return (sub_type or kind).lower().replace(" ", "_")[:32]


def _transaction(account: str, t: TTTransaction) -> BrokerTransaction:
    return BrokerTransaction(
        broker="tastytrade", account=account, broker_txn_id=str(t.id),
        type=transaction_type(t.transaction_type, t.transaction_sub_type), symbol=t.symbol,
        underlying=t.underlying_symbol, quantity=_signed_quantity(t), price=t.price or Decimal(0),
        amount=t.net_value, fees=_fees(t), currency="USD", executed_at=t.executed_at,
        raw=t.model_dump(mode="json", by_alias=True, exclude_none=True))


def _events(rows: list[TTTransaction]) -> list[BrokerEvent]:
    options = [t for t in rows if t.instrument_type is InstrumentType.EQUITY_OPTION
               and t.transaction_sub_type in _EVENT_KINDS and t.symbol]
    stock = [t for t in rows if t.instrument_type is InstrumentType.EQUITY and t.transaction_sub_type in _EVENT_KINDS]
    used: set[int] = set()
    events = []
    for t in options:
        assert t.symbol is not None
        kind = _EVENT_KINDS[t.transaction_sub_type]
        occ = parse_occ(t.symbol)
        change = int(_signed_quantity(t))  # Sell to Close a long (-), Buy to Close a short (+)
        stock_qty, stock_price, stock_symbol = 0, Decimal(0), None
        if kind != "expired":
            # The delivery is its own Receive Deliver row: same sub-type, underlying and day.
            match = next((s for s in stock if s.id not in used and s.transaction_sub_type == t.transaction_sub_type
                          and s.underlying_symbol == t.underlying_symbol
                          and s.transaction_date == t.transaction_date), None)
            if match is not None:
                used.add(match.id)
                stock_qty, stock_symbol = int(_signed_quantity(match)), match.symbol
        # strike x 100 per contract whatever the shares delivered (an adjusted contract delivers e.g. 150)
        cash = -(1 if stock_qty > 0 else -1) * abs(change) * occ.strike * OPTION_MULTIPLIER if stock_qty else Decimal(0)
        if stock_qty:
            stock_price = abs(cash) / abs(stock_qty)
        events.append(BrokerEvent(f"tastytrade-{kind}-{t.id}", kind, t.symbol, change, cash, stock_symbol, stock_qty,
                                  stock_price, t.executed_at, {"transaction_id": t.id,
                                                               "description": t.description}))
    return events
