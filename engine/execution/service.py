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
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam
from sqlmodel import Session, select

from engine import failpoints, risk
from engine.config import ApprovalMode, Settings
from engine.execution import guard
from engine.execution import orders as om
from engine.execution.gate import (  # noqa: F401 -- re-exported: service.X stays the public name
    OverrideRefused,
    check,
    decide,
    gate_basis,
    gate_inputs,
    held_for,
    needs_dry_run,
    override,
    to_proposed,
    working_close_quantity,
)
from engine.execution.orders import OrderStatus
from engine.execution.ports import (
    Broker,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
)
from engine.models import Fill, Order, Position
from engine.operator import approval_mode
from engine.portfolio.accounting import Book, cents, structure_multiplier

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
    protective: bool = False  # a stop, trend-break, premium-stop or expiry exit (DESIGN §4-§5, issue 11 #14)


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
            **({"protective": True} if spec.protective else {}),
        },
        status=OrderStatus.proposed.value, created_at=now, updated_at=now,
    )
    # the route is read before the row is written, so the row goes in once, already approved when it is
    om.create(session, order, spec.reason or "proposed", _route(session, order, settings), now=now)
    session.commit()  # the order exists (with its client id) before anything else happens
    failpoints.hit("after_order_row")
    return order


def _route(session: Session, order: Order, settings: Settings) -> tuple[str, str] | None:
    """(reason, actor) when the approval mode clears the new order at once; None when it waits for the
    operator (manual, or semi above the limit)."""
    mode = ApprovalMode(approval_mode(session, settings.approval_mode.value))
    if (mode is not ApprovalMode.auto and order.intent != "open" and order.economics.get("protective")
            and not settings.approve_exits):
        # A protective exit that waits for a click can let a position run past its stop: it goes by rule
        # unless the operator opted in to approving exits too (QM_APPROVE_EXITS=true).
        return f"protective exit executed by rule in {mode.value} mode (exit approval is off)", "rule"
    if mode is ApprovalMode.auto:
        return "auto mode", "engine"
    if mode is ApprovalMode.semi and order.max_loss <= Decimal(str(settings.risk.semi_auto_max_risk_usd)):
        return f"semi mode: risk ${order.max_loss} <= ${settings.risk.semi_auto_max_risk_usd:,.0f}", "engine"
    return None


def filled_for_decision(session: Session, decision_key: str) -> int:
    """Units filled across every attempt of one decision (e.g. the scale-out at target 2)."""
    rows = session.exec(select(Order.filled_quantity).where(Order.decision_key == decision_key)).all()
    return int(sum(rows))


def live_for_decision(session: Session, decision_key: str) -> bool:
    return session.exec(select(Order.id).where(Order.decision_key == decision_key,
                                               Order.status.in_(om.LIVE_VALUES))).first() is not None


def orders_to_stop_for_full_exit(session: Session, position: Position, full_exit_key: str) -> list[int]:
    """Closing a whole position stops the entry orders that would add to it again and the working partial
    exits (scale-outs) that would sell part of what the full exit sells (issue 11 #5)."""
    entries = select(Order.id).where(Order.intent == "open", Order.status.in_(om.LIVE_VALUES),
                                     Order.symbol == position.symbol)
    if position.signal_id is not None:
        entries = entries.where(Order.signal_id == position.signal_id)
    exits = select(Order.id).where(Order.position_id == position.id, Order.intent != "open",
                                   Order.status.in_(om.LIVE_VALUES), Order.decision_key != full_exit_key)
    return sorted(set(session.exec(entries).all()) | set(session.exec(exits).all()))


