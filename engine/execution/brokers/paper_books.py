"""The paper venue's books: its own schema (not the engine's), positions, cash and the audit of both.

Split out of ``paper.py`` along its seams (venue, margin, settlement, books); ``PaperBroker`` combines them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from engine.db import READ_ONLY
from engine.execution.brokers.quotes import parse_option_symbol
from engine.execution.ports import (
    STANDARD_DELIVERABLE,
    AssetType,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.portfolio.accounting import cents

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
ZERO = Decimal("0")
SCHEMA_VERSION = "2"

W = BrokerOrderStatus.working

# --------------------------------------------------------------------------- schema (the venue's own)

_md = sa.MetaData()
_meta = sa.Table("paper_meta", _md, sa.Column("key", sa.String, primary_key=True), sa.Column("value", sa.String))
_account = sa.Table(
    "paper_account", _md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cash", sa.String, nullable=False),
    sa.Column("realized_pnl", sa.String, nullable=False),
)
_orders = sa.Table(
    "paper_orders", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client_order_id", sa.String, nullable=False, unique=True),
    sa.Column("broker_order_id", sa.String, nullable=False, unique=True),
    sa.Column("underlying", sa.String, nullable=False),
    sa.Column("intent", sa.String, nullable=False),
    sa.Column("legs", sa.Text, nullable=False),  # JSON list of Leg.to_dict()
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("limit_price", sa.String, nullable=False),
    sa.Column("time_in_force", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("filled_quantity", sa.Integer, nullable=False),
    sa.Column("filled_value", sa.String, nullable=False),  # sum of net price x units over executions
    sa.Column("executions", sa.Integer, nullable=False),
    sa.Column("leg_commissions", sa.Text, nullable=False),  # JSON list: commission charged so far per leg
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.String, nullable=False),
    sa.Column("updated_at", sa.String, nullable=False),
    sa.Column("expires_at", sa.String, nullable=True),  # day orders: the session close they die at
)
_fills = sa.Table(
    "paper_fills", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fill_id", sa.String, nullable=False, unique=True),
    sa.Column("client_order_id", sa.String, nullable=False, index=True),
    sa.Column("execution", sa.Integer, nullable=False),
    sa.Column("leg", sa.Integer, nullable=False),
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("side", sa.String, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.String, nullable=False),
    sa.Column("commission", sa.String, nullable=False),
    sa.Column("fees", sa.String, nullable=False),
    sa.Column("cash", sa.String, nullable=False),  # the signed cash change this fill caused
    sa.Column("at", sa.String, nullable=False),
)
_positions = sa.Table(
    "paper_positions", _md,
    sa.Column("instrument", sa.String, primary_key=True),
    sa.Column("asset", sa.String, nullable=False),
    sa.Column("underlying", sa.String, nullable=False),
    sa.Column("right", sa.String, nullable=True),
    sa.Column("strike", sa.String, nullable=True),
    sa.Column("expiry", sa.String, nullable=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("cost", sa.String, nullable=False),  # signed: paid (+) or received (-) for the open quantity
    sa.Column("realized_pnl", sa.String, nullable=False),
    sa.Column("updated_at", sa.String, nullable=False),
    # shares one contract delivers (an OCC-adjusted contract after a split: e.g. 150); added in version 2
    sa.Column("deliverable", sa.Integer, nullable=False, server_default=str(STANDARD_DELIVERABLE)),
)
_events = sa.Table(
    "paper_events", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String, nullable=False, unique=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("cash", sa.String, nullable=False),
    sa.Column("stock_instrument", sa.String, nullable=True),
    sa.Column("stock_quantity", sa.Integer, nullable=False),
    sa.Column("stock_price", sa.String, nullable=False),
    sa.Column("at", sa.String, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

_splits = sa.Table(  # holdings a split moved (quantity and contract), so the audit can follow them
    "paper_splits", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("split", sa.String, nullable=False, index=True),  # "<ticker>:<ex-date>"
    sa.Column("instrument", sa.String, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("new_instrument", sa.String, nullable=False),
    sa.Column("new_quantity", sa.Integer, nullable=False),
    sa.Column("deliverable", sa.Integer, nullable=False),
    sa.Column("at", sa.String, nullable=False),
)


# --------------------------------------------------------------------------- in-memory books


@dataclass
class _Pos:
    instrument: str
    asset: AssetType
    underlying: str
    right: str | None = None
    strike: Decimal | None = None
    expiry: date | None = None
    quantity: int = 0
    cost: Decimal = ZERO
    realized: Decimal = ZERO
    dirty: bool = False
    deliverable: int = STANDARD_DELIVERABLE

    @property
    def multiplier(self) -> int:
        return self.leg(Side.buy).multiplier

    def leg(self, side: Side) -> Leg:
        """This position's contract as a one-unit leg (the accounting functions take legs)."""
        return Leg(self.instrument, side, 1, self.asset, self.underlying, self.right, self.strike, self.expiry,
                   self.deliverable)

    def trade(self, side: Side, qty: int, price: Decimal, value: Decimal | None = None) -> Decimal:
        """Apply a trade of ``qty`` units at ``price``; returns the realised P&L of the part that reduced.
        ``value``: the trade's whole dollar amount when it is not price x qty x multiplier on the cent grid
        (shares an adjusted contract delivers cost strike x 100 / deliverable each)."""
        s = 1 if side is Side.buy else -1
        dollars = value if value is not None else price * qty * self.multiplier
        total, realized = qty, ZERO
        if self.quantity and (self.quantity > 0) != (s > 0):
            held = abs(self.quantity)
            n = min(qty, held)
            part = self.cost if n == held else cents(self.cost * n / held)
            here = dollars if n == total else cents(dollars * n / total)
            realized = -s * here - part
            self.cost -= part
            self.quantity += s * n
            qty -= n
            dollars -= here
        if qty > 0:
            self.cost += s * dollars
            self.quantity += s * qty
        if self.quantity == 0:
            self.cost = ZERO  # nothing open, nothing carried
        self.realized += realized
        self.dirty = True
        return realized


