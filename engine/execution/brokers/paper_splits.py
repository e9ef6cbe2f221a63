"""Stock splits in the paper venue's own books, by the engine's one split rule (``portfolio.splits``).

A real broker adjusts its holdings on a split's ex-date; the paper venue does the same when the engine's
pre-market applies the split to its positions (``splits.apply_splits``), so both books still agree on
quantity, basis and equity afterwards. Dollars do not move: each holding keeps its cost and realised P&L,
only its quantity (shares x r; contracts x r at strike / r for a whole-number split) or its contract (an
OCC-adjusted one delivering floor(100 x r) shares) changes. Applied once per (ticker, ex-date).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engine.execution.brokers.paper_books import _Books, _iso, _meta, _Pos, _splits, _venue_call
from engine.execution.ports import AssetType, Leg, Side
from engine.portfolio.splits import SplitEvent, adjust_leg, unit_factor


class PaperSplits:
    """Split adjustment of the venue's holdings (mixed into PaperBroker, which provides the books)."""

    _engine: Engine
    clock: Callable[[], datetime]

    @_venue_call
    def apply_split(self, event: SplitEvent, contracts: Mapping[str, str | None] | None = None) -> list[str]:
        """Adjust every holding of ``event.ticker`` (its shares, and options on it) once; returns what was
        done (empty when already applied or nothing is held). ``contracts``: the adjusted contract of each
        option a non-whole split moves, as the engine looked it up (``splits.adjusted_contracts``)."""
        key = f"{event.ticker}:{event.executed.isoformat()}"
        now = self.clock()
        lines: list[str] = []
        with self._engine.begin() as conn:
            marker = f"split:{key}"
            if conn.execute(sa.select(_meta.c.key).where(_meta.c.key == marker)).first() is not None:
                return []
            books = self._load(conn)
            held = sorted((p for p in books.positions.values() if p.quantity and _of(p, event.ticker)),
                          key=lambda p: p.instrument)
            for pos in held:
                lines.append(self._split_one(conn, books, pos, event, dict(contracts or {}), key, now))
            conn.execute(_meta.insert().values(key=marker, value=_iso(now)))
            self._save(conn, books, now)
        return lines

    def _split_one(self, conn: Connection, books: _Books, pos: _Pos, event: SplitEvent,
                   contracts: dict[str, str | None], key: str, now: datetime) -> str:
        option = pos.asset is AssetType.option
        side = Side.buy if pos.quantity > 0 else Side.sell
        d, _ = adjust_leg(pos.leg(side).to_dict(), event, option, contracts)
        new = Leg.from_dict(d)
        size = math.floor(abs(pos.quantity) * unit_factor(event, option) + 1e-9)
        quantity = size if pos.quantity > 0 else -size
        moved = _Pos(new.instrument, pos.asset, pos.underlying, pos.right,
                     None if d.get("strike") is None else Decimal(str(d["strike"])),
                     _expiry(d.get("expiry")), quantity, pos.cost, pos.realized, True, new.deliverable)
        conn.execute(_splits.insert().values(
            split=key, instrument=pos.instrument, quantity=pos.quantity, new_instrument=new.instrument,
            new_quantity=quantity, deliverable=new.deliverable, at=_iso(now)))
        line = f"{key}: {pos.instrument.strip()} x{pos.quantity} -> {new.instrument.strip()} x{quantity}"
        if new.instrument != pos.instrument:  # the old row goes (saved as empty), the new one holds it all
            pos.quantity, pos.cost, pos.realized, pos.dirty = 0, Decimal(0), Decimal(0), True
        same = books.positions.get(new.instrument)
        if same is not None and same is not pos and same.quantity:  # already held there: one holding
            moved.quantity += same.quantity
            moved.cost += same.cost
            moved.realized += same.realized
        books.positions[new.instrument] = moved
        return line


def _of(pos: _Pos, ticker: str) -> bool:
    return pos.underlying == ticker if pos.asset is AssetType.option else pos.instrument == ticker


def _expiry(value: object) -> date | None:
    return None if value in (None, "") else date.fromisoformat(str(value))