def cancel_orders(engine, broker: Broker, order_ids: Sequence[int], reason: str,  # type: ignore[no-untyped-def]
                  now: datetime) -> list[str]:
    """Cancel orders: unsent ones in the database; sent ones at the broker, with no transaction open
    during the broker call; what the broker answers (fills included) is applied in a short one."""
    from engine.db import session_scope

    cancelled, at_broker = [], []
    with session_scope(engine) as session:
        for oid in order_ids:
            order = session.get(Order, oid)
            if order is None or om.status_of(order) not in om.LIVE:
                continue
            if om.status_of(order) in (OrderStatus.proposed, OrderStatus.approved):
                om.transition(session, order, OrderStatus.cancelled, reason, now=now)
                cancelled.append(order.client_order_id)
            else:
                at_broker.append((oid, order.client_order_id))
    for oid, cid in at_broker:
        try:
            answer = broker.cancel(cid)
        except (BrokerUnavailable, BrokerRejected) as exc:
            log.warning("could not cancel %s: %s", cid, exc)
            continue
        try:
            fills = broker.fills(cid)
        except BrokerUnavailable:
            fills = None
        with session_scope(engine) as session:
            order = session.get(Order, oid)
            assert order is not None
            apply_broker_state(session, order, answer, fills, now)
        cancelled.append(cid)
    return cancelled


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
    """Gate and send one approved order, with no transaction open while the broker answers (issue 12 #2):
    ask the broker for its account and, from a broker with a dry run, its dry run of the order as read just
    before (a broker without one needs no read of the order first); then one short write transaction claims the
    order (compare-and-set approved -> submitting under a row lock on PostgreSQL, so exactly one submitter
    wins), runs the gate on the portfolio as it is at that moment (a kill switch set meanwhile counts) and
    commits the decision. The submitting state is committed before the order is sent."""
    from engine.db import read_scope, session_scope

    report = report or ExecutionReport()
    guard.before_broker_call(f"gate order {order_id}")  # a scheduler without its lease does not even claim it
    basis, proposed = None, None
    if needs_dry_run(broker):
        # The broker's dry run is of this order as it is now: read it (no transaction held over the call).
        with read_scope(engine) as session:
            order = _detached(session, order_id)
            if order.status != OrderStatus.approved.value:
                return order
            proposed = to_proposed(order, held_for(session, order))
            basis = gate_basis(order, proposed)
    try:
        account, preview = gate_inputs(broker, proposed)
    except BrokerUnavailable as exc:
        log.warning("order %s waits: broker account unavailable for the risk gate: %s", order_id, exc)
        with read_scope(engine) as session:
            return _detached(session, order_id)
    with session_scope(engine) as session:
        # Row lock on PostgreSQL: a second submitter of the same order waits here, then sees it claimed.
        order = session.get(Order, order_id, with_for_update=True, populate_existing=True)
        assert order is not None
        if order.status != OrderStatus.approved.value:
            return order  # claimed by another submitter, or cancelled, while the broker answered
        proposed = to_proposed(order, held_for(session, order))
        if basis is not None and gate_basis(order, proposed) != basis:
            # An override (or a fill of the position an exit closes) while the broker answered: its dry run
            # was of another order. The next cycle gates what would be sent.
            log.info("order %s changed while the gate asked the broker; gated again next cycle",
                     order.client_order_id)
            return order
        decision = decide(session, order, proposed, account, preview, settings, now)
        if not decision.approved or decision.gate_pass is None:
            order.risk_decision = decision.to_dict()
            om.transition(session, order, OrderStatus.rejected, f"risk gate: {decision.summary()}",
                          data=decision.to_dict(), now=now)
            report.rejected[order.client_order_id] = decision.summary()
            return order
        # Compare-and-set approved -> submitting with the gate's decision in the same UPDATE: a lost claim
        # (another submitter between our read and now) writes nothing of ours; the winner records its own.
        if not om.claim(session, order, OrderStatus.submitting, "risk gate passed; sending to broker",
                        {"risk_decision": decision.to_dict()}, now=now):
            return order
    gate_pass = decision.gate_pass
    # The submitting state is committed: from here on a crash is resolved by reconciliation.
    failpoints.hit("after_submitting_commit")
    try:
        guard.before_broker_call(f"submit {gate_pass.client_order_id}")  # refusal: reconciliation resolves it
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
        with read_scope(engine) as session:  # only read: reconciliation learns its fate from the broker
            return _detached(session, order_id)
    failpoints.hit("after_broker_submit")
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        report.fills += apply_broker_state(session, order, answer, _fills_or_none(broker, order), now)
    failpoints.hit("after_fill_commit")
    report.submitted.append(order.client_order_id)
    return order


def _detached(session: Session, order_id: int) -> Order:
    """The order as ``session`` reads it, still readable after a read-only snapshot ends (a rollback would
    expire it)."""
    order = session.get(Order, order_id)
    assert order is not None
    session.expunge(order)
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
    """Bring ``order`` (and its position) in line with the broker's view. Returns new fills applied.

    Without autoflush, so the order's changes (fills, position, status) reach the database as one UPDATE
    at the commit (the order path's latency is mostly statements, issue 11)."""
    with session.no_autoflush:
        applied = _apply_fills(session, order, fills or [], now) if fills is not None else 0
        order.broker_order_id = answer.broker_order_id
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
    """Record new fills; the structure's filled units are the minimum over legs of contracts filled / ratio
    (a real broker may report legs separately). Newly complete units are priced from each leg's fills in
    the order they came (first in, first matched); fees reach the position when its units do."""
    rows = list(session.exec(_FILLS_OF_ORDER, params={"order": order.id}).all())
    known = {r.broker_fill_id for r in rows}
    new = [f for f in fills if f.fill_id not in known]
    if not new:
        return 0
    legs = om.legs_of(order)
    by_instrument = {leg.instrument: leg for leg in legs}
    for f in new:
        leg = by_instrument.get(f.instrument)
        if leg is None:
            raise ValueError(f"fill {f.fill_id} for {f.instrument} is not a leg of order {order.client_order_id}")
        row = Fill(broker_fill_id=f.fill_id, order_id=order.id, client_order_id=order.client_order_id,
                   instrument=f.instrument, side=f.side.value, quantity=f.quantity, multiplier=leg.multiplier,
                   price=f.price, commission=f.commission, fees=f.fees, filled_at=f.at)
        session.add(row)
        rows.append(row)
        failpoints.hit("during_fills")
    # Fill order, first in first matched: by time (a naive stored time is UTC), then as stored and received
    # (a stable sort keeps the stored rows' id order and puts the new ones after them, as their ids will be).
    rows.sort(key=lambda r: r.filled_at if r.filled_at.tzinfo else r.filled_at.replace(tzinfo=UTC))
    complete = leg_units_filled(legs, rows)
    prev_qty = order.filled_quantity
    units = complete - prev_qty
    if units <= 0:
        return len(new)  # a leg ran ahead of the others: a partly filled combo, shown on the Orders page
    mult = structure_multiplier(legs)
    signed_dollars = Decimal("0")
    for leg in legs:
        signed_dollars += leg.sign * leg.multiplier * _fifo_dollars(
            [r for r in rows if r.instrument == leg.instrument], leg.ratio * prev_qty, leg.ratio * complete)
    paid_fees = sum((r.commission + r.fees for r in rows), Decimal("0"))
    fees = paid_fees - Decimal(str(order.economics.get("fees_applied", "0")))
    unit_price = signed_dollars / (mult * units)
    pos = _position_of(session, order, now)  # before the order changes: a new position's INSERT goes alone
    prev_avg = order.avg_fill_price or Decimal("0")
    order.economics = {**order.economics, "fees_applied": str(paid_fees)}
    order.filled_quantity = complete
    order.avg_fill_price = (prev_avg * prev_qty + unit_price * units) / order.filled_quantity
    _apply_to_position(pos, order, units, unit_price, fees, now)
    return len(new)