@dataclass
class _Books:
    cash: Decimal
    realized: Decimal
    positions: dict[str, _Pos]


def _ceil(x: Decimal, tick: Decimal = CENT) -> Decimal:
    return x.quantize(tick, rounding=ROUND_CEILING)


def _floor(x: Decimal, tick: Decimal = CENT) -> Decimal:
    return x.quantize(tick, rounding=ROUND_FLOOR)


def _money(x: Decimal) -> Decimal:
    """Money values are exact to the cent by construction; this only fixes their exponent for display."""
    return x.quantize(CENT) if x == x.quantize(CENT) else x


def migrate(engine: Engine) -> None:
    """Bring books written by an older version up to ``SCHEMA_VERSION`` (the venue's own schema: it is not
    in the engine's Alembic migrations). Version 2 added ``paper_positions.deliverable`` (100 for every
    position an older version held: it knew only standard contracts)."""
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("paper_positions")}
        if "deliverable" not in columns:
            conn.execute(sa.text("ALTER TABLE paper_positions ADD COLUMN deliverable INTEGER NOT NULL "
                                 f"DEFAULT {STANDARD_DELIVERABLE}"))
        conn.execute(_meta.update().where(_meta.c.key == "schema_version").values(value=SCHEMA_VERSION))


# The venue's per-order statements, built once: building a statement costs more than SQLite takes to run
# it (issue 11).
_ACCOUNT = sa.select(_account).where(_account.c.id == 1)
_ACCOUNT_UPDATE = _account.update().where(_account.c.id == 1).values(
    cash=sa.bindparam("cash"), realized_pnl=sa.bindparam("realized_pnl"))
