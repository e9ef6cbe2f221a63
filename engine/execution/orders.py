"""The order lifecycle as an explicit state machine, with an append-only event table.

proposed -> approved -> submitting -> submitted -> partially_filled -> filled
                                                  \\-> cancelled | rejected | expired
``submitting`` is the crash-only step: it is committed *before* the broker is called, so after a crash
the engine knows which orders may have reached the broker and asks it by client order id before doing
anything else. Every transition is a row in ``orderevent`` with a timestamp, a reason and an actor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.sql.dml import Update
from sqlmodel import Session, select

from engine.execution.ports import Leg
from engine.models import Order, OrderEvent


class OrderStatus(StrEnum):
    proposed = "proposed"  # created, waiting for approval (manual/semi) or the automatic route
    approved = "approved"  # cleared to go to the broker (the gate runs again right before sending)
    submitting = "submitting"  # committed before the broker call: fate unknown until the broker answers
    submitted = "submitted"  # the broker accepted it, nothing filled yet
    partially_filled = "partially_filled"
    filled = "filled"
    cancelled = "cancelled"
    rejected = "rejected"
    expired = "expired"


TERMINAL = frozenset({OrderStatus.filled, OrderStatus.cancelled, OrderStatus.rejected, OrderStatus.expired})
LIVE_AT_BROKER = frozenset({OrderStatus.submitting, OrderStatus.submitted, OrderStatus.partially_filled})
# Every order that is not finished: waiting for approval, cleared to send, or at the broker. The one list
# (risk, duplicate checks, working exits, cancels) of what "live" means.
LIVE = frozenset({OrderStatus.proposed, OrderStatus.approved}) | LIVE_AT_BROKER
LIVE_VALUES = tuple(sorted(s.value for s in LIVE))
# Cleared to trade and not finished: what counts as a working order in risk and on the console (an order
# still waiting for the operator's approval is not working yet).
WORKING = LIVE - {OrderStatus.proposed}
WORKING_VALUES = tuple(sorted(s.value for s in WORKING))

_AFTER_SEND = {OrderStatus.submitted, OrderStatus.partially_filled, OrderStatus.filled, OrderStatus.cancelled,
               OrderStatus.rejected, OrderStatus.expired}
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.proposed: frozenset({OrderStatus.approved, OrderStatus.rejected, OrderStatus.cancelled,
                                     OrderStatus.expired}),
    OrderStatus.approved: frozenset({OrderStatus.submitting, OrderStatus.rejected, OrderStatus.cancelled,
                                     OrderStatus.expired}),
    # back to approved: reconciliation learnt that the broker never received it
    OrderStatus.submitting: frozenset(_AFTER_SEND | {OrderStatus.approved}),
    OrderStatus.submitted: frozenset(_AFTER_SEND - {OrderStatus.submitted}),
    OrderStatus.partially_filled: frozenset({OrderStatus.partially_filled, OrderStatus.filled,
                                             OrderStatus.cancelled, OrderStatus.expired}),
}


class IllegalTransition(RuntimeError):
    pass


def client_order_id(strategy: str, signal_key: str, structure: str, legs: Iterable[Leg], attempt: int) -> str:
    """Deterministic id from what the order *is*: the same decision always maps to the same id, so a
    restarted engine recognises its own orders at the broker and never sends one twice."""
    canonical = json.dumps(
        {"strategy": strategy, "signal": signal_key, "structure": structure,
         "legs": sorted(f"{leg.side.value}:{leg.ratio}:{leg.instrument}" for leg in legs)},
        sort_keys=True, separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
    return f"qm-{digest}-{attempt}"


def status_of(order: Order) -> OrderStatus:
    return OrderStatus(order.status)


def _check(order: Order, to: OrderStatus) -> OrderStatus:
    """The order's status now; raises IllegalTransition unless moving to ``to`` is allowed from it."""
    current = status_of(order)
    if to not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"order {order.client_order_id}: {current.value} -> {to.value} is not allowed")
    return current


def _event(order: Order, from_status: OrderStatus | None, to: OrderStatus, reason: str, actor: str,
           data: dict[str, Any] | None, at: datetime) -> OrderEvent:
    return OrderEvent(order_id=order.id, client_order_id=order.client_order_id,
                      from_status=None if from_status is None else from_status.value, to_status=to.value,
                      reason=reason, actor=actor, data=data or {}, at=at)