# built once: every broker answer applied reads it (issue 11: building costs more than running it)
_FILLS_OF_ORDER = select(Fill).where(Fill.order_id == bindparam("order")).order_by(Fill.id)


def leg_units_filled(legs: Sequence[Leg], fills: Sequence[Fill]) -> int:
    """Whole units of a structure filled: the minimum over legs of contracts filled / ratio."""
    done = {leg.instrument: 0 for leg in legs}
    for f in fills:
        if f.instrument in done:
            done[f.instrument] += f.quantity
    return min(done[leg.instrument] // leg.ratio for leg in legs)


def _fifo_dollars(fills: Sequence[Fill], start: int, end: int) -> Decimal:
    """Price x quantity of the contracts numbered [start, end) of one leg, in fill order."""
    total, seen = Decimal("0"), 0
    for f in fills:
        lo, hi = max(start, seen), min(end, seen + f.quantity)
        if hi > lo:
            total += f.price * (hi - lo)
        seen += f.quantity
    return total


def _position_of(session: Session, order: Order, now: datetime) -> Position:
    """The position ``order`` changes: an entry's first fill opens it (flushed for its id, which the order
    records); an exit's must exist."""
    pos = session.get(Position, order.position_id) if order.position_id else None
    if pos is not None:
        return pos
    if order.intent != "open":
        raise ValueError(f"closing order {order.client_order_id} has no position")
    pos = Position(strategy=order.strategy, signal_id=order.signal_id, symbol=order.symbol,
                   sector=str(order.economics.get("sector", "")), structure=order.structure, legs=order.legs,
                   opened_at=now, status="open", **_levels_for(session, order))
    session.add(pos)
    session.flush()
    order.position_id = pos.id
    return pos


def _apply_to_position(pos: Position, order: Order, units: int, unit_price: Decimal, fees: Decimal,
                       now: datetime) -> None:
    mult = structure_multiplier(om.legs_of(order))
    econ = order.economics
    failpoints.hit("during_position_update")
    book = Book(mult, pos.quantity, pos.entry_price, pos.realized_pnl)
    if order.intent == "open":
        book.open(units, unit_price, fees)
        pos.initial_quantity += units
        per_unit_risk = Decimal(econ.get("max_loss_per_unit", "0"))
        pos.max_loss = cents(per_unit_risk * book.quantity)
        pos.initial_risk = cents(pos.initial_risk + (per_unit_risk * units))
        pos.delta_dollars = float(econ.get("delta_dollars_per_unit", 0.0)) * book.quantity
    else:
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


def _levels_for(session: Session, order: Order) -> dict[str, object]:
    """Stop, targets and ATR of the signal behind an entry, copied onto the new position.

    Only a long view carries the long setup's ATR stop and targets (DESIGN §4). An iron condor is neutral
    and a covered call follows the shares it covers: both have exit rules of their own
    (``portfolio.manager``), so they get no stop or targets, only the entry price and ATR for reference."""
    from engine.models import Signal

    sig = session.get(Signal, order.signal_id) if order.signal_id else None
    if sig is None:
        return {}
    levels: dict[str, object] = {"entry_atr": sig.atr, "underlying_entry": sig.entry_price,
                                 "highest_close": sig.entry_price}
    if order.structure in ("iron_condor", "covered_call") or sig.direction != "long":
        return levels
    return {**levels, "stop": sig.stop, "targets": list(sig.targets)}


# --- operator decisions -----------------------------------------------------------------------------


def approve(session: Session, order: Order, actor: str, reason: str, now: datetime) -> None:
    om.transition(session, order, OrderStatus.approved, reason or "approved by operator", actor=actor, now=now)


def reject(session: Session, order: Order, actor: str, reason: str, now: datetime) -> None:
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    om.transition(session, order, OrderStatus.rejected, reason, actor=actor, now=now)
