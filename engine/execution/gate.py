"""What the risk gate sees of an order, and the gate's two halves around the broker call.

Split out of ``execution.service`` along its seam: ``gate_inputs`` asks the broker (account, dry run) with
no transaction open, ``decide`` runs the gate on those numbers and the portfolio as it is in a short write
transaction; ``check`` does both (no transaction open). An override recomputes the structure's economics
and goes through the same gate. ``service`` re-exports these names.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam
from sqlmodel import Session, func, select

from engine import risk
from engine.config import Settings
from engine.execution import orders as om
from engine.execution.economics import unit_economics
from engine.execution.orders import OrderStatus
from engine.execution.ports import Broker, BrokerAccount, BrokerPreview, PreviewingBroker
from engine.models import Order, Position
from engine.portfolio.accounting import cents
from engine.portfolio.exposure import portfolio_risk_for_account, portfolio_risk_offline

__all__ = ["OverrideRefused", "check", "decide", "gate_basis", "gate_inputs", "held_for", "needs_dry_run", "override",
           "to_proposed", "working_close_quantity"]


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
    """Run the gate for ``order`` against the current portfolio (excluding the order itself). This asks the
    broker (account, dry run): with a write transaction open use ``gate_inputs`` first, then ``decide``."""
    proposed = to_proposed(order, held_for(session, order))
    account, preview = gate_inputs(broker, proposed)
    return decide(session, order, proposed, account, preview, settings, now, exclude_pending)


def needs_dry_run(broker: Broker) -> bool:
    """Whether the gate needs the broker's dry run of the order (a real broker), so the order must be read
    before the broker is asked."""
    return isinstance(broker, PreviewingBroker)


def gate_inputs(broker: Broker, proposed: risk.ProposedOrder | None) -> tuple[BrokerAccount, BrokerPreview | None]:
    """What the gate needs from the broker: its account and, from a real broker, its dry run of exactly
    ``proposed`` (which may be None only for a broker without one). Network calls: made with no
    transaction open (issue 12 #2). BrokerUnavailable propagates: no gate decision without the broker's
    own numbers."""
    if not needs_dry_run(broker):
        return broker.account(), None
    if proposed is None:
        raise ValueError("proposed: a broker with a dry run previews the order, which is missing")
    account = broker.account()
    return account, broker.preview(proposed)


def decide(session: Session, order: Order, proposed: risk.ProposedOrder, account: BrokerAccount,
           preview: BrokerPreview | None, settings: Settings, now: datetime,
           exclude_pending: bool = True) -> risk.RiskDecision:
    """The gate on the broker's numbers read beforehand and the portfolio (kill switch included) as it is in
    ``session`` now: database reads only, so it fits in a short write transaction."""
    state = portfolio_risk_for_account(session, account, now, order.id if exclude_pending else None, settings)
    return risk.evaluate(proposed, state, settings.risk, now, preview=preview)


def held_for(session: Session, order: Order) -> int | None:
    """For an exit: the position's units not already claimed by its other working exits."""
    if order.intent == "open" or order.position_id is None:
        return None
    pos = session.get(Position, order.position_id)
    held = pos.quantity if pos is not None and pos.status == "open" else 0
    return held - working_close_quantity(session, order.position_id, exclude_order_id=order.id)


def working_close_quantity(session: Session, position_id: int | None, exclude_order_id: int | None = None) -> int:
    """Units of a position already claimed by exit orders that are not finished."""
    # summed in SQL: the gate asks this for every exit it sends, and whole order rows (legs, economics,
    # decisions) cost far more to load than the one number
    if position_id is None:
        return 0  # no position, nothing of it to claim
    if exclude_order_id is None:
        return int(session.exec(_WORKING_CLOSE, params={"position": position_id}).one())
    return int(session.exec(_WORKING_CLOSE_EXCEPT, params={"position": position_id, "exclude": exclude_order_id}).one())


# built once (issue 11: building a statement costs more than running it)
_WORKING_CLOSE = select(func.coalesce(func.sum(Order.quantity - Order.filled_quantity), 0)).where(
    Order.position_id == bindparam("position"), Order.intent != "open", Order.status.in_(om.LIVE_VALUES))
_WORKING_CLOSE_EXCEPT = _WORKING_CLOSE.where(Order.id != bindparam("exclude"))


def gate_basis(order: Order, proposed: risk.ProposedOrder) -> tuple[object, ...]:
    """What the broker's dry run was of (field by field: a missing limit is NaN in ``proposed``, never equal)."""
    return (order.quantity, order.limit_price, order.legs, order.economics, order.time_in_force,
            proposed.position_quantity)


class OverrideRefused(ValueError):
    """The risk gate refuses an order at its overridden size or price; the order is left unchanged."""

    def __init__(self, decision: risk.RiskDecision) -> None:
        super().__init__(f"override refused by the risk gate: {decision.summary()}")
        self.decision = decision


def override(session: Session, order: Order, actor: str, reason: str, now: datetime,
             quantity: int | None = None, limit_price: Decimal | None = None,
             settings: Settings | None = None) -> risk.RiskDecision | None:
    """Change size or limit price of an unsent order. The structure's max loss, buying power and fees are
    recomputed for the new numbers (DESIGN §6: an override never skips the gate) and recorded on the order,
    whose position takes them at the fill. With ``settings`` the gate decides at once, on the console's
    view of the account: a refusal raises ``OverrideRefused`` and changes nothing. The gate decides again,
    on the broker's account, when the order is sent."""
    if om.status_of(order) not in (OrderStatus.proposed, OrderStatus.approved):
        raise om.IllegalTransition(f"order {order.client_order_id} is {order.status}; only unsent orders change")
    if quantity is None and limit_price is None:
        raise ValueError("an override changes quantity or limit price")
    if quantity is not None and quantity < 1:
        raise ValueError(f"quantity must be at least 1, got {quantity}")
    if limit_price is not None and not Decimal(limit_price).is_finite():
        raise ValueError(f"limit_price must be a number, got {limit_price}")
    new_qty = quantity if quantity is not None else order.quantity
    new_limit = om.money(limit_price) if limit_price is not None else order.limit_price
    econ = dict(order.economics)
    if order.intent == "open" and new_limit is not None:
        old_fees = Decimal(econ.get("fees_per_unit", "0"))
        legs = om.legs_of(order)
        contracts = sum(leg.ratio for leg in legs if leg.asset.value == "option")
        per_leg = (settings.fees.open_cost_per_contract_leg if settings is not None
                   else (old_fees / contracts if contracts else Decimal("0")))
        unit = unit_economics(legs, Decimal(new_limit), per_leg)
        if unit.max_loss_per_unit.is_infinite():
            raise ValueError(f"limit_price {new_limit}: the structure's loss is unlimited; it cannot be sized")
        econ.update({"max_loss_per_unit": str(unit.max_loss_per_unit),
                     "buying_power_per_unit": str(unit.buying_power_per_unit),
                     "fees_per_unit": str(unit.fees_per_unit)})
    decision = None
    if settings is not None:
        proposed = replace(to_proposed(order, held_for(session, order)), quantity=new_qty,
                           limit_price=Decimal(new_limit if new_limit is not None else "NaN"),
                           max_loss_per_unit=Decimal(econ.get("max_loss_per_unit", "0")),
                           buying_power_per_unit=Decimal(econ.get("buying_power_per_unit", "0")),
                           fees_per_unit=Decimal(econ.get("fees_per_unit", "0")))
        state = portfolio_risk_offline(session, settings, now, exclude_order_id=order.id)
        decision = risk.evaluate(proposed, state, settings.risk, now)
        if not decision.approved:
            raise OverrideRefused(decision)
    before = {"quantity": order.quantity, "limit_price": str(order.limit_price),
              "max_loss": str(order.max_loss), "economics": dict(order.economics)}
    per_unit_loss = Decimal(econ.get("max_loss_per_unit", "0"))
    order.quantity = new_qty
    order.limit_price = new_limit
    order.economics = econ
    order.max_loss = cents(per_unit_loss * new_qty)
    order.risk_per_unit = per_unit_loss + Decimal(econ.get("fees_per_unit", "0"))
    if decision is not None:
        order.risk_decision = decision.to_dict()
    after = {"quantity": order.quantity, "limit_price": str(order.limit_price),
             "max_loss": str(order.max_loss), "economics": econ}
    session.add(order)
    from engine.models import OrderEvent

    data: dict[str, object] = {"before": before, "after": after}
    if decision is not None:
        data["risk_decision"] = decision.to_dict()
    session.add(OrderEvent(order_id=order.id, client_order_id=order.client_order_id, from_status=order.status,
                           to_status=order.status, reason=f"override: {reason}", actor=actor, data=data, at=now))
    return decision
