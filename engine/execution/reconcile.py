"""Reconciliation with the broker: run at every start and on a schedule, before anything else.

1. Every order that may be at the broker (submitting, submitted, partially filled) is looked up by its
   client order id; what the broker says is applied as events and fills. An order in ``submitting``
   that the broker never received goes back to ``approved`` (it will be sent with the same id).
2. Broker activity outside orders (expiry, exercise, assignment) is applied once each.
3. Positions and cash are compared with the broker's; differences that cannot be explained are listed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.db import session_scope
from engine.execution import orders as om
from engine.execution.orders import OrderStatus
from engine.execution.ports import AssetType, Broker, BrokerEvent, BrokerUnavailable, Leg, Side
from engine.execution.service import apply_broker_state
from engine.models import Fill, Order, Position, ReconciliationRun, Transaction
from engine.portfolio.accounting import Book, cents, structure_multiplier

log = logging.getLogger(__name__)


def reconcile(engine: Engine, broker: Broker, starting_cash: Decimal, now: datetime) -> ReconciliationRun:
    differences: list[dict[str, object]] = []
    checked = applied = 0
    with session_scope(engine) as session:
        ids = [o.id for o in om.open_orders(session, om.LIVE_AT_BROKER)]
    for order_id in ids:
        checked += 1
        try:
            applied += _sync_order(engine, broker, order_id, now, differences)
        except BrokerUnavailable as exc:
            differences.append({"kind": "broker_unavailable", "order_id": order_id, "detail": str(exc)})
    try:
        applied += _apply_events(engine, broker, now)
        differences.extend(_compare_books(engine, broker, starting_cash))
    except BrokerUnavailable as exc:
        differences.append({"kind": "broker_unavailable", "detail": str(exc)})
    with session_scope(engine) as session:
        run = ReconciliationRun(at=now, broker=broker.name, orders_checked=checked, events_applied=applied,
                                differences=differences, ok=not differences)
        session.add(run)
    if differences:
        log.warning("reconciliation found %d differences: %s", len(differences), differences[:5])
    return run


def _sync_order(engine: Engine, broker: Broker, order_id: int, now: datetime,
                differences: list[dict[str, object]]) -> int:
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        cid, status = order.client_order_id, om.status_of(order)
    answer = broker.order(cid)
    fills = broker.fills(cid) if answer is not None else []
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        if om.status_of(order) is not status:
            return 0  # changed meanwhile (another step synced it); next run looks again
        if answer is None:
            if status is OrderStatus.submitting:
                om.transition(session, order, OrderStatus.approved,
                              "reconciliation: the broker never received it; will resend with the same id",
                              actor="reconciliation", now=now)
                return 1
            differences.append({"kind": "order_unknown_to_broker", "client_order_id": cid, "status": status.value})
            return 0
        return apply_broker_state(session, order, answer, fills, now)


def _apply_events(engine: Engine, broker: Broker, now: datetime) -> int:
    events = broker.events()
    applied = 0
    with session_scope(engine) as session:
        seen = set(session.exec(select(Transaction.broker_txn_id).where(Transaction.broker == broker.name)).all())
        for ev in events:
            if ev.event_id in seen:
                continue
            _apply_event(session, broker.name, ev, now)
            applied += 1
    return applied


def _apply_event(session: Session, broker_name: str, ev: BrokerEvent, now: datetime) -> None:
    """Expiry closes the option leg; exercise/assignment also delivers stock, held as its own position.

    An event on a position the engine does not hold (an external one at a real broker) is recorded only:
    it moves no engine cash and creates no position for the engine to manage."""
    held = any(Leg.from_dict(d).instrument == ev.instrument
               for pos in session.exec(select(Position).where(Position.status == "open")).all() for d in pos.legs)
    if not held:
        session.add(Transaction(broker=broker_name, account="paper", broker_txn_id=ev.event_id,
                                type=f"{ev.kind}_external", symbol=ev.instrument, quantity=Decimal(ev.quantity),
                                amount=ev.cash, executed_at=ev.at or now,
                                raw={k: str(v) for k, v in ev.detail.items()}))
        return
    session.add(Transaction(broker=broker_name, account="paper", broker_txn_id=ev.event_id, type=ev.kind,
                            symbol=ev.instrument, quantity=Decimal(ev.quantity), amount=ev.cash,
                            executed_at=ev.at or now, raw={k: str(v) for k, v in ev.detail.items()}))
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        legs = [Leg.from_dict(d) for d in pos.legs]
        if not any(leg.instrument == ev.instrument for leg in legs):
            continue
        # The structure's option legs all settle on the same expiry: the position ends here. Its
        # realized P&L gets the settlement value; delivered stock becomes a new position to manage.
        book = Book(structure_multiplier(legs), pos.quantity, pos.entry_price, pos.realized_pnl)
        settle_value = _settlement_value(legs, ev)
        book.close(pos.quantity, -settle_value, Decimal("0"))
        pos.realized_pnl, pos.quantity, pos.entry_price = book.realized, 0, book.entry_price
        pos.status, pos.closed_at, pos.exit_reason = "closed", ev.at or now, f"{ev.kind} at expiry"
        pos.max_loss = Decimal("0")
        session.add(pos)
        break
    if ev.stock_instrument and ev.stock_quantity:
        side = Side.buy if ev.stock_quantity > 0 else Side.sell
        leg = Leg(ev.stock_instrument, side, 1, AssetType.stock, ev.stock_instrument)
        stock = Position(strategy="assignment", symbol=ev.stock_instrument, structure="stock",
                         legs=[leg.to_dict()], quantity=abs(ev.stock_quantity), initial_quantity=abs(ev.stock_quantity),
                         entry_price=ev.stock_price, status="open", opened_at=ev.at or now,
                         max_loss=cents(ev.stock_price * abs(ev.stock_quantity)))
        session.add(stock)


def _settlement_value(legs: list[Leg], ev: BrokerEvent) -> Decimal:
    """Per-unit value the position realises at expiry, from the broker's cash and stock deliveries."""
    units = abs(ev.quantity) or 1
    stock_value = ev.stock_price * ev.stock_quantity
    return (ev.cash + stock_value) / (units * structure_multiplier(legs))


