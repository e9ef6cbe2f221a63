"""What the paper venue reports: orders, fills, events, positions and the account (its marks).

Split out of ``paper.py`` along its seams (venue, margin, settlement, books, reads); ``PaperBroker``
combines them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engine.execution.brokers.paper_books import (
    SUB_PENNY,
    ZERO,
    _Books,
    _events,
    _fills,
    _money,
    _orders,
    _Pos,
    _venue_call,
)
from engine.execution.brokers.paper_margin import _margin
from engine.execution.brokers.quotes import QuoteSource, UnknownInstrument
from engine.execution.ports import (
    AssetType,
    BrokerAccount,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerPosition,
)
from engine.portfolio.accounting import intrinsic

# built once: the engine asks for an order's fills after every answer (issue 11)
_ALL_FILLS = sa.select(_fills).order_by(_fills.c.id)
_FILLS_OF_ORDER = _ALL_FILLS.where(_fills.c.client_order_id == sa.bindparam("cid"))


class PaperReads:
    """The Broker port's reads (mixed into PaperBroker, which provides the books and the quotes)."""

    _engine: Engine
    _reading: Callable[[], Connection]
    quotes: QuoteSource
    clock: Callable[[], datetime]

    @_venue_call
    def order(self, client_order_id: str) -> BrokerOrder | None:
        with self._reading() as conn:
            r = self._get(conn, client_order_id)
            return None if r is None else self._to_order(r)

    @_venue_call
    def orders(self, status: BrokerOrderStatus | None = None) -> list[BrokerOrder]:
        q = sa.select(_orders).order_by(_orders.c.id)
        if status is not None:
            q = q.where(_orders.c.status == status.value)
        with self._reading() as conn:
            return [self._to_order(r) for r in conn.execute(q).mappings()]

    @_venue_call
    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]:
        with self._reading() as conn:
            rows = (conn.execute(_ALL_FILLS) if client_order_id is None
                    else conn.execute(_FILLS_OF_ORDER, {"cid": client_order_id}))
            return [self._to_fill(r) for r in rows.mappings()]

    @_venue_call
    def events(self) -> list[BrokerEvent]:
        with self._reading() as conn:
            return [self._to_event(r) for r in conn.execute(sa.select(_events).order_by(_events.c.id)).mappings()]

    @_venue_call
    def positions(self) -> list[BrokerPosition]:
        with self._reading() as conn:
            books = self._load(conn)
        out = []
        for p in sorted(books.positions.values(), key=lambda p: p.instrument):
            if p.quantity:
                avg = (abs(p.cost) / (abs(p.quantity) * p.multiplier)).quantize(SUB_PENNY, ROUND_HALF_EVEN)
                out.append(BrokerPosition(p.instrument, p.quantity, _money(avg), p.asset, p.underlying,
                                          p.deliverable))
        return out

    @_venue_call
    def account(self) -> BrokerAccount:
        now = self.clock()
        with self._reading() as conn:
            books = self._load(conn)
        req, _ = _margin(books.positions.values())
        self._prefetch([p.instrument for p in books.positions.values() if p.quantity], now)
        marks = sum((self._mark(p, books, now) * p.quantity * p.multiplier
                     for p in books.positions.values() if p.quantity), ZERO)
        return BrokerAccount(_money(books.cash), _money(books.cash - req), _money(books.cash + marks))

    def realized_pnl(self) -> Decimal:
        """Realised P&L of all reductions so far (before commissions and fees)."""
        with self._reading() as conn:
            return _money(self._load(conn).realized)

    def _prefetch(self, instruments: list[str], now: datetime) -> None:
        """Price these contracts in one pass where the quote source can (marks, an order's legs); a
        failure here is not an answer: the per-instrument quotes that follow decide."""
        prefetch = getattr(self.quotes, "prefetch", None)
        if prefetch is None or not instruments:
            return
        try:
            prefetch(instruments, now)
        except Exception:  # each quote() below raises (or maps) its own error
            return

    def _mark(self, p: _Pos, books: _Books, now: datetime) -> Decimal:
        """Mid of the quote; for an option without one (e.g. on its expiry day) its intrinsic value
        against the underlying's mid; failing both, its average price."""
        try:
            return self._quote(p.instrument, now, books).mid
        except UnknownInstrument:
            pass
        if p.asset is AssetType.option and p.strike is not None:
            try:
                spot = self.quotes.quote(p.underlying, now).mid
                return intrinsic(p.right, p.strike, spot, p.deliverable)
            except UnknownInstrument:
                pass
        return abs(p.cost) / (abs(p.quantity) * p.multiplier)
