"""Every write the console makes, each through the engine function that owns it, recorded as the operator.

Pages call these after the login gate only; none of them is a widget callback, so nothing here can run
for a session that has not logged in. Each one commits in its own transaction and then clears the cached
reads so the page shows the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from app.state import ACTOR, db, effective, now, refresh, settings
from engine.db import session_scope
from engine.models import Order


def _order(session, order_id: int) -> Order:  # type: ignore[no-untyped-def]
    order = session.get(Order, order_id)
    if order is None:
        raise LookupError(f"order {order_id} does not exist")
    return order


def approve_order(order_id: int, reason: str = "") -> str:
    from engine.execution import service

    with session_scope(db()) as session:
        order = _order(session, order_id)
        service.approve(session, order, ACTOR, reason.strip() or "approved by operator", now())
        msg = f"Approved {order.symbol} {order.structure} ×{order.quantity}: the risk gate checks it again at send."
    refresh()
    return msg


def reject_order(order_id: int, reason: str) -> str:
    from engine.execution import service

    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    with session_scope(db()) as session:
        order = _order(session, order_id)
        service.reject(session, order, ACTOR, reason.strip(), now())
        msg = f"Rejected {order.symbol} {order.structure}: {reason.strip()}"
    refresh()
    return msg


def override_order(order_id: int, reason: str, quantity: int | None = None,
                   limit_price: float | str | None = None) -> str:
    """Change size and/or limit price of an unsent order; a proposed order is then approved so that it goes
    to the risk gate again (with the new numbers) when the engine sends it."""
    from engine.execution import service

    if not reason.strip():
        raise ValueError("an override needs a reason")
    price = None
    if limit_price is not None:
        try:
            price = Decimal(str(limit_price))
        except InvalidOperation:
            raise ValueError(f"limit price {limit_price!r} is not a number") from None
    with session_scope(db()) as session:
        order = _order(session, order_id)
        quantity = None if quantity is None or quantity == order.quantity else int(quantity)
        if price is not None and order.limit_price is not None and price == order.limit_price:
            price = None
        if quantity is None and price is None:
            raise ValueError("the override changes nothing: set a different quantity or limit price")
        t = now()
        # The gate decides on the new numbers now (a refusal raises and changes nothing) and again at send.
        service.override(session, order, ACTOR, reason.strip(), t, quantity=quantity, limit_price=price,
                         settings=effective())
        if order.status == "proposed":
            service.approve(session, order, ACTOR, f"approved with override: {reason.strip()}", t)
        msg = (f"Overrode {order.symbol}: quantity {order.quantity}, limit {order.limit_price}, max loss "
               f"${order.max_loss:,.2f}; the risk gate passed the new numbers and checks them again at send.")
    refresh()
    return msg


def set_kill_switch(on: bool) -> str:
    from engine import operator

    with session_scope(db()) as session:
        operator.set_kill_switch(session, on, ACTOR, now())
    refresh()
    return "Kill switch ON: no new entries pass the risk gate." if on else "Kill switch OFF: entries allowed again."


def set_approval_mode(mode: str) -> str:
    from engine import operator

    with session_scope(db()) as session:
        operator.set_approval_mode(session, mode, ACTOR, now())
    refresh()
    return f"Approval mode is now {mode}."


def job_command(kind: str, job_id: str, reason: str = "") -> int:
    """Queue pause_job / resume_job / run_job for the scheduler, which applies it and records the result."""
    from engine import operator
    from engine.schedule import JOB_IDS

    if kind not in ("pause_job", "resume_job", "run_job"):
        raise ValueError(f"unknown job command {kind!r}")
    if job_id not in JOB_IDS:
        raise ValueError(f"unknown job {job_id!r}; jobs are {', '.join(JOB_IDS)}")
    with session_scope(db()) as session:
        cmd = operator.enqueue_command(session, kind, {"job_id": job_id}, ACTOR, reason or f"{kind} from console",
                                       now())
        cmd_id = int(cmd.id or 0)
    refresh()
    return cmd_id


def save_settings(changes: dict[str, Any]) -> None:
    """Validate and store setting changes; raises engine.config.SettingsError (nothing stored) on a bad value."""
    from engine.settings_store import set_values

    if not changes:
        return
    with session_scope(db()) as session:
        set_values(session, settings(), changes, ACTOR, now())
    refresh()


def reset_settings(keys: list[str]) -> None:
    from engine.settings_store import reset

    with session_scope(db()) as session:
        reset(session, keys)
    refresh()


def scan_now(progress: Callable[[str], None]):  # type: ignore[no-untyped-def]
    """Run the ATR Matrix scan in this process through the engine (the same function the scheduler uses)."""
    from engine.scanning import run_scan

    outcome = run_scan(effective(), db(), progress=progress)
    refresh()
    return outcome


def adopt_external(underlying: str, reason: str = "") -> str:
    """Make the external positions of one underlying the engine's, through the risk gate (issue 14)."""
    from engine.portfolio.exposure import portfolio_risk_offline
    from engine.portfolio.sync import adopt

    current = effective()
    with session_scope(db()) as session:
        result = adopt(session, current.broker.value, underlying,
                       lambda u: portfolio_risk_offline(session, current, now(), exclude_external=u),
                       current.risk, now(), actor=ACTOR)
        if not result.adopted:
            session.rollback()
    refresh()
    if not result.adopted:
        raise ValueError(result.message)
    return result.message + (f" ({reason.strip()})" if reason.strip() else "")
