"""Orders, approvals, gate previews, decisions and fills."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.config import Settings
from engine.models import (
    Fill,
    Order,
    OrderEvent,
    Position,
    Signal,
)
from engine.queries._common import _f, _f0, _numeric

DECISION_ACTORS_EXCLUDED = ("engine", "broker")  # everything else is a person (the operator)

ORDER_COLUMNS = ["id", "created_at", "updated_at", "symbol", "structure", "intent", "status", "quantity",
                 "filled_quantity", "limit_price", "avg_fill_price", "max_loss", "client_order_id", "broker",
                 "broker_order_id", "reason", "position_id", "signal_id", "legs_filled", "approved_by"]


def _order_row(o: Order) -> dict[str, Any]:
    return {"id": o.id, "created_at": o.created_at, "updated_at": o.updated_at, "symbol": o.symbol,
            "structure": o.structure, "intent": o.intent, "status": o.status, "quantity": o.quantity,
            "filled_quantity": o.filled_quantity, "limit_price": _f(o.limit_price),
            "avg_fill_price": _f(o.avg_fill_price), "max_loss": _f0(o.max_loss), "client_order_id": o.client_order_id,
            "broker": o.broker, "broker_order_id": o.broker_order_id, "reason": o.reason,
            "position_id": o.position_id, "signal_id": o.signal_id}


def legs_filled_text(order: Order, filled_by_instrument: dict[str, int]) -> str:
    """Contracts filled per leg against what the order wants, e.g. "+C100 3/5, -C110 2/5 (legs uneven)":
    a combo whose legs the broker filled separately shows here until the lagging leg catches up."""
    parts, units = [], []
    for d in order.legs or []:
        ratio = int(d.get("ratio", 1) or 1)
        got = filled_by_instrument.get(str(d["instrument"]), 0)
        units.append(got // ratio)
        sign = "+" if d.get("side") == "buy" else "-"
        parts.append(f"{sign}{str(d['instrument']).split()[-1]} {got}/{ratio * order.quantity}")
    uneven = len(set(units)) > 1
    return ", ".join(parts) + (" (legs uneven: a partly filled combo)" if uneven else "")


def orders_frame(engine: Engine, statuses: list[str] | None = None, limit: int = 1000) -> pd.DataFrame:
    query = select(Order).order_by(Order.id.desc()).limit(limit)  # type: ignore[union-attr]
    if statuses:
        query = query.where(col(Order.status).in_(statuses))
    with Session(engine) as session:
        rows = session.exec(query).all()
        ids = [o.id for o in rows]
        by_order: dict[int, dict[str, int]] = {}
        for oid, instrument, qty in session.exec(
                select(Fill.order_id, Fill.instrument, func.sum(Fill.quantity)).where(col(Fill.order_id).in_(ids))
                .group_by(Fill.order_id, Fill.instrument)).all():
            by_order.setdefault(int(oid), {})[instrument] = int(qty or 0)
        approved_by = dict(session.exec(select(OrderEvent.order_id, OrderEvent.actor).where(
            col(OrderEvent.order_id).in_(ids), OrderEvent.to_status == "approved")).all())
    records = []
    for o in rows:
        rec = _order_row(o)
        rec["legs_filled"] = legs_filled_text(o, by_order.get(o.id or 0, {}))
        actor = approved_by.get(o.id)
        rec["approved_by"] = "executed by rule" if actor == "rule" else (actor or "")
        records.append(rec)
    frame = pd.DataFrame(records, columns=ORDER_COLUMNS)
    frame["broker_order_id"] = frame["broker_order_id"].fillna("")
    return _numeric(frame, ["limit_price", "avg_fill_price", "max_loss"])


def order_status_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {s: int(n) for s, n in session.exec(select(Order.status, func.count()).group_by(Order.status)).all()}


def pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Order).where(Order.status == "proposed")).one())


def pending_orders(engine: Engine) -> list[dict[str, Any]]:
    """Orders waiting for the operator (status proposed), oldest first, with what is needed to decide."""
    with Session(engine) as session:
        orders = session.exec(select(Order).where(Order.status == "proposed").order_by(Order.id)).all()
        out = []
        for o in orders:
            sig = session.get(Signal, o.signal_id) if o.signal_id else None
            row = _order_row(o)
            row.update({"legs": list(o.legs), "economics": dict(o.economics or {}),
                        "risk_per_unit": _f0(o.risk_per_unit),
                        "signal": None if sig is None else {"score": sig.score, "zone": sig.zone,
                                                            "entry_price": sig.entry_price, "stop": sig.stop,
                                                            "targets": list(sig.targets)}})
            out.append(row)
    return out


def gate_preview(engine: Engine, settings: Settings, order_id: int, now: datetime | None = None) -> dict[str, Any]:
    """What the risk gate would say about ``order_id`` now, without a broker: equity and buying power come
    from the newest account snapshot. A preview only; the gate runs again, with the broker, at send time."""
    from engine import risk
    from engine.execution.service import to_proposed, working_close_quantity
    from engine.portfolio.exposure import portfolio_risk_offline

    now = now or datetime.now(UTC)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        if order is None:
            raise KeyError(f"no order {order_id}")
        held = None
        if order.intent != "open" and order.position_id is not None:
            pos = session.get(Position, order.position_id)
            held = pos.quantity if pos is not None and pos.status == "open" else 0
            held -= working_close_quantity(session, order.position_id, exclude_order_id=order.id)
        portfolio = portfolio_risk_offline(session, settings, now, exclude_order_id=order.id)
        decision = risk.evaluate(to_proposed(order, held), portfolio, settings.risk, now)
    return {"approved": decision.approved, "order_risk": _f0(decision.order_risk),
            "order_risk_pct": 100 * _f0(decision.order_risk) / _f0(portfolio.equity) if portfolio.equity else None,
            "equity": _f0(portfolio.equity), "summary": decision.summary(),
            "checks": [c.to_dict() for c in decision.checks]}


def order_events(engine: Engine, order_id: int) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)).all()
    return pd.DataFrame([{"at": e.at, "from": e.from_status, "to": e.to_status, "actor": e.actor,
                          "reason": e.reason} for e in rows], columns=["at", "from", "to", "actor", "reason"])


def decision_history(engine: Engine, limit: int = 300) -> pd.DataFrame:
    """Operator decisions: order events made by someone other than the engine or the broker."""
    with Session(engine) as session:
        rows = session.exec(select(OrderEvent, Order.symbol, Order.structure)
                            .join(Order, OrderEvent.order_id == Order.id)
                            .where(col(OrderEvent.actor).not_in(DECISION_ACTORS_EXCLUDED))
                            .order_by(OrderEvent.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    cols = ["at", "order_id", "symbol", "structure", "decision", "from", "to", "actor", "reason", "client_order_id"]
    data = []
    for e, symbol, structure in rows:
        decision = "override" if e.reason.startswith("override:") else e.to_status
        data.append({"at": e.at, "order_id": e.order_id, "symbol": symbol, "structure": structure,
                     "decision": decision, "from": e.from_status, "to": e.to_status, "actor": e.actor,
                     "reason": e.reason, "client_order_id": e.client_order_id})
    return pd.DataFrame(data, columns=cols)


def fills_frame(engine: Engine, limit: int = 1000, order_id: int | None = None) -> pd.DataFrame:
    query = select(Fill).order_by(Fill.id.desc()).limit(limit)  # type: ignore[union-attr]
    if order_id is not None:
        query = query.where(Fill.order_id == order_id)
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["filled_at", "order_id", "client_order_id", "instrument", "side", "quantity", "price", "multiplier",
            "commission", "fees", "notional", "broker_fill_id"]
    return pd.DataFrame([{"filled_at": f.filled_at, "order_id": f.order_id,
                          "client_order_id": f.client_order_id, "instrument": f.instrument, "side": f.side,
                          "quantity": f.quantity, "price": _f0(f.price), "multiplier": f.multiplier,
                          "commission": _f0(f.commission), "fees": _f0(f.fees),
                          "notional": _f0(f.price) * f.quantity * f.multiplier, "broker_fill_id": f.broker_fill_id}
                         for f in rows], columns=cols)


# --- positions -------------------------------------------------------------------------------------------
