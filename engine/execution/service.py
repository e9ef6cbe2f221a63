"""Orders from decision to broker and back: propose, route by approval mode, gate, submit, apply fills.

Crash-only rules this module keeps:
- an order row (with its deterministic client order id) is committed before anything is sent;
- the move to ``submitting`` is committed before the broker call;
- a broker answer, the fills it reports and the position change they cause are applied in one
  transaction, each fill once (by the broker's fill id);
- a timeout or connection error leaves the order in ``submitting``; reconciliation decides its fate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, select

from engine import failpoints, risk
from engine.config import ApprovalMode, Settings
from engine.execution import orders as om
from engine.execution.orders import OrderStatus
from engine.execution.ports import (
    Broker,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerPreview,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    PreviewingBroker,
)
from engine.models import Fill, Order, Position
from engine.operator import approval_mode
from engine.portfolio.accounting import Book, cents, structure_multiplier
from engine.portfolio.exposure import portfolio_risk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderSpec:
    """An order the engine wants to place, before it has a row."""

    strategy: str
    signal_key: str  # what decision this is (signal id, or position id + exit rule)
    underlying: str
    sector: str
    structure: str
    intent: risk.Intent
    legs: tuple[Leg, ...]
    quantity: int
    limit_price: Decimal
    max_loss_per_unit: Decimal
    buying_power_per_unit: Decimal
    fees_per_unit: Decimal = Decimal("0")
    delta_dollars_per_unit: float = 0.0
    reason: str = ""
    signal_id: int | None = None
    candidate_id: int | None = None
    position_id: int | None = None
    attempt: int = 1


@dataclass
class ExecutionReport:
    submitted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    in_flight: list[str] = field(default_factory=list)
    fills: int = 0


# --- proposing and routing --------------------------------------------------------------------------


def propose(session: Session, spec: OrderSpec, settings: Settings, now: datetime,
            retry_terminal: bool = False) -> Order:
    """Create the order row (idempotent by client order id) and route it by the approval mode.

    With ``retry_terminal`` (exits, whose quantity the caller recomputes each cycle), a same-decision
    order that has finished (filled, expired, cancelled, rejected) is followed by the next attempt, with
    its own client order id; a live one is returned as is."""
    attempt = spec.attempt
    while True:
        cid = om.client_order_id(spec.strategy, spec.signal_key, spec.structure, spec.legs, attempt)
        existing = om.find(session, cid)
        if existing is None:
            break
        if not (retry_terminal and om.status_of(existing) in om.TERMINAL):
            return existing
        attempt += 1
    failpoints.hit("before_order_row")
    order = Order(
        client_order_id=cid, decision_key=spec.signal_key, strategy=spec.strategy, signal_id=spec.signal_id,
        candidate_id=spec.candidate_id,
        position_id=spec.position_id, symbol=spec.underlying, structure=spec.structure, intent=spec.intent.value,
        legs=[leg.to_dict() for leg in spec.legs], quantity=spec.quantity, limit_price=om.money(spec.limit_price),
        attempt=attempt, broker=settings.broker.value, reason=spec.reason,
        max_loss=cents(spec.max_loss_per_unit * spec.quantity),
        risk_per_unit=spec.max_loss_per_unit + spec.fees_per_unit,
        economics={
            "max_loss_per_unit": str(spec.max_loss_per_unit),
            "buying_power_per_unit": str(spec.buying_power_per_unit),
            "fees_per_unit": str(spec.fees_per_unit),
            "delta_dollars_per_unit": spec.delta_dollars_per_unit,
            "sector": spec.sector,
            "multiplier": structure_multiplier(spec.legs),
        },
        status=OrderStatus.proposed.value, created_at=now, updated_at=now,
    )
    session.add(order)
    session.flush()
    om.record_created(session, order, spec.reason or "proposed", now=now)
    _route(session, order, settings, now)
    session.commit()  # the order exists (with its client id) before anything else happens
    failpoints.hit("after_order_row")
    return order


def _route(session: Session, order: Order, settings: Settings, now: datetime) -> None:
    mode = ApprovalMode(approval_mode(session, settings.approval_mode.value))
    if mode is ApprovalMode.auto:
        om.transition(session, order, OrderStatus.approved, "auto mode", now=now)
    elif mode is ApprovalMode.semi and order.max_loss <= Decimal(str(settings.risk.semi_auto_max_risk_usd)):
        om.transition(session, order, OrderStatus.approved,
                      f"semi mode: risk ${order.max_loss} <= ${settings.risk.semi_auto_max_risk_usd:,.0f}", now=now)
    # manual, or semi above the limit: stays proposed until the operator decides


def to_proposed(order: Order, position_quantity: int | None = None) -> risk.ProposedOrder:
    econ = order.economics
    return risk.ProposedOrder(
        client_order_id=order.client_order_id, underlying=order.symbol, sector=str(econ.get("sector", "")),
        intent=risk.Intent(order.intent if order.intent == "open" else "close"), legs=om.legs_of(order),
        quantity=order.quantity, limit_price=Decimal(order.limit_price if order.limit_price is not None else "NaN"),
        max_loss_per_unit=Decimal(econ.get("max_loss_per_unit", "0")),
        buying_power_per_unit=Decimal(econ.get("buying_power_per_unit", "0")),
        delta_dollars_per_unit=float(econ.get("delta_dollars_per_unit", 0.0)),
        fees_per_unit=Decimal(econ.get("fees_per_unit", "0")), position_quantity=position_quantity,
        time_in_force=order.time_in_force,
    )


def check(session: Session, order: Order, settings: Settings, broker: Broker, now: datetime,
          exclude_pending: bool = True) -> risk.RiskDecision:
    """Run the gate for ``order`` against the current portfolio (excluding the order itself)."""
    held = None
    if order.intent != "open" and order.position_id is not None:
        pos = session.get(Position, order.position_id)
        held = pos.quantity if pos is not None and pos.status == "open" else 0
        # Other working exits on the same position already claim part of it.
        held -= working_close_quantity(session, order.position_id, exclude_order_id=order.id)
    state = portfolio_risk(session, broker, settings, now, exclude_order_id=order.id if exclude_pending else None)
    proposed = to_proposed(order, held)
    return risk.evaluate(proposed, state, settings.risk, now, preview=broker_preview(broker, proposed))


def broker_preview(broker: Broker, proposed: risk.ProposedOrder) -> BrokerPreview | None:
    """A real broker's dry run of exactly the order the gate is about to decide (None for the paper broker).
    BrokerUnavailable propagates: no gate decision without the broker's own numbers."""
    if not isinstance(broker, PreviewingBroker):
        return None
    return broker.preview(proposed)