_POSITIONS = sa.select(_positions)
_ORDER_BY_CID = sa.select(_orders).where(_orders.c.client_order_id == sa.bindparam("cid"))
_WORKING_ORDERS = sa.select(_orders).where(_orders.c.status == W.value)
_DELETE_POSITION = _positions.delete().where(_positions.c.instrument == sa.bindparam("instrument"))
_new_position = sqlite_insert(_positions)
# every column from the row given at execution (the instrument is the key it conflicts on)
_UPSERT_POSITION = _new_position.on_conflict_do_update(
    index_elements=[_positions.c.instrument],
    set_={c.name: _new_position.excluded[c.name] for c in _positions.c if c.name != "instrument"})


def _venue_call(method: Callable[..., Any]) -> Callable[..., Any]:
    """A database the venue cannot reach (locked past the busy timeout, disk error) is an unknown outcome
    to the caller, as a timeout at a real broker: the transaction rolled back, so nothing happened."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sa.exc.OperationalError as exc:
            raise BrokerUnavailable(f"paper venue unavailable: {exc}") from exc

    return wrapper


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return at.isoformat()


class PaperBooks:
    """Loading, saving and auditing the venue's books (mixed into PaperBroker)."""

    _engine: Engine

    @functools.cached_property
    def _reader(self) -> Engine:
        return self._engine.execution_options(**{READ_ONLY: True})

    def _reading(self) -> Connection:
        """A connection for reads: a deferred BEGIN, a consistent snapshot that takes no write lock, so a
        report, a mark or an audit neither waits for the venue's writers nor makes them wait."""
        return self._reader.connect()

    # ------------------------------------------------------------------ loading and saving the books

    @staticmethod
    def _load(conn: Connection) -> _Books:
        acct = conn.execute(_ACCOUNT).one()
        positions = {}
        for r in conn.execute(_POSITIONS).mappings():
            positions[r["instrument"]] = _Pos(
                r["instrument"], AssetType(r["asset"]), r["underlying"], r["right"],
                None if r["strike"] is None else Decimal(r["strike"]),
                None if r["expiry"] is None else date.fromisoformat(r["expiry"]),
                int(r["quantity"]), Decimal(r["cost"]), Decimal(r["realized_pnl"]),
                deliverable=int(r["deliverable"]),
            )
        return _Books(Decimal(acct.cash), Decimal(acct.realized_pnl), positions)

    @staticmethod
    def _save(conn: Connection, books: _Books, now: datetime) -> None:
        conn.execute(_ACCOUNT_UPDATE, {"cash": str(books.cash), "realized_pnl": str(books.realized)})
        for p in books.positions.values():
            if not p.dirty:
                continue
            if p.quantity == 0:
                conn.execute(_DELETE_POSITION, {"instrument": p.instrument})
            else:  # one statement whether the row exists or not (the books are always a SQLite file)
                conn.execute(_UPSERT_POSITION, dict(
                    instrument=p.instrument, asset=p.asset.value, underlying=p.underlying, right=p.right,
                    strike=None if p.strike is None else str(p.strike),
                    expiry=None if p.expiry is None else p.expiry.isoformat(), quantity=p.quantity,
                    cost=str(p.cost), realized_pnl=str(p.realized), updated_at=_iso(now),
                    deliverable=p.deliverable))
            p.dirty = False

    @staticmethod
    def _position_for(books: _Books, leg: Leg) -> _Pos:
        pos = books.positions.get(leg.instrument)
        if pos is None:
            spec = parse_option_symbol(leg.instrument) if leg.asset is AssetType.option else None
            if spec is not None:
                pos = _Pos(leg.instrument, AssetType.option, leg.underlying or spec.underlying, spec.right,
                           spec.strike, spec.expiry, deliverable=leg.deliverable)
            else:
                pos = _Pos(leg.instrument, AssetType.stock, leg.underlying or leg.instrument)
            books.positions[leg.instrument] = pos
        return pos

    @staticmethod
    def _to_order(r: Mapping[str, Any]) -> BrokerOrder:
        filled = int(r["filled_quantity"])
        avg = None
        if filled:
            avg = (Decimal(r["filled_value"]) / filled).quantize(SUB_PENNY, ROUND_HALF_EVEN)
            avg = _money(avg)
        return BrokerOrder(r["client_order_id"], r["broker_order_id"], BrokerOrderStatus(r["status"]),
                           int(r["quantity"]), filled, avg, r["reason"])

    @staticmethod
    def _to_fill(r: Mapping[str, Any]) -> BrokerFill:
        return BrokerFill(r["fill_id"], r["client_order_id"], r["instrument"], Side(r["side"]), int(r["quantity"]),
                          Decimal(r["price"]), Decimal(r["commission"]), Decimal(r["fees"]),
                          datetime.fromisoformat(r["at"]))

    @staticmethod
    def _to_event(r: Mapping[str, Any]) -> BrokerEvent:
        return BrokerEvent(r["event_id"], r["kind"], r["instrument"], int(r["quantity"]), Decimal(r["cash"]),
                           r["stock_instrument"], int(r["stock_quantity"]), Decimal(r["stock_price"]),
                           datetime.fromisoformat(r["at"]), json.loads(r["detail"]))

    @staticmethod
    def _legs(r: Mapping[str, Any]) -> tuple[Leg, ...]:
        return tuple(Leg.from_dict(d) for d in json.loads(r["legs"]))

    def _get(self, conn: Connection, client_order_id: str) -> Mapping[str, Any] | None:
        return conn.execute(_ORDER_BY_CID, {"cid": client_order_id}).mappings().first()

    # ------------------------------------------------------------------ audit

    def check_books(self) -> list[str]:
        """Cross-checks of the books; empty when consistent. Cash must equal the starting cash plus every
        recorded fill's and event's cash; positions must equal the fills and events that made them; every
        order's filled quantity must match its fills."""
        problems = []
        with self._reading() as conn:
            books = self._load(conn)
            start = Decimal(conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "starting_cash")).scalar_one())
            fills = conn.execute(sa.select(_fills)).mappings().all()
            events = conn.execute(sa.select(_events)).mappings().all()
            orders = conn.execute(sa.select(_orders)).mappings().all()
            splits = conn.execute(sa.select(_splits).order_by(_splits.c.id)).mappings().all()
        flows = sum((Decimal(f["cash"]) for f in fills), ZERO) + sum((Decimal(e["cash"]) for e in events), ZERO)
        if start + flows != books.cash:
            problems.append(f"cash {books.cash} != starting cash {start} + recorded flows {flows}")
        qty: dict[str, int] = {}
        for f in fills:
            qty[f["instrument"]] = qty.get(f["instrument"], 0) + (1 if f["side"] == "buy" else -1) * f["quantity"]
        for e in events:
            qty[e["instrument"]] = qty.get(e["instrument"], 0) + e["quantity"]
            if e["stock_instrument"]:
                qty[e["stock_instrument"]] = qty.get(e["stock_instrument"], 0) + e["stock_quantity"]
        for sp in splits:  # a split moves a holding to another quantity (and maybe contract), cash untouched
            qty[sp["instrument"]] = qty.get(sp["instrument"], 0) - sp["quantity"]
            qty[sp["new_instrument"]] = qty.get(sp["new_instrument"], 0) + sp["new_quantity"]
        held = {k: p.quantity for k, p in books.positions.items() if p.quantity}
        if {k: v for k, v in qty.items() if v} != held:
            problems.append(f"positions {held} != fills and events {qty}")
        by_order: dict[tuple[str, int], int] = {}
        for f in fills:
            key = (f["client_order_id"], f["leg"])
            by_order[key] = by_order.get(key, 0) + f["quantity"]
        for o in orders:
            for i, leg in enumerate(self._legs(o), start=1):
                got = by_order.get((o["client_order_id"], i), 0)
                if got != leg.ratio * o["filled_quantity"]:
                    problems.append(f"order {o['client_order_id']} leg {i}: fills {got} != "
                                    f"{leg.ratio} x filled {o['filled_quantity']}")
            if o["filled_quantity"] > o["quantity"]:
                problems.append(f"order {o['client_order_id']} overfilled")
        return problems

