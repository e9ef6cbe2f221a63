"""Exit orders, fills, scale-outs and closed positions: the sweep run after every job."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from engine.models import (
    Fill,
    Order,
    Position,
)
from engine.notify.embeds import BLUE, GREEN, ORANGE, RED, Message
from engine.notify.reports.format import (
    SWEEP_LOOKBACK,
    Report,
    _dec,
    _lines,
    _ny_date,
    money,
    net,
    occ,
    pnl_color,
    price,
    r_multiple,
)
from engine.notify.reports.reads import exit_kind, reason_codes
from engine.readings import position_r


def exit_order(session: Session, order: Order) -> Report:
    pos = session.get(Position, order.position_id) if order.position_id else None
    kind = exit_kind(order.reason)
    codes = reason_codes(order.reason)
    rule = " + ".join(codes) if codes else "exit"
    if kind == "scale_out":
        rule = "scale-out"
    limit = net(order.limit_price) if order.limit_price is not None else "market"
    legs = "; ".join(f"{leg.get('side', '').upper()} {occ(leg.get('instrument', ''))}" for leg in order.legs)
    fields = [
        ("Rule and values", _lines((f"• {part}" for part in (order.reason or "").split("; ")), "n/a"), False),
        ("Order", f"{order.structure} x{order.quantity} limit {limit} ({order.status})\n{legs}"
                  + (f"\nattempt {order.attempt}" if order.attempt > 1 else ""), False),
    ]
    if pos is not None:
        fields.append(("Position", (
            f"#{pos.id} opened {_ny_date(pos.opened_at)} at {net(entry_price(session, pos))}/unit, "
            f"underlying entry {price(pos.underlying_entry)}\n"
            f"stop {price(pos.stop)} · targets hit {pos.targets_hit}/{len(pos.targets)} · "
            f"1R {money(pos.initial_risk)}"), False))
    return Report("signals", f"exit-order:{order.client_order_id}", Message(
        title=f"Exit order: {order.symbol} ({rule})",
        description=f"{order.strategy} · {order.intent} {order.quantity} of {order.symbol} {order.structure}",
        fields=fields, color=RED if kind == "stop" else ORANGE, footer=f"order {order.client_order_id}",
        timestamp=order.created_at, kind="exit_order",
    ))


def exit_orders(session: Session, now: datetime) -> list[Report]:
    since = now - SWEEP_LOOKBACK
    orders = session.exec(select(Order).where(Order.intent != "open", Order.created_at >= since)
                          .order_by(col(Order.id))).all()
    return [exit_order(session, o) for o in orders]


# --- portfolio channel ------------------------------------------------------------------------------


def fill_report(fill: Fill, order: Order | None) -> Report:
    value = _dec(fill.price) * fill.quantity * fill.multiplier
    fees = _dec(fill.commission) + _dec(fill.fees)
    what = f"{order.intent} {order.symbol} {order.structure}" if order is not None else "order not found"
    filled_at = fill.filled_at
    return Report("portfolio", f"fill:{fill.broker_fill_id}", Message(
        title=f"Fill: {fill.side.upper()} {fill.quantity} {occ(fill.instrument)} @ {money(fill.price)}",
        fields=[
            ("Instrument", occ(fill.instrument), True),
            ("Side", fill.side, True),
            ("Quantity", f"{fill.quantity} x {fill.multiplier}", True),
            ("Price", money(fill.price), True),
            ("Value", money(value), True),
            ("Fees", f"{money(fees)} (commission {money(fill.commission)}, fees {money(fill.fees)})", True),
            ("For", what, False),
        ],
        color=BLUE if fill.side == "buy" else ORANGE,
        footer=f"fill {fill.broker_fill_id} · order {fill.client_order_id}",
        timestamp=filled_at, kind="fill",
    ))


def last_reported_fill_id(session: Session) -> int | None:
    """The newest fill (by row id, i.e. by when we learned of it) that already has its announcement."""
    from sqlalchemy import exists, func, literal

    from engine.models import NotificationOutbox

    reported = exists().where(NotificationOutbox.idempotency_key == literal("fill:") + Fill.broker_fill_id)
    return session.exec(select(func.max(Fill.id)).where(reported)).one()


def fills(session: Session, now: datetime) -> list[Report]:
    """Fills not announced yet: every fill recorded after the last one announced (however long the scheduler
    was down), or the last SWEEP_LOOKBACK when nothing was ever announced."""
    last = last_reported_fill_id(session)
    query = select(Fill).where(col(Fill.id) > last) if last is not None else \
        select(Fill).where(Fill.filled_at >= now - SWEEP_LOOKBACK)
    rows = session.exec(query.order_by(col(Fill.id))).all()
    ids = sorted({f.order_id for f in rows})
    orders = {o.id: o for o in session.exec(select(Order).where(col(Order.id).in_(ids)))} if ids else {}
    return [fill_report(f, orders.get(f.order_id)) for f in rows]


def scale_out(session: Session, order: Order) -> Report:
    pos = session.get(Position, order.position_id) if order.position_id else None
    fields = [
        ("Sold", f"{order.filled_quantity} of {order.quantity} at {net(order.avg_fill_price)}/unit", True),
        ("Rule", order.reason or "n/a", False),
    ]
    if pos is not None:
        fields += [
            ("Remaining", f"{pos.quantity} of {pos.initial_quantity}", True),
            ("Realized P&L so far", money(pos.realized_pnl, signed=True), True),
            ("Stop now", price(pos.stop), True),
        ]
    color = pnl_color(pos.realized_pnl) if pos is not None else GREEN
    return Report("portfolio", f"scale-out:{order.client_order_id}", Message(
        title=f"Scale-out: {order.symbol} {order.structure}", fields=fields, color=color,
        footer=f"order {order.client_order_id}", timestamp=order.updated_at, kind="scale_out",
    ))


def scale_outs(session: Session, now: datetime) -> list[Report]:
    """Closing orders for a target that finished (filled, or ended with a partial fill)."""
    since = now - SWEEP_LOOKBACK
    done = ("filled", "cancelled", "expired", "rejected")
    orders = session.exec(select(Order).where(Order.intent != "open", col(Order.status).in_(done),
                                              Order.filled_quantity > 0, Order.updated_at >= since)
                          .order_by(col(Order.id))).all()
    return [scale_out(session, o) for o in orders if exit_kind(o.reason) == "scale_out"]


def entry_price(session: Session, pos: Position) -> Decimal | None:
    """What was paid per unit: the position's book price while open, the entry orders' average once closed
    (the book resets its price when the quantity reaches zero)."""
    if pos.quantity:
        return _dec(pos.entry_price)
    entries = session.exec(select(Order).where(Order.position_id == pos.id, Order.intent == "open",
                                               Order.filled_quantity > 0)).all()
    units = sum(o.filled_quantity for o in entries)
    if not units:
        return None
    return sum((_dec(o.avg_fill_price) * o.filled_quantity for o in entries), Decimal("0")) / units


def position_closed(session: Session, pos: Position) -> Report:
    kind = exit_kind(pos.exit_reason or "")
    closes = session.exec(select(Order).where(Order.position_id == pos.id, Order.intent != "open",
                                              Order.filled_quantity > 0).order_by(col(Order.id))).all()
    exits = "; ".join(f"{o.filled_quantity} at {net(o.avg_fill_price)}" for o in closes) or "at expiry"
    closed = pos.closed_at
    held = f"{_ny_date(pos.opened_at)} to {_ny_date(pos.closed_at)}"
    title = ("Stop hit" if kind == "stop" else "Position closed") + f": {pos.symbol} {pos.structure}"
    return Report("portfolio", f"closed:{pos.id}", Message(
        title=title,
        fields=[
            ("Realized P&L", money(pos.realized_pnl, signed=True), True),
            ("R multiple", r_multiple(position_r(pos)), True),
            ("1R (initial risk)", money(pos.initial_risk), True),
            ("Quantity", f"{pos.initial_quantity}", True),
            ("Entry", f"{net(entry_price(session, pos))}/unit", True),
            ("Exits", exits, True),
            ("Held", held, True),
            ("Exit reason", pos.exit_reason or "n/a", False),
        ],
        color=pnl_color(pos.realized_pnl), footer=f"position #{pos.id}", timestamp=closed, kind="position_closed",
    ))


def closed_positions(session: Session, now: datetime) -> list[Report]:
    since = now - SWEEP_LOOKBACK
    rows = session.exec(select(Position).where(Position.status == "closed", Position.closed_at >= since)
                        .order_by(col(Position.id))).all()
    return [position_closed(session, p) for p in rows]
