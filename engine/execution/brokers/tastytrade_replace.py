"""Repricing a working tastytrade order through the risk gate, as a new order would go (issue 14).

The replacement is measured like a fresh order: its quantity is what remains of the order, its time in
force the order's own, its per-unit max loss recomputed at the new limit (``economics.max_loss_per_unit``),
and the broker's dry run of exactly that replacement feeds ``engine.risk.evaluate`` (buying power, fees,
errors), against the portfolio without this order's own pending risk. Only a pass lets the adapter send
it; the order row then carries the new limit and risk, so heat counts the replacement, not the original.

Nothing in the engine reprices orders today (see ``TastytradeBroker.replace``): this is the one way to
do it, for the operator or a later strategy, without going around the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from engine import risk
from engine.config import Settings
from engine.db import read_scope, session_scope
from engine.execution import gate, service
from engine.execution import orders as om
from engine.execution.economics import max_loss_per_unit
from engine.execution.orders import OrderStatus
from engine.execution.ports import AssetType, Leg
from engine.models import Order, OrderEvent
from engine.options.occ import parse_occ
from engine.portfolio.accounting import cents

_REPRICEABLE = (OrderStatus.submitted, OrderStatus.partially_filled)


@dataclass(frozen=True)
class ReplaceResult:
    replaced: bool
    message: str
    decision: dict[str, Any]


def gated_replace(db: Engine, settings: Settings, broker: Any, client_order_id: str, limit_price: Decimal,
                  now: datetime) -> ReplaceResult:
    """Gate the replacement of ``client_order_id`` at ``limit_price`` and send it if the gate passes."""
    if not limit_price.is_finite():
        raise ValueError(f"limit_price must be a number, got {limit_price}")
    # Read, ask the broker (account and dry run) with no transaction open, then decide and record in a
    # short write transaction: a network call never holds the write lock (issue 12 #2).
    with read_scope(db) as session:
        order = om.find(session, client_order_id)
        if order is None:
            raise ValueError(f"client_order_id {client_order_id!r}: no such order")
        if om.status_of(order) not in _REPRICEABLE:
            return ReplaceResult(False, f"order {client_order_id} is {order.status}: only a working order can be "
                                        "repriced", {})
        base = gate.to_proposed(order, gate.held_for(session, order))
        remaining = order.quantity - order.filled_quantity
        seen_status = order.status
    loss = max_loss_per_unit(_with_strikes(base.legs), limit_price) if base.intent is risk.Intent.open \
        else Decimal(0)
    proposed = replace(base, quantity=remaining, limit_price=limit_price, max_loss_per_unit=loss,
                       buying_power_per_unit=loss if base.intent is risk.Intent.open else base.buying_power_per_unit)
    account, preview = gate.gate_inputs(broker, proposed)
    with session_scope(db) as session:
        order = om.find(session, client_order_id)
        if order is None or order.status != seen_status \
                or order.quantity - order.filled_quantity != remaining:
            return ReplaceResult(False, f"order {client_order_id} changed while the broker was asked; try again", {})
        decision = gate.decide(session, order, proposed, account, preview, settings, now)
        if not decision.approved or decision.gate_pass is None:
            order.risk_decision = decision.to_dict()
            session.add(OrderEvent(order_id=order.id, client_order_id=client_order_id, from_status=order.status,
                                   to_status=order.status, reason=f"replace at {limit_price} refused by the risk "
                                   f"gate: {decision.summary()}", data=decision.to_dict(), at=now))
            return ReplaceResult(False, decision.summary(), decision.to_dict())
        order_id, old_limit = order.id, order.limit_price
    answer = broker.replace(decision.gate_pass)  # BrokerRejected / BrokerUnavailable reach the caller
    fills = broker.fills(client_order_id)
    with session_scope(db) as session:
        order = session.get(Order, order_id)
        assert order is not None
        # the fees the gate counted: the broker's dry run's, as for a new order
        fees = (risk.with_broker_fees(proposed, preview) if preview is not None else proposed).fees_per_unit
        order.limit_price = om.money(limit_price)
        order.risk_per_unit = loss + fees
        order.max_loss = cents(loss * order.quantity)
        order.economics = {**order.economics, "max_loss_per_unit": str(loss),
                           "buying_power_per_unit": str(proposed.buying_power_per_unit), "fees_per_unit": str(fees)}
        order.risk_decision = decision.to_dict()
        session.add(OrderEvent(order_id=order.id, client_order_id=client_order_id, from_status=order.status,
                               to_status=order.status, reason=f"replaced at the broker: limit {old_limit} -> "
                               f"{limit_price} for the {remaining} remaining", actor="engine",
                               data={"broker_order_id": answer.broker_order_id, **decision.to_dict()}, at=now))
        service.apply_broker_state(session, order, answer, fills, now)
    return ReplaceResult(True, f"replaced: limit {old_limit} -> {limit_price}", decision.to_dict())


def _with_strikes(legs: tuple[Leg, ...]) -> tuple[Leg, ...]:
    """Option legs with right, strike and expiry read from their OCC symbol where the row lacks them."""
    out = []
    for leg in legs:
        if leg.asset is AssetType.option and (leg.right is None or leg.strike is None):
            occ = parse_occ(leg.instrument)
            leg = replace(leg, right=occ.right, strike=occ.strike, expiry=occ.expiry)
        out.append(leg)
    return tuple(out)