def filled_for_decision(session: Session, decision_key: str) -> int:
    """Units filled across every attempt of one decision (e.g. the scale-out at target 2)."""
    rows = session.exec(select(Order.filled_quantity).where(Order.decision_key == decision_key)).all()
    return int(sum(rows))


def live_for_decision(session: Session, decision_key: str) -> bool:
    live = [s.value for s in (OrderStatus.proposed, OrderStatus.approved, OrderStatus.submitting,
                              OrderStatus.submitted, OrderStatus.partially_filled)]
    return session.exec(select(Order.id).where(Order.decision_key == decision_key,
                                               Order.status.in_(live))).first() is not None


def cancel_working_entries(session: Session, broker: Broker, position: Position, now: datetime) -> list[str]:
    """Closing a whole position also stops the entry orders that would add to it again."""
    live = [s.value for s in (OrderStatus.proposed, OrderStatus.approved, OrderStatus.submitted,
                              OrderStatus.partially_filled)]
    query = select(Order).where(Order.intent == "open", Order.status.in_(live), Order.symbol == position.symbol)
    if position.signal_id is not None:
        query = query.where(Order.signal_id == position.signal_id)
    cancelled = []
    for order in session.exec(query).all():
        if om.status_of(order) in (OrderStatus.proposed, OrderStatus.approved):
            om.transition(session, order, OrderStatus.cancelled, "position is being closed", now=now)
        else:
            try:
                answer = broker.cancel(order.client_order_id)
            except (BrokerUnavailable, BrokerRejected) as exc:
                log.warning("could not cancel %s: %s", order.client_order_id, exc)
                continue
            apply_broker_state(session, order, answer, _fills_or_none(broker, order), now)
        cancelled.append(order.client_order_id)
    return cancelled