def engine_cash(session: Session, starting_cash: Decimal) -> Decimal:
    """Cash implied by every fill and broker event the engine applied."""
    cash = starting_cash
    for f in session.exec(select(Fill)).all():
        sign = -1 if f.side == "buy" else 1
        cash += sign * f.price * f.quantity * f.multiplier - f.commission - f.fees
    for t in session.exec(select(Transaction).where(Transaction.type.in_(["expired", "exercised", "assigned"]))):
        cash += t.amount
    return cash


def engine_instrument_positions(session: Session) -> dict[str, int]:
    """Signed quantity per instrument implied by the engine's open positions."""
    held: dict[str, int] = defaultdict(int)
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        for d in pos.legs:
            leg = Leg.from_dict(d)
            held[leg.instrument] += leg.sign * leg.ratio * pos.quantity
    return {k: v for k, v in held.items() if v}


def _compare_books(engine: Engine, broker: Broker, starting_cash: Decimal) -> list[dict[str, object]]:
    broker_positions = {p.instrument: p.quantity for p in broker.positions() if p.quantity}
    account = broker.account()
    with session_scope(engine) as session:
        ours = engine_instrument_positions(session)
        cash = engine_cash(session, starting_cash)
    diffs: list[dict[str, object]] = []
    for instrument in sorted(set(ours) | set(broker_positions)):
        mine, theirs = ours.get(instrument, 0), broker_positions.get(instrument, 0)
        if mine != theirs:
            diffs.append({"kind": "position", "instrument": instrument, "engine": mine, "broker": theirs})
    if cents(cash) != cents(account.cash):
        diffs.append({"kind": "cash", "engine": str(cents(cash)), "broker": str(cents(account.cash))})
    return diffs
