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
from fractions import Fraction

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


SETTLEMENT_KINDS = ("expired", "exercised", "assigned")


def _apply_event(session: Session, broker_name: str, ev: BrokerEvent, now: datetime) -> None:
    """Record the event; a position whose option legs have all settled is settled as a whole.

    A broker reports one event per contract (one per leg). Each leg's share of an event is its quantity in
    the position over the event's quantity. When every option leg of a position has its event, the
    position's deliveries net: cash received minus what the structure cost is its realized P&L when no
    stock is left (e.g. a debit spread with both legs in the money); stock that is left (a long call
    exercised, a short put assigned) becomes a stock position carrying the whole net cost as its basis
    (the option premium folded in, as IRS Publication 550 does), the position's levels and its risk.

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
                            executed_at=ev.at or now,
                            raw={**{k: str(v) for k, v in ev.detail.items()},
                                 "stock_instrument": ev.stock_instrument or "",
                                 "stock_quantity": str(ev.stock_quantity), "stock_price": str(ev.stock_price)}))
    session.flush()
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        legs = [Leg.from_dict(d) for d in pos.legs]
        if any(leg.instrument == ev.instrument for leg in legs):
            _settle_if_complete(session, pos, legs, ev.at or now)


def _settlements(session: Session, instruments: list[str]) -> dict[str, Transaction]:
    rows = session.exec(select(Transaction).where(Transaction.symbol.in_(instruments),
                                                  Transaction.type.in_(SETTLEMENT_KINDS))).all()
    return {t.symbol: t for t in rows if t.symbol is not None}


def settled_instruments(session: Session) -> set[str]:
    """Contracts that have left the account by expiry, exercise or assignment."""
    rows = session.exec(select(Transaction.symbol).where(Transaction.type.in_(SETTLEMENT_KINDS))).all()
    return {s for s in rows if s}


def _settle_if_complete(session: Session, pos: Position, legs: list[Leg], at: datetime) -> None:
    option_legs = [leg for leg in legs if leg.asset is AssetType.option]
    events = _settlements(session, [leg.instrument for leg in option_legs])
    if len(events) < len(option_legs) or pos.quantity <= 0:
        return  # another leg's event is still to come (a real broker may report legs separately)
    cash, stock = Decimal("0"), 0
    for leg in option_legs:
        t = events[leg.instrument]
        held = leg.sign * leg.ratio * pos.quantity  # our signed contracts; the event closes them
        share = Fraction(-held, int(t.quantity)) if t.quantity else Fraction(0)
        cash += Decimal(share.numerator) * t.amount / Decimal(share.denominator)
        delivered = int(t.raw.get("stock_quantity", "0") or 0)
        if delivered:
            stock += int(delivered * share)
    for leg in legs:
        if leg.asset is AssetType.stock:
            stock += leg.sign * leg.ratio * pos.quantity  # a covered call's own shares net with assignment
    mult = structure_multiplier(legs)
    cost = pos.entry_price * mult * pos.quantity  # net paid for what is held (negative for a credit)
    units = pos.quantity
    kinds = sorted({events[leg.instrument].type for leg in option_legs})
    book = Book(mult, pos.quantity, pos.entry_price, pos.realized_pnl)
    if stock == 0:
        book.close(units, -cash / (mult * units), Decimal("0"))  # P&L = payoff - debit (fees already in)
        pos.exit_reason = f"{'/'.join(kinds)} at expiry: payoff ${cents(cash):,.2f}"
    else:
        book.close(units, -pos.entry_price, Decimal("0"))  # no P&L yet: it moves into the stock's basis
        net_cost = cost - cash
        left, netted = _net_with_held_stock(session, pos, stock, net_cost, at)
        where = [f"netted against stock position {i} ({n:+d})" for i, n in netted]
        if left:
            stock_pos = _delivered_stock(pos, left, net_cost * Decimal(left) / Decimal(stock), at)
            session.add(stock_pos)
            session.flush()
            where.append(f"delivered into position {stock_pos.id}")
        pos.exit_reason = (f"{'/'.join(kinds)} at expiry: {stock:+d} shares of {pos.symbol} "
                           + ", ".join(where))
    pos.realized_pnl, pos.quantity, pos.entry_price = book.realized, 0, book.entry_price
    pos.status, pos.closed_at = "closed", at
    pos.max_loss, pos.unrealized_pnl, pos.delta_dollars = Decimal("0"), Decimal("0"), 0.0
    session.add(pos)


def _net_with_held_stock(session: Session, pos: Position, shares: int, net_cost: Decimal,
                         at: datetime) -> tuple[int, list[tuple[int, int]]]:
    """Delivered shares first close open stock positions of the opposite sign in the same symbol (oldest
    first): a covered call assigned calls the held shares away, a condor's short call assigned against
    shares we hold sells them. Each closed share is priced at the delivery's net price per share (strike
    and option premium together), so the stock position realizes its P&L and no offsetting pair remains.
    Returns the shares left to deliver into a new position and (position id, shares netted) pairs."""
    price = net_cost / abs(shares)  # quote terms per share: + paid (long delivered), - received (short)
    held = session.exec(select(Position).where(Position.status == "open", Position.symbol == pos.symbol,
                                               Position.structure == "stock", Position.id != pos.id)
                        .order_by(Position.opened_at, Position.id)).all()
    left, netted = shares, []
    for other in held:
        legs = [Leg.from_dict(d) for d in other.legs]
        sign = legs[0].sign if legs else 0
        if not left or other.quantity <= 0 or sign == 0 or (sign > 0) == (left > 0):
            continue
        n = min(abs(left), other.quantity)
        book = Book(1, other.quantity, other.entry_price, other.realized_pnl)
        per_share_risk = other.max_loss / other.quantity
        book.close(n, price, Decimal("0"))
        other.quantity, other.entry_price, other.realized_pnl = book.quantity, book.entry_price, book.realized
        other.max_loss = cents(per_share_risk * other.quantity)
        if other.quantity == 0:
            other.status, other.closed_at = "closed", at
            other.unrealized_pnl, other.delta_dollars = Decimal("0"), 0.0
            other.exit_reason = f"{n} shares delivered against it by the settlement of position {pos.id}"
        session.add(other)
        assert other.id is not None
        netted.append((other.id, n if left > 0 else -n))
        left += n if left < 0 else -n
    return left, netted


def _delivered_stock(pos: Position, shares: int, net_cost: Decimal, at: datetime) -> Position:
    """The stock an option position turned into: basis = everything the position netted per share.

    Its risk is entry-to-stop (DESIGN §6). Long shares keep the position's stop; without one (an iron
    condor has none) the long rule sets it: E - 1.5 ATR, never more than 10% below E. Short shares (a
    condor's short call assigned) get the mirrored stop, E + 1.5 ATR capped at 10% above E: the manager
    buys them back at the next cycle by rule (the strategy holds no short stock), and until then this is
    what they put at risk, instead of their whole notional blocking every entry through heat."""
    from engine.portfolio.manager import short_stock_stop
    from engine.strategies.atr_matrix import ATRMatrixParams, initial_stop

    side = Side.buy if shares > 0 else Side.sell
    leg = Leg(pos.symbol, side, 1, AssetType.stock, pos.symbol)
    qty = abs(shares)
    entry = net_cost / qty  # net debit per share: positive for long stock, negative (proceeds) for short
    basis = abs(entry)
    atr = pos.entry_atr if pos.entry_atr and pos.entry_atr > 0 else 0.0
    cap = ATRMatrixParams().max_stop_fraction
    if shares > 0:
        if pos.stop and pos.stop > 0:
            stop = pos.stop
        elif atr:
            stop = float(initial_stop(float(basis), atr))
        else:
            stop = 0.0  # nothing known: the whole basis is at risk
        per_share = max(Decimal("0"), basis - Decimal(str(stop)))
        targets = list(pos.targets)
    else:
        stop = short_stock_stop(float(basis), atr) if atr else (1.0 + cap) * float(basis)
        per_share = max(Decimal("0"), Decimal(str(stop)) - basis)
        targets = []  # no long targets on short shares
    return Position(strategy=pos.strategy, signal_id=pos.signal_id, symbol=pos.symbol, sector=pos.sector,
                    structure="stock", legs=[leg.to_dict()], quantity=qty, initial_quantity=qty,
                    entry_price=entry, underlying_entry=pos.underlying_entry, entry_atr=pos.entry_atr,
                    stop=stop, targets=targets, targets_hit=pos.targets_hit if shares > 0 else 0,
                    highest_close=pos.highest_close, max_loss=cents(per_share * qty),
                    initial_risk=cents(per_share * qty), status="open", opened_at=at,
                    exit_reason=None)


def engine_cash(session: Session, starting_cash: Decimal) -> Decimal:
    """Cash implied by every fill and broker event the engine applied."""
    cash = starting_cash
    for f in session.exec(select(Fill)).all():
        sign = -1 if f.side == "buy" else 1
        cash += sign * f.price * f.quantity * f.multiplier - f.commission - f.fees
    for t in session.exec(select(Transaction).where(Transaction.type.in_(SETTLEMENT_KINDS))):
        cash += t.amount
    return cash


def engine_instrument_positions(session: Session) -> dict[str, int]:
    """Signed quantity per instrument implied by the engine's open positions."""
    held: dict[str, int] = defaultdict(int)
    gone = settled_instruments(session)
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        for d in pos.legs:
            leg = Leg.from_dict(d)
            if leg.instrument in gone and leg.asset is AssetType.option:
                continue  # settled at the broker; the position waits for its other legs' events
            held[leg.instrument] += leg.sign * leg.ratio * pos.quantity
    return {k: v for k, v in held.items() if v}


def _compare_books(engine: Engine, broker: Broker, starting_cash: Decimal) -> list[dict[str, object]]:
    """Positions instrument by instrument, and cash where the engine owns the whole account.

    On a real account (a broker that syncs one: tastytrade) positions the operator holds beside the engine
    are expected: they are not differences but the external-position view, refreshed here every cycle so
    the risk gate counts a position opened at the broker since the last full sync. The cash there includes
    deposits, other trades and interest, so it is compared only on the paper account, which is all the
    engine's."""
    from engine.portfolio.sync import SyncableBroker, refresh_positions
    from engine.portfolio.sync import differences as position_differences

    positions = [p for p in broker.positions() if p.quantity]
    owns_account = _engine_owns_account(broker)
    account = broker.account() if owns_account else None
    with session_scope(engine) as session:
        ours = engine_instrument_positions(session)
        cash = engine_cash(session, starting_cash)
        diffs: list[dict[str, object]] = _offsetting_positions(session)
        if isinstance(broker, SyncableBroker):
            refresh_positions(session, broker, positions, ours)
    for d in position_differences(positions, ours):
        if d["kind"] == "external" and not owns_account:
            continue  # held beside the engine: listed in the external view, not a difference
        diffs.append({"kind": "position", "instrument": d["instrument"], "engine": d["engine"],
                      "broker": d["broker"]})
    if account is not None and cents(cash) != cents(account.cash):
        diffs.append({"kind": "cash", "engine": str(cents(cash)), "broker": str(cents(account.cash))})
    return diffs


def _engine_owns_account(broker: Broker) -> bool:
    """Only the paper account is the engine's alone (the fault-injecting wrapper trades it too)."""
    inner = getattr(broker, "inner", broker)
    return getattr(inner, "name", "") == "paper"


def _offsetting_positions(session: Session) -> list[dict[str, object]]:
    """One instrument held long in one engine position and short in another nets to the broker's number
    but is two wrong positions (each with its own risk and exit orders): a difference to report."""
    sides: dict[str, dict[int, int]] = defaultdict(dict)
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        for d in pos.legs:
            leg = Leg.from_dict(d)
            if pos.id is not None and pos.quantity:
                sides[leg.instrument][pos.id] = leg.sign * leg.ratio * pos.quantity
    out: list[dict[str, object]] = []
    for instrument, by_pos in sorted(sides.items()):
        if any(q > 0 for q in by_pos.values()) and any(q < 0 for q in by_pos.values()):
            out.append({"kind": "offsetting_positions", "instrument": instrument,
                        "positions": {str(k): v for k, v in sorted(by_pos.items())}})
    return out
