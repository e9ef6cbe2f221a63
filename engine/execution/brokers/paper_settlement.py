"""Expiry settlement of the paper venue: exercise, assignment and worthless expiry, once each."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engine.data import calendar
from engine.execution.brokers.paper_books import (
    SUB_PENNY,
    ZERO,
    W,
    _Books,
    _events,
    _iso,
    _money,
    _orders,
    _Pos,
    _venue_call,
)
from engine.execution.brokers.quotes import QuoteSource, parse_option_symbol
from engine.execution.ports import (
    AssetType,
    BrokerEvent,
    BrokerOrderStatus,
    Leg,
    Side,
)
from engine.portfolio.accounting import delivery, intrinsic


def per_share(cash: Decimal, shares: int) -> Decimal:
    """Price per delivered share (the strike for a standard contract; strike x 100 / deliverable for an
    adjusted one), to the 1/100 cent: informational, the event's cash is the exact amount."""
    return _money((abs(cash) / abs(shares)).quantize(SUB_PENNY, ROUND_HALF_EVEN))


class PaperSettlement:
    """Settles expiring option positions (mixed into PaperBroker, which provides the books and quotes)."""

    _engine: Engine
    quotes: QuoteSource
    clock: Callable[[], datetime]

    # ------------------------------------------------------------------ expiry settlement

    @_venue_call
    def settle_expiries(self, day: date) -> list[BrokerEvent]:
        """Settle every option position expiring on or before ``day`` (after ``day``'s session close):
        ITM by at least ``itm_threshold`` against the settlement price -> long exercised / short assigned
        (the contract's deliverable, 100 shares for a standard one, for strike x 100), otherwise expired
        worthless. Idempotent."""
        now = self.clock()
        times = calendar.session_times(day)
        close = times[1] if times is not None else None
        if close is not None and now < close:
            raise ValueError(f"cannot settle {day} expiries before that session's close ({close.isoformat()})")
        events: list[BrokerEvent] = []
        with self._engine.begin() as conn:
            books = self._load(conn)
            due = sorted((p for p in books.positions.values() if p.asset is AssetType.option and p.quantity
                          and p.expiry is not None and p.expiry <= day), key=lambda p: p.instrument)
            for pos in due:
                assert pos.expiry is not None and pos.strike is not None
                exp_times = calendar.session_times(pos.expiry)
                if exp_times is not None and now < exp_times[1]:
                    continue
                settle = self.quotes.settlement_price(pos.underlying, pos.expiry)
                events.append(self._settle_one(conn, books, pos, settle, now))
            # working orders on contracts that no longer trade die with them
            for r in conn.execute(sa.select(_orders).where(_orders.c.status == W.value)).mappings().all():
                for leg in self._legs(r):
                    spec = parse_option_symbol(leg.instrument) if leg.asset is AssetType.option else None
                    if spec is not None and spec.expiry <= day:
                        self._set_status(conn, r["client_order_id"], BrokerOrderStatus.expired, now,
                                         f"contract {leg.instrument.strip()} expired")
                        break
            self._save(conn, books, now)
        return events

    def _settle_one(self, conn: Connection, books: _Books, pos: _Pos, settle: Decimal, now: datetime) -> BrokerEvent:
        assert pos.strike is not None and pos.expiry is not None
        n = pos.quantity
        itm = intrinsic(pos.right, pos.strike, settle, pos.deliverable) >= self.config.itm_threshold
        detail: dict[str, object] = {"settlement_price": str(settle), "strike": str(pos.strike), "right": pos.right,
                                     "expiry": pos.expiry.isoformat(), "position": n,
                                     "deliverable": pos.deliverable}
        books.realized += pos.trade(Side.sell if n > 0 else Side.buy, abs(n), ZERO)  # the option leaves at 0
        cash, stock_qty = ZERO, 0
        if itm:
            kind = "exercised" if n > 0 else "assigned"
            # long call / short put: receive shares and pay the strike; long put / short call: the reverse
            stock_qty, cash = delivery(pos.right, pos.strike, n, pos.deliverable)
            stock_leg = Leg(pos.underlying, Side.buy if stock_qty > 0 else Side.sell, 1, AssetType.stock,
                            pos.underlying)
            stock = self._position_for(books, stock_leg)
            books.realized += stock.trade(stock_leg.side, abs(stock_qty), pos.strike, value=abs(cash))
            books.cash += cash
        else:
            kind = "expired"
        event = BrokerEvent(f"{kind}-{pos.expiry:%Y%m%d}-{pos.instrument.replace(' ', '')}", kind, pos.instrument,
                            -n, _money(cash), pos.underlying if itm else None, stock_qty,
                            per_share(cash, stock_qty) if itm else ZERO, now, detail)
        conn.execute(_events.insert().values(
            event_id=event.event_id, kind=kind, instrument=pos.instrument, quantity=-n, cash=str(cash),
            stock_instrument=event.stock_instrument, stock_quantity=stock_qty, stock_price=str(event.stock_price),
            at=_iso(now), detail=json.dumps(detail),
        ))
        return event