def transition(session: Session, order: Order, to: OrderStatus, reason: str, actor: str = "engine",
               data: dict[str, Any] | None = None, now: datetime | None = None) -> OrderEvent:
    """Move ``order`` to ``to`` and append the event; raises IllegalTransition for any other move."""
    current = _check(order, to)
    at = now or datetime.now(timezone.utc)
    event = _event(order, current, to, reason, actor, data, at)
    order.status = to.value
    order.updated_at = at
    session.add(order)
    session.add(event)
    return event


def create(session: Session, order: Order, reason: str, route: tuple[str, str] | None = None,
           now: datetime | None = None) -> None:
    """Insert a new ``proposed`` order and its creation event; with ``route`` ((reason, actor) of an
    automatic approval) the row is inserted already ``approved`` and both events are written: the history
    of a creation and a ``transition``, with one INSERT of the order instead of an INSERT and an UPDATE (the
    order path's latency is mostly statements, issue 11)."""
    if order.status != OrderStatus.proposed.value:
        raise IllegalTransition(f"order {order.client_order_id}: a new order starts proposed, not {order.status}")
    at = now or datetime.now(timezone.utc)
    if route is not None:
        order.status = OrderStatus.approved.value
        order.updated_at = at
    session.add(order)
    session.flush()  # the order's id, which its events carry
    events = [_event(order, None, OrderStatus.proposed, reason, "engine", None, at)]
    if route is not None:
        events.append(_event(order, OrderStatus.proposed, OrderStatus.approved, route[0], route[1], None, at))
    # one INSERT for both (the ORM would write them one by one: their NULL and non-NULL columns differ)
    rows = [e.model_dump(exclude={"id"}) for e in events]
    session.execute(_INSERT_EVENTS, rows)


# The order path's statements are built once: building a statement costs several times what SQLite takes
# to run it (issue 11: the per-order latency is mostly Python per statement, not the database).
_INSERT_EVENTS = insert(OrderEvent.__table__)  # type: ignore[arg-type]
_FIND = select(Order).where(Order.client_order_id == bindparam("cid"))


@lru_cache(maxsize=32)
def _claim_statement(columns: tuple[str, ...]) -> Update:
    """UPDATE order SET <columns> WHERE id = :_id AND status = :_from, built once per set of columns."""
    return (update(Order).where(Order.id == bindparam("_id"), Order.status == bindparam("_from"))
            .values({c: bindparam(c) for c in columns}).execution_options(synchronize_session=False))


def claim(session: Session, order: Order, to: OrderStatus, reason: str, values: dict[str, Any] | None = None,
          actor: str = "engine", now: datetime | None = None) -> bool:
    """Compare-and-set transition: one UPDATE moves the row from the status ``order`` has to ``to`` (with
    ``values`` written in the same statement) only if no other writer moved it first; then the event is
    appended. False, with ``order`` refreshed, when the row was no longer in that status. Exactly one of two
    concurrent claimers wins on any backend."""
    from sqlalchemy.orm.attributes import set_committed_value

    current = _check(order, to)
    at = now or datetime.now(timezone.utc)
    changes = {**(values or {}), "status": to.value, "updated_at": at}
    result = session.execute(_claim_statement(tuple(sorted(changes))),
                             {**changes, "_id": order.id, "_from": current.value})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(order)
        return False
    for key, value in changes.items():  # what the row now holds, without a second UPDATE
        set_committed_value(order, key, value)
    session.add(_event(order, current, to, reason, actor, None, at))
    return True


def legs_of(order: Order) -> tuple[Leg, ...]:
    return tuple(Leg.from_dict(d) for d in order.legs)


def find(session: Session, client_id: str) -> Order | None:
    return session.exec(_FIND, params={"cid": client_id}).first()


def open_orders(session: Session, statuses: Iterable[OrderStatus]) -> list[Order]:
    wanted = [s.value for s in statuses]
    return list(session.exec(select(Order).where(Order.status.in_(wanted)).order_by(Order.id)).all())


def history(session: Session, order: Order) -> list[OrderEvent]:
    return list(session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)))


def money(value: float | Decimal | str) -> Decimal:
    """Cents, rounded half-even: the only way prices enter an order."""
    from engine.portfolio.accounting import cents

    return cents(Decimal(str(value)))