def working_close_quantity(session: Session, position_id: int | None, exclude_order_id: int | None = None) -> int:
    """Units of a position already claimed by exit orders that are not finished."""
    live = [s.value for s in (OrderStatus.proposed, OrderStatus.approved, OrderStatus.submitting,
                              OrderStatus.submitted, OrderStatus.partially_filled)]
    query = select(Order).where(Order.position_id == position_id, Order.intent != "open", Order.status.in_(live))
    if exclude_order_id is not None:
        query = query.where(Order.id != exclude_order_id)
    return sum(o.quantity - o.filled_quantity for o in session.exec(query).all())


# --- submitting -------------------------------------------------------------------------------------


def submit_approved(engine, settings: Settings, broker: Broker, now: datetime,  # type: ignore[no-untyped-def]
                    limit: int | None = None) -> ExecutionReport:
    """Gate and send every approved order, oldest first, each in its own transactions."""
    from engine.db import session_scope

    report = ExecutionReport()
    with session_scope(engine) as session:
        ids = [o.id for o in om.open_orders(session, [OrderStatus.approved])][:limit]
    for order_id in ids:
        submit_one(engine, settings, broker, order_id, now, report)
    return report


def submit_one(engine, settings: Settings, broker: Broker, order_id: int, now: datetime,  # type: ignore[no-untyped-def]
               report: ExecutionReport | None = None) -> Order:
    from engine.db import session_scope

    report = report or ExecutionReport()
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        if order.status != OrderStatus.approved.value:
            return order
        try:
            decision = check(session, order, settings, broker, now)
        except BrokerUnavailable as exc:
            log.warning("order %s waits: broker account unavailable for the risk gate: %s",
                        order.client_order_id, exc)
            return order
        order.risk_decision = decision.to_dict()
        if not decision.approved or decision.gate_pass is None:
            om.transition(session, order, OrderStatus.rejected, f"risk gate: {decision.summary()}",
                          data=decision.to_dict(), now=now)
            report.rejected[order.client_order_id] = decision.summary()
            return order
        om.transition(session, order, OrderStatus.submitting, "risk gate passed; sending to broker", now=now)
        gate_pass = decision.gate_pass
    # The submitting state is committed: from here on a crash is resolved by reconciliation.
    failpoints.hit("after_submitting_commit")
    try:
        answer = broker.submit(gate_pass)
    except BrokerRejected as exc:
        with session_scope(engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            om.transition(session, order, OrderStatus.rejected, f"broker refused: {exc}", now=now)
        report.rejected[gate_pass.client_order_id] = str(exc)
        return order
    except BrokerUnavailable as exc:
        log.warning("order %s in flight after broker error: %s", gate_pass.client_order_id, exc)
        report.in_flight.append(gate_pass.client_order_id)
        with session_scope(engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            return order
    failpoints.hit("after_broker_submit")
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        report.fills += apply_broker_state(session, order, answer, _fills_or_none(broker, order), now)
    failpoints.hit("after_fill_commit")
    report.submitted.append(order.client_order_id)
    return order


def _fills_or_none(broker: Broker, order: Order) -> list[BrokerFill] | None:
    try:
        return broker.fills(order.client_order_id)
    except BrokerUnavailable:
        return None  # applied at the next sync


# --- applying what the broker says ------------------------------------------------------------------

_STATUS_FROM_BROKER = {
    BrokerOrderStatus.filled: OrderStatus.filled,
    BrokerOrderStatus.cancelled: OrderStatus.cancelled,
    BrokerOrderStatus.rejected: OrderStatus.rejected,
    BrokerOrderStatus.expired: OrderStatus.expired,
}


def apply_broker_state(session: Session, order: Order, answer: BrokerOrder, fills: Sequence[BrokerFill] | None,
                       now: datetime) -> int:
    """Bring ``order`` (and its position) in line with the broker's view. Returns new fills applied."""
    order.broker_order_id = answer.broker_order_id
    applied = _apply_fills(session, order, fills or [], now) if fills is not None else 0
    if fills is None and answer.filled_quantity > order.filled_quantity:
        # We know more was filled but could not read the fills: keep the order non-terminal for now.
        target = OrderStatus.partially_filled
    elif answer.status is BrokerOrderStatus.working:
        target = OrderStatus.partially_filled if order.filled_quantity > 0 else OrderStatus.submitted
    else:
        target = _STATUS_FROM_BROKER[answer.status]
        if target is OrderStatus.filled and order.filled_quantity < order.quantity:
            target = OrderStatus.partially_filled  # fills not all read yet
    current = om.status_of(order)
    changed = target is not current or (target is OrderStatus.partially_filled and applied)
    if changed and target in om.TRANSITIONS.get(current, frozenset()):
        reason = answer.reason or f"broker: {answer.status.value}, filled {answer.filled_quantity}/{order.quantity}"
        om.transition(session, order, target, reason, actor="broker", now=now,
                      data={"broker_order_id": answer.broker_order_id, "filled": answer.filled_quantity})
    return applied


def _apply_fills(session: Session, order: Order, fills: Sequence[BrokerFill], now: datetime) -> int:
    known = set(session.exec(select(Fill.broker_fill_id).where(Fill.order_id == order.id)).all())
    new = [f for f in fills if f.fill_id not in known]
    if not new:
        return 0
    legs = om.legs_of(order)
    by_instrument = {leg.instrument: leg for leg in legs}
    mult = structure_multiplier(legs)
    signed_dollars = Decimal("0")
    fees = Decimal("0")
    for f in new:
        leg = by_instrument.get(f.instrument)
        if leg is None:
            raise ValueError(f"fill {f.fill_id} for {f.instrument} is not a leg of order {order.client_order_id}")
        session.add(Fill(broker_fill_id=f.fill_id, order_id=order.id, client_order_id=order.client_order_id,
                         instrument=f.instrument, side=f.side.value, quantity=f.quantity, multiplier=leg.multiplier,
                         price=f.price, commission=f.commission, fees=f.fees, filled_at=f.at))
        failpoints.hit("during_fills")
        sign = 1 if f.side.value == "buy" else -1
        signed_dollars += sign * f.price * f.quantity * leg.multiplier
        fees += f.commission + f.fees
    # Units of the structure executed = contracts of the first leg / its ratio (legs fill together).
    first = legs[0]
    units = sum(f.quantity for f in new if f.instrument == first.instrument) // first.ratio
    if units <= 0:
        return len(new)
    unit_price = signed_dollars / (mult * units)
    prev_qty, prev_avg = order.filled_quantity, order.avg_fill_price or Decimal("0")
    order.filled_quantity = prev_qty + units
    order.avg_fill_price = (prev_avg * prev_qty + unit_price * units) / order.filled_quantity
    _apply_to_position(session, order, units, unit_price, fees, now)
    return len(new)


def _apply_to_position(session: Session, order: Order, units: int, unit_price: Decimal, fees: Decimal,
                       now: datetime) -> None:
    legs = om.legs_of(order)
    mult = structure_multiplier(legs)
    econ = order.economics
    failpoints.hit("during_position_update")
    if order.intent == "open":
        pos = session.get(Position, order.position_id) if order.position_id else None
        if pos is None:
            pos = Position(strategy=order.strategy, signal_id=order.signal_id, symbol=order.symbol,
                           sector=str(econ.get("sector", "")), structure=order.structure, legs=order.legs,
                           opened_at=now, status="open", **_levels_for(session, order))
            session.add(pos)
            session.flush()
            order.position_id = pos.id
        book = Book(mult, pos.quantity, pos.entry_price, pos.realized_pnl)
        book.open(units, unit_price, fees)
        pos.initial_quantity += units
        per_unit_risk = Decimal(econ.get("max_loss_per_unit", "0"))
        pos.max_loss = cents(per_unit_risk * book.quantity)
        pos.initial_risk = cents(pos.initial_risk + (per_unit_risk * units))
        pos.delta_dollars = float(econ.get("delta_dollars_per_unit", 0.0)) * book.quantity
    else:
        pos = session.get(Position, order.position_id)
        if pos is None:
            raise ValueError(f"closing order {order.client_order_id} has no position")
        book = Book(mult, pos.quantity, pos.entry_price, pos.realized_pnl)
        per_unit_risk = pos.max_loss / pos.quantity if pos.quantity else Decimal("0")
        remaining = Decimal(book.quantity - units) / book.quantity if book.quantity else Decimal("0")
        book.close(units, unit_price, fees)
        pos.max_loss = cents(per_unit_risk * book.quantity)
        pos.delta_dollars = float(Decimal(str(pos.delta_dollars)) * remaining)
        if book.quantity == 0:
            pos.status = "closed"
            pos.closed_at = now
            pos.exit_reason = order.reason
            pos.unrealized_pnl = Decimal("0")
    pos.quantity = book.quantity
    pos.entry_price = book.entry_price
    pos.realized_pnl = book.realized
    session.add(pos)


def _levels_for(session: Session, order: Order) -> dict[str, object]:
    """Stop, targets and ATR of the signal behind an entry, copied onto the new position."""
    from engine.models import Signal

    sig = session.get(Signal, order.signal_id) if order.signal_id else None
    if sig is None:
        return {}
    return {"stop": sig.stop, "targets": list(sig.targets), "entry_atr": sig.atr,
            "underlying_entry": sig.entry_price, "highest_close": sig.entry_price}


# --- operator decisions -----------------------------------------------------------------------------


def approve(session: Session, order: Order, actor: str, reason: str, now: datetime) -> None:
    om.transition(session, order, OrderStatus.approved, reason or "approved by operator", actor=actor, now=now)


def reject(session: Session, order: Order, actor: str, reason: str, now: datetime) -> None:
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    om.transition(session, order, OrderStatus.rejected, reason, actor=actor, now=now)


def override(session: Session, order: Order, actor: str, reason: str, now: datetime,
             quantity: int | None = None, limit_price: Decimal | None = None) -> None:
    """Change size or limit price of a proposed order; the gate runs again when it is sent."""
    if om.status_of(order) not in (OrderStatus.proposed, OrderStatus.approved):
        raise om.IllegalTransition(f"order {order.client_order_id} is {order.status}; only unsent orders change")
    if quantity is None and limit_price is None:
        raise ValueError("an override changes quantity or limit price")
    if quantity is not None and quantity < 1:
        raise ValueError(f"quantity must be at least 1, got {quantity}")
    before = {"quantity": order.quantity, "limit_price": str(order.limit_price)}
    if quantity is not None:
        order.quantity = quantity
        order.max_loss = cents(Decimal(order.economics.get("max_loss_per_unit", "0")) * quantity)
    if limit_price is not None:
        order.limit_price = om.money(limit_price)
    after = {"quantity": order.quantity, "limit_price": str(order.limit_price)}
    session.add(order)
    from engine.models import OrderEvent

    session.add(OrderEvent(order_id=order.id, client_order_id=order.client_order_id, from_status=order.status,
                           to_status=order.status, reason=f"override: {reason}", actor=actor,
                           data={"before": before, "after": after}, at=now))
