"""The built-in paper broker: a simulated venue with its own books.

It behaves like an external broker: it keeps orders, fills, positions, cash and expiry events in its
OWN SQLite file (its own tables, not engine.models, not in the engine's migrations), and the engine
sees it only through the ``Broker`` port. Every public method that changes the books does all of it in
one database transaction, so a crash (even SIGKILL) at any point leaves an order either complete with its
fills, position and cash changes, or absent.

Pricing (all ``Decimal``, exact to the cent):
- a structure's mid = sum(sign x ratio x multiplier x leg mid) / M and its natural price the same with
  asks for bought legs and bids for sold legs (M = 100 when any leg is an option, else 1);
- fill price = mid + slippage_frac_of_half_spread x (natural - mid), rounded up to the cent (up is
  always unfavourable: prices are net debits, credits are negative);
- an order fills only when that price <= its limit; each leg's price is its mid moved the same fraction
  of its own half spread against us, rounded to the cent against us, with the rounding residue taken off
  one leg so the legs' net equals the structure's fill price exactly;
- cash of a fill = -(sign x price x quantity x multiplier) - commission - fees.

Margin (Reg-T style, used for buying power): a short option must be covered by a long option of the same
underlying and right expiring no earlier (requirement = the spread's width x 100 when the long is further
out of the money, else 0) or, for a short call, by 100 long shares. Uncovered ("naked") short options and
new short stock are not supported: orders that would create them are rejected.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Engine

from engine.data import calendar
from engine.db import make_engine
from engine.execution.brokers.quotes import InstrumentQuote, QuoteSource, UnknownInstrument, parse_option_symbol
from engine.execution.ports import (
    OPTION_MULTIPLIER,
    AssetType,
    BrokerAccount,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerPosition,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.risk import is_gate_pass

__all__ = ["PaperBroker", "PaperConfig"]

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
ZERO = Decimal("0")
SCHEMA_VERSION = "1"

W = BrokerOrderStatus.working


class PaperConfig(BaseModel):
    """Everything the paper venue charges and how it fills. Money in dollars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starting_cash: Decimal = Field(Decimal("100000"), ge=0)  # used when the books are first created
    slippage_frac_of_half_spread: Decimal = Field(Decimal("0.25"), ge=0, le=1)
    option_commission_open: Decimal = Field(Decimal("1.00"), ge=0)  # per contract
    option_commission_close: Decimal = Field(Decimal("0"), ge=0)  # per contract
    option_commission_cap_per_leg: Decimal | None = Field(Decimal("10.00"), ge=0)  # per leg of one order
    option_fee_per_contract: Decimal = Field(Decimal("0.10"), ge=0)  # clearing/regulatory, open and close
    stock_commission_per_share: Decimal = Field(Decimal("0"), ge=0)
    stock_fee_per_share: Decimal = Field(Decimal("0"), ge=0)
    # participation: our fills in a contract over a session stay within this share of its volume so far
    max_fill_frac_of_volume: Decimal = Field(Decimal("0.2"), gt=0)
    min_fill_contracts: int = Field(1, ge=1)  # a contract may always fill at least this many a session
    market_hours_only: bool = True  # fill only while the exchange is in its regular session
    itm_threshold: Decimal = Field(Decimal("0.01"), ge=0)  # exercise when in the money by at least this
    time_in_force: tuple[str, ...] = ("day", "gtc", "ioc")


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

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER if self.asset is AssetType.option else 1

    def trade(self, side: Side, qty: int, price: Decimal) -> Decimal:
        """Apply a trade of ``qty`` units at ``price``; returns the realised P&L of the part that reduced."""
        s = 1 if side is Side.buy else -1
        realized = ZERO
        if self.quantity and (self.quantity > 0) != (s > 0):
            held = abs(self.quantity)
            n = min(qty, held)
            part = self.cost if n == held else (self.cost * n / held).quantize(CENT, ROUND_HALF_EVEN)
            realized = -s * price * n * self.multiplier - part
            self.cost -= part
            self.quantity += s * n
            qty -= n
        if qty > 0:
            self.cost += s * price * qty * self.multiplier
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


@dataclass(frozen=True)
class _Priced:
    """A structure priced against current quotes."""

    mid: Decimal
    natural: Decimal
    fill: Decimal  # the net price it fills at (exactly the net of leg_prices)
    leg_prices: tuple[Decimal, ...]
    max_units: int  # volume cap for this attempt, in units of the structure


def _ceil(x: Decimal, tick: Decimal = CENT) -> Decimal:
    return x.quantize(tick, rounding=ROUND_CEILING)


def _floor(x: Decimal, tick: Decimal = CENT) -> Decimal:
    return x.quantize(tick, rounding=ROUND_FLOOR)


def _money(x: Decimal) -> Decimal:
    """Money values are exact to the cent by construction; this only fixes their exponent for display."""
    return x.quantize(CENT) if x == x.quantize(CENT) else x


def _structure_multiplier(legs: Sequence[Leg]) -> int:
    return OPTION_MULTIPLIER if any(leg.asset is AssetType.option for leg in legs) else 1


def _coef(leg: Leg, m: int) -> Decimal:
    """How much one unit of the leg's price moves the structure's net price per unit."""
    return Decimal(leg.sign * leg.ratio * leg.multiplier) / m


def _margin(positions: Iterable[_Pos]) -> tuple[Decimal, list[str]]:
    """(Reg-T style requirement in dollars, instruments of uncovered short options).

    Shorts are paired greedily with the cheapest cover: a long option (same underlying and right, expiring
    no earlier) that makes the requirement zero, then 100 long shares (short calls), then the long
    option with the smallest width. An uncovered short is charged its strike x 100 (only reachable
    through exercise/assignment: orders that would create one are rejected)."""
    by_und: dict[str, list[_Pos]] = {}
    shares: dict[str, int] = {}
    for p in positions:
        if p.quantity == 0:
            continue
        if p.asset is AssetType.stock:
            shares[p.instrument] = shares.get(p.instrument, 0) + p.quantity
        else:
            by_und.setdefault(p.underlying, []).append(p)
    total, naked = ZERO, []
    for und, group in by_und.items():
        stock_free = max(0, shares.get(und, 0))
        for right in ("C", "P"):
            call = right == "C"
            longs = [[p.strike, p.expiry, p.quantity] for p in group if p.right == right and p.quantity > 0]
            shorts = sorted((p for p in group if p.right == right and p.quantity < 0),
                            key=lambda p: p.strike or ZERO, reverse=call)
            for s in shorts:
                ks = s.strike or ZERO
                need = -s.quantity
                while need > 0:
                    options = []
                    for cand in longs:
                        if cand[2] <= 0 or (cand[1] is not None and s.expiry is not None and cand[1] < s.expiry):
                            continue
                        kl = cand[0] or ZERO
                        width = max(ZERO, kl - ks) if call else max(ZERO, ks - kl)
                        options.append(((width, -kl if call else kl), cand, width))
                    best = min(options, key=lambda o: o[0]) if options else None
                    if best is not None and best[2] == 0:
                        cand, width = best[1], ZERO
                    elif call and stock_free >= OPTION_MULTIPLIER:
                        n = min(need, stock_free // OPTION_MULTIPLIER)
                        stock_free -= n * OPTION_MULTIPLIER
                        need -= n
                        continue
                    elif best is not None:
                        cand, width = best[1], best[2]
                    else:
                        total += ks * OPTION_MULTIPLIER * need
                        naked.append(s.instrument)
                        break
                    n = min(need, cand[2])
                    cand[2] -= n
                    need -= n
                    total += width * OPTION_MULTIPLIER * n
    return total, naked


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


class PaperBroker:
    """A paper venue with its own SQLite books (see the module docstring)."""

    name = "paper"

    def __init__(self, db_path: Path | str, quotes: QuoteSource, clock: Callable[[], datetime],
                 config: PaperConfig | None = None,
                 config_source: Callable[[], PaperConfig] | None = None) -> None:
        self.db_path = Path(db_path)
        self.quotes = quotes
        self.clock = clock
        self._config = config or PaperConfig()
        # Read at every use, so fee settings the operator changes in the console apply to the next fill.
        self.config_source = config_source
        self._engine: Engine = make_engine(f"sqlite:///{self.db_path}")
        _md.create_all(self._engine)
        with self._engine.begin() as conn:
            if conn.execute(sa.select(_account.c.id)).first() is None:
                conn.execute(_account.insert().values(id=1, cash=str(self.config.starting_cash), realized_pnl="0"))
                conn.execute(_meta.insert(), [
                    {"key": "schema_version", "value": SCHEMA_VERSION},
                    {"key": "starting_cash", "value": str(self.config.starting_cash)},
                ])

    @property
    def config(self) -> PaperConfig:
        return self.config_source() if self.config_source is not None else self._config

    def close(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------------ loading and saving the books

    @staticmethod
    def _load(conn: Connection) -> _Books:
        acct = conn.execute(sa.select(_account).where(_account.c.id == 1)).one()
        positions = {}
        for r in conn.execute(sa.select(_positions)).mappings():
            positions[r["instrument"]] = _Pos(
                r["instrument"], AssetType(r["asset"]), r["underlying"], r["right"],
                None if r["strike"] is None else Decimal(r["strike"]),
                None if r["expiry"] is None else date.fromisoformat(r["expiry"]),
                int(r["quantity"]), Decimal(r["cost"]), Decimal(r["realized_pnl"]),
            )
        return _Books(Decimal(acct.cash), Decimal(acct.realized_pnl), positions)

    @staticmethod
    def _save(conn: Connection, books: _Books, now: datetime) -> None:
        conn.execute(_account.update().where(_account.c.id == 1).values(
            cash=str(books.cash), realized_pnl=str(books.realized)))
        for p in books.positions.values():
            if not p.dirty:
                continue
            conn.execute(_positions.delete().where(_positions.c.instrument == p.instrument))
            if p.quantity != 0:
                conn.execute(_positions.insert().values(
                    instrument=p.instrument, asset=p.asset.value, underlying=p.underlying, right=p.right,
                    strike=None if p.strike is None else str(p.strike),
                    expiry=None if p.expiry is None else p.expiry.isoformat(),
                    quantity=p.quantity, cost=str(p.cost), realized_pnl=str(p.realized), updated_at=_iso(now),
                ))
            p.dirty = False

    @staticmethod
    def _position_for(books: _Books, leg: Leg) -> _Pos:
        pos = books.positions.get(leg.instrument)
        if pos is None:
            spec = parse_option_symbol(leg.instrument) if leg.asset is AssetType.option else None
            if spec is not None:
                pos = _Pos(leg.instrument, AssetType.option, leg.underlying or spec.underlying, spec.right,
                           spec.strike, spec.expiry)
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
        return conn.execute(sa.select(_orders).where(_orders.c.client_order_id == client_order_id)).mappings().first()

    # ------------------------------------------------------------------ market helpers

    def _market_open(self, now: datetime) -> bool:
        return calendar.is_open(now) if self.config.market_hours_only else True

    @staticmethod
    def _day_order_expiry(now: datetime) -> datetime:
        """The close of the session a day order placed at ``now`` belongs to."""
        day = calendar.to_session_day(now).astype(object)
        times = calendar.session_times(day)
        if times is not None and now < times[1]:
            return times[1]
        nxt = calendar.session_times(calendar.next_session(day))
        assert nxt is not None
        return nxt[1]

    @staticmethod
    def _expired(expiry: date, now: datetime) -> bool:
        """An option stops trading at its expiry session's close."""
        today = calendar.to_session_day(now).astype(object)
        if expiry < today:
            return True
        if expiry > today:
            return False
        times = calendar.session_times(expiry)
        return times is None or now >= times[1]

    def _quote(self, instrument: str, now: datetime, books: _Books) -> InstrumentQuote:
        held = instrument in books.positions and books.positions[instrument].quantity != 0
        try:
            q = self.quotes.quote(instrument, now, held=held)
        except UnknownInstrument:
            raise
        except Exception as exc:  # the venue's own data feed failed: the outcome is unknown, nothing is written
            raise BrokerUnavailable(f"paper venue cannot quote {instrument!r}: {exc}") from exc
        if q.bid < 0 or q.ask < q.bid:
            raise UnknownInstrument(f"{instrument!r} has no valid quote (bid {q.bid}, ask {q.ask})")
        return q

    def _price(self, legs: Sequence[Leg], quotes: Sequence[InstrumentQuote],
               used: Mapping[str, int] | None = None) -> _Priced:
        cfg = self.config
        f = cfg.slippage_frac_of_half_spread
        m = _structure_multiplier(legs)
        coefs = [_coef(leg, m) for leg in legs]
        mid = sum((c * q.mid for c, q in zip(coefs, quotes, strict=True)), ZERO)
        natural = sum((c * (q.ask if leg.side is Side.buy else q.bid)
                       for c, leg, q in zip(coefs, legs, quotes, strict=True)), ZERO)
        # Every price is on the cent grid (sub-dollar stocks too), so every cash amount is whole cents.
        target = _ceil(mid + f * (natural - mid))
        # Each leg: its mid moved the same fraction of its half spread against us, rounded against us.
        prices = []
        for leg, q in zip(legs, quotes, strict=True):
            raw = q.mid + leg.sign * f * q.half_spread
            prices.append(max(ZERO, _ceil(raw) if leg.side is Side.buy else _floor(raw)))
        net = sum((c * p for c, p in zip(coefs, prices, strict=True)), ZERO)
        residual = target - net  # usually <= 0: rounding each leg against us costs at least the structure's
        if residual:
            # take the residue off one leg whose coefficient is +-1 (so leg prices stay on the cent grid),
            # preferring the widest quote; a leg price never goes below zero.
            cands = [i for i, c in enumerate(coefs) if abs(c) == 1 and prices[i] + residual / coefs[i] >= 0]
            if cands:
                j = max(cands, key=lambda i: (quotes[i].ask - quotes[i].bid, -i))
                prices[j] += residual / coefs[j]
                net = target
        # otherwise (no unit-ratio leg) the legs' own net is the fill price: a cent or so worse, still exact
        max_units = None
        for leg, q in zip(legs, quotes, strict=True):
            if leg.asset is not AssetType.option:
                continue
            # cumulative over the session: what we already took of this contract today counts (issue 11 #7)
            allowed = max(cfg.min_fill_contracts, int(cfg.max_fill_frac_of_volume * q.volume))
            contracts = max(0, allowed - (used or {}).get(leg.instrument, 0))
            units = contracts // leg.ratio
            max_units = units if max_units is None else min(max_units, units)
        return _Priced(mid, natural, net, tuple(prices), max_units if max_units is not None else 1 << 62)

    def _leg_charges(self, leg: Leg, qty: int, pos_qty: int, charged: Decimal) -> tuple[Decimal, Decimal]:
        """(commission, fees) for ``qty`` units of a leg given the position before it and the commission
        already charged on this leg of the order (the cap is per leg of one order)."""
        cfg = self.config
        if leg.asset is AssetType.stock:
            return cfg.stock_commission_per_share * qty, cfg.stock_fee_per_share * qty
        closing = min(qty, abs(pos_qty)) if pos_qty and (pos_qty > 0) != (leg.side is Side.buy) else 0
        commission = cfg.option_commission_open * (qty - closing) + cfg.option_commission_close * closing
        if cfg.option_commission_cap_per_leg is not None:
            commission = max(ZERO, min(commission, cfg.option_commission_cap_per_leg - charged))
        return commission, cfg.option_fee_per_contract * qty

    # ------------------------------------------------------------------ buying power

    def _after(self, books: _Books, legs: Sequence[Leg], units: int) -> list[_Pos]:
        """Positions after ``units`` of the structure (prices do not matter for margin)."""
        changed = {}
        for leg in legs:
            base = books.positions.get(leg.instrument) or self._position_for(
                _Books(ZERO, ZERO, {}), leg)
            changed[leg.instrument] = replace(base, quantity=base.quantity + leg.sign * leg.ratio * units)
        return [changed.get(k, p) for k, p in books.positions.items()] + [
            p for k, p in changed.items() if k not in books.positions]

    def _order_cost(self, books: _Books, legs: Sequence[Leg], units: int, net_price: Decimal,
                    charged: Sequence[Decimal] | None = None) -> Decimal:
        """Cash the order takes (+) or gives (-) for ``units`` at ``net_price``, commissions and fees included."""
        m = _structure_multiplier(legs)
        cost = net_price * m * units
        for i, leg in enumerate(legs):
            pos = books.positions.get(leg.instrument)
            commission, fees = self._leg_charges(leg, leg.ratio * units, pos.quantity if pos else 0,
                                                 charged[i] if charged else ZERO)
            cost += commission + fees
        return cost

    def _bp_problem(self, books: _Books, legs: Sequence[Leg], units: int, cost: Decimal,
                    reserved: Decimal = ZERO) -> str | None:
        """Why the account cannot take this trade (None when it can)."""
        before_req, _ = _margin(books.positions.values())
        after = self._after(books, legs, units)
        after_req, naked = _margin(after)
        if naked:
            return f"naked short options are not supported: {', '.join(naked)} would be uncovered"
        for leg in legs:
            if leg.asset is AssetType.stock and leg.side is Side.sell:
                was = books.positions[leg.instrument].quantity if leg.instrument in books.positions else 0
                if was - leg.ratio * units < 0:
                    return f"short selling stock is not supported: {leg.instrument} holds {was}"
        bp_before = books.cash - before_req
        bp_after = books.cash - cost - after_req
        if bp_after - reserved < 0 and bp_after < bp_before:
            need = bp_before - bp_after
            return (f"insufficient buying power: the order needs ${need:,.2f} (debit or margin, plus "
                    f"commissions and fees), available ${bp_before - reserved:,.2f}")
        return None

    def _reserved(self, conn: Connection, books: _Books) -> Decimal:
        """Buying power held for working orders (at their limits, for what is left of them)."""
        total = ZERO
        bp_now = books.cash - _margin(books.positions.values())[0]
        for r in conn.execute(sa.select(_orders).where(_orders.c.status == W.value)).mappings():
            legs = self._legs(r)
            left = int(r["quantity"]) - int(r["filled_quantity"])
            if left <= 0:
                continue
            charged = [Decimal(x) for x in json.loads(r["leg_commissions"])]
            cost = self._order_cost(books, legs, left, Decimal(r["limit_price"]), charged)
            req, naked = _margin(self._after(books, legs, left))
            if not naked:
                total += max(ZERO, bp_now - (books.cash - cost - req))
        return total

    def _pending_closes(self, conn: Connection) -> dict[str, int]:
        """Units of each instrument that working close orders are already set to take off."""
        out: dict[str, int] = {}
        for r in conn.execute(sa.select(_orders).where(_orders.c.status == W.value,
                                                       _orders.c.intent == "close")).mappings():
            left = int(r["quantity"]) - int(r["filled_quantity"])
            for leg in self._legs(r):
                out[leg.instrument] = out.get(leg.instrument, 0) + leg.ratio * left
        return out

    # ------------------------------------------------------------------ submit

    @_venue_call
    def submit(self, gate_pass: Any) -> BrokerOrder:
        if not is_gate_pass(gate_pass):
            raise PermissionError("the paper broker accepts only a GatePass issued by engine.risk.evaluate")
        now = self.clock()
        rejected: BrokerOrder | None = None
        with self._engine.begin() as conn:
            existing = self._get(conn, gate_pass.client_order_id)
            if existing is not None:
                return self._to_order(existing)  # idempotent: the same order, nothing new
            books = self._load(conn)
            legs = tuple(gate_pass.legs)
            intent = getattr(gate_pass.intent, "value", str(gate_pass.intent))
            reason, quotes = self._validate(conn, books, legs, intent, gate_pass, now)
            next_id = (conn.execute(sa.select(sa.func.max(_orders.c.id))).scalar() or 0) + 1
            tif = str(gate_pass.time_in_force)
            row = {
                "client_order_id": gate_pass.client_order_id,
                "broker_order_id": f"PB{next_id:08d}",
                "underlying": gate_pass.underlying,
                "intent": intent,
                "legs": json.dumps([leg.to_dict() for leg in legs]),
                "quantity": int(gate_pass.quantity),
                "limit_price": str(gate_pass.limit_price),
                "time_in_force": tif,
                "status": BrokerOrderStatus.rejected.value if reason else W.value,
                "filled_quantity": 0,
                "filled_value": "0",
                "executions": 0,
                "leg_commissions": json.dumps(["0"] * len(legs)),
                "reason": reason or "",
                "created_at": _iso(now),
                "updated_at": _iso(now),
                "expires_at": _iso(self._day_order_expiry(now)) if tif == "day" and not reason else None,
            }
            conn.execute(_orders.insert().values(**row))
            if reason:
                rejected = self._to_order(row)
            else:
                stored = self._get(conn, gate_pass.client_order_id)
                assert stored is not None
                if self._market_open(now):
                    self._try_fill(conn, books, stored, now, quotes)
                if tif == "ioc":
                    self._finish_ioc(conn, gate_pass.client_order_id, now)
                self._save(conn, books, now)
                order = self._get(conn, gate_pass.client_order_id)
                assert order is not None
                result = self._to_order(order)
        if rejected is not None:  # recorded (committed) above, so order() reports it
            raise BrokerRejected(rejected.reason)
        return result

    def _validate(self, conn: Connection, books: _Books, legs: tuple[Leg, ...], intent: str, gp: Any,
                  now: datetime) -> tuple[str | None, list[InstrumentQuote]]:
        """The reason a broker would refuse this order (None when it accepts it), and the legs' quotes."""
        quotes: list[InstrumentQuote] = []
        try:
            quantity = int(gp.quantity)
            limit = Decimal(gp.limit_price)
        except (TypeError, ValueError, ArithmeticError):
            return "quantity and limit price must be numbers", quotes
        if quantity <= 0:
            return f"quantity must be positive, got {quantity}", quotes
        if not limit.is_finite():
            return f"limit price must be finite, got {limit}", quotes
        if not legs:
            return "an order needs at least one leg", quotes
        if str(gp.time_in_force) not in self.config.time_in_force:
            allowed = ", ".join(self.config.time_in_force)
            return f"time in force {gp.time_in_force!r} is not supported ({allowed})", quotes
        if len({leg.instrument for leg in legs}) != len(legs):
            return "the same instrument appears in two legs", quotes
        if intent not in ("open", "close"):
            return f"unknown intent {intent!r}", quotes
        for leg in legs:
            if leg.ratio < 1:
                return f"leg ratio must be at least 1: {leg.instrument} has {leg.ratio}", quotes
            if leg.asset is AssetType.stock and parse_option_symbol(leg.instrument) is not None:
                return f"{leg.instrument.strip()} is an option contract but its leg says stock", quotes
            if leg.asset is AssetType.option:
                spec = parse_option_symbol(leg.instrument)
                if spec is None:
                    return f"unknown contract {leg.instrument!r}: not an OCC option symbol", quotes
                if self._expired(spec.expiry, now):
                    return f"contract {leg.instrument.strip()} expired on {spec.expiry}", quotes
            try:
                quotes.append(self._quote(leg.instrument, now, books))
            except UnknownInstrument as exc:
                kind = "contract" if leg.asset is AssetType.option else "instrument"
                return f"unknown {kind}: {exc}", quotes
        if intent == "close":
            pending = self._pending_closes(conn)
            for leg in legs:
                pos = books.positions.get(leg.instrument)
                held = pos.quantity if pos else 0
                reducing = held < 0 if leg.side is Side.buy else held > 0
                free = abs(held) - pending.get(leg.instrument, 0)
                if not reducing or leg.ratio * quantity > free:
                    verb = "buy to close" if leg.side is Side.buy else "sell to close"
                    return (f"cannot {verb} {leg.ratio * quantity} of {leg.instrument.strip()}: position is "
                            f"{held}, {pending.get(leg.instrument, 0)} already in working close orders"), quotes
        cost = self._order_cost(books, legs, quantity, limit)
        problem = self._bp_problem(books, legs, quantity, cost, self._reserved(conn, books))
        return problem, quotes

    # ------------------------------------------------------------------ filling

    def _try_fill(self, conn: Connection, books: _Books, r: Mapping[str, Any], now: datetime,
                  quotes: Sequence[InstrumentQuote] | None = None) -> list[BrokerFill]:
        """One attempt to fill a working order at current quotes. Returns the fills made (maybe none)."""
        legs = self._legs(r)
        left = int(r["quantity"]) - int(r["filled_quantity"])
        if left <= 0:
            return []
        if quotes is None:
            try:
                quotes = [self._quote(leg.instrument, now, books) for leg in legs]
            except UnknownInstrument:
                return []  # no quote now (e.g. the contract left the listing): try again later
        priced = self._price(legs, quotes, self._filled_today(conn, legs, now))
        if priced.fill > Decimal(r["limit_price"]):
            return []  # not marketable
        if any(p <= 0 for p in priced.leg_prices):
            return []  # no real market in a leg (no offer to buy from, or nothing to sell into)
        units = min(left, priced.max_units)
        if units <= 0:
            return []  # this session's share of the volume is used up: wait for more volume
        if r["intent"] == "close":  # never close more than is still held (expiry may have taken some)
            for leg in legs:
                pos = books.positions.get(leg.instrument)
                held = pos.quantity if pos else 0
                reducing = held < 0 if leg.side is Side.buy else held > 0
                units = min(units, abs(held) // leg.ratio if reducing else 0)
            if units <= 0:
                self._set_status(conn, r["client_order_id"], BrokerOrderStatus.cancelled, now,
                                 "position no longer held")
                return []
        charged = [Decimal(x) for x in json.loads(r["leg_commissions"])]
        cost = self._order_cost(books, legs, units, priced.fill, charged)
        if self._bp_problem(books, legs, units, cost) is not None:
            return []  # stays working: the account cannot take it right now
        return self._execute(conn, books, r, legs, units, priced, charged, now)

    @staticmethod
    def _filled_today(conn: Connection, legs: Sequence[Leg], now: datetime) -> dict[str, int]:
        """Contracts of each option leg the venue already filled (any order) in ``now``'s session."""
        names = [leg.instrument for leg in legs if leg.asset is AssetType.option]
        if not names:
            return {}
        today = calendar.to_session_day(now).astype(object)
        out: dict[str, int] = {}
        for inst, qty, at in conn.execute(sa.select(_fills.c.instrument, _fills.c.quantity, _fills.c.at)
                                          .where(_fills.c.instrument.in_(names))):
            if calendar.to_session_day(datetime.fromisoformat(at)).astype(object) == today:
                out[inst] = out.get(inst, 0) + int(qty)
        return out

    def _execute(self, conn: Connection, books: _Books, r: Mapping[str, Any], legs: Sequence[Leg], units: int,
                 priced: _Priced, charged: list[Decimal], now: datetime) -> list[BrokerFill]:
        execution = int(r["executions"]) + 1
        fills = []
        for i, (leg, price) in enumerate(zip(legs, priced.leg_prices, strict=True)):
            qty = leg.ratio * units
            pos = self._position_for(books, leg)
            commission, fees = self._leg_charges(leg, qty, pos.quantity, charged[i])
            charged[i] += commission
            cash = -(leg.sign * price * qty * leg.multiplier) - commission - fees
            books.realized += pos.trade(leg.side, qty, price)
            books.cash += cash
            fill = BrokerFill(f"{r['broker_order_id']}-{execution}-{i + 1}", r["client_order_id"], leg.instrument,
                              leg.side, qty, price, _money(commission), _money(fees), now)
            conn.execute(_fills.insert().values(
                fill_id=fill.fill_id, client_order_id=fill.client_order_id, execution=execution, leg=i + 1,
                instrument=fill.instrument, side=fill.side.value, quantity=qty, price=str(price),
                commission=str(fill.commission), fees=str(fill.fees), cash=str(cash), at=_iso(now),
            ))
            fills.append(fill)
        filled = int(r["filled_quantity"]) + units
        status = BrokerOrderStatus.filled if filled >= int(r["quantity"]) else W
        conn.execute(_orders.update().where(_orders.c.client_order_id == r["client_order_id"]).values(
            filled_quantity=filled, filled_value=str(Decimal(r["filled_value"]) + priced.fill * units),
            executions=execution, leg_commissions=json.dumps([str(c) for c in charged]),
            status=status.value, updated_at=_iso(now),
        ))
        return fills

    def _set_status(self, conn: Connection, client_order_id: str, status: BrokerOrderStatus, now: datetime,
                    reason: str) -> None:
        conn.execute(_orders.update().where(_orders.c.client_order_id == client_order_id).values(
            status=status.value, reason=reason, updated_at=_iso(now)))

    def _finish_ioc(self, conn: Connection, client_order_id: str, now: datetime) -> None:
        r = self._get(conn, client_order_id)
        if r is not None and r["status"] == W.value:
            self._set_status(conn, client_order_id, BrokerOrderStatus.cancelled, now,
                             "immediate-or-cancel: the rest was not marketable")

    @_venue_call
    def process(self, now: datetime | None = None) -> list[BrokerFill]:
        """Re-check every working order against current quotes and fill what is marketable (one attempt
        each). Expires day orders past their session's close first. Call it every cycle."""
        now = now or self.clock()
        with self._engine.begin() as conn:
            self._expire_day_orders(conn, now)
            if not self._market_open(now):
                return []
            books = self._load(conn)
            fills: list[BrokerFill] = []
            rows = conn.execute(sa.select(_orders).where(_orders.c.status == W.value)
                                .order_by(_orders.c.id)).mappings().all()
            for r in rows:
                legs = self._legs(r)
                dead = [leg for leg in legs if leg.asset is AssetType.option and (spec := parse_option_symbol(
                    leg.instrument)) is not None and self._expired(spec.expiry, now)]
                if dead:
                    self._set_status(conn, r["client_order_id"], BrokerOrderStatus.expired, now,
                                     f"contract {dead[0].instrument.strip()} expired")
                    continue
                fills += self._try_fill(conn, books, r, now)
            self._save(conn, books, now)
        return fills

    # ------------------------------------------------------------------ cancel / expire

    @_venue_call
    def cancel(self, client_order_id: str) -> BrokerOrder:
        now = self.clock()
        with self._engine.begin() as conn:
            r = self._get(conn, client_order_id)
            if r is None:
                missing = True
            else:
                missing = False
                if r["status"] == W.value:
                    self._set_status(conn, client_order_id, BrokerOrderStatus.cancelled, now, "cancelled on request")
                    r = self._get(conn, client_order_id)
                    assert r is not None
                order = self._to_order(r)
        if missing:
            raise BrokerRejected(f"unknown order {client_order_id!r}")
        return order

    def _expire_day_orders(self, conn: Connection, now: datetime) -> list[str]:
        out = []
        for r in conn.execute(sa.select(_orders).where(_orders.c.status == W.value,
                                                       _orders.c.expires_at.is_not(None))).mappings():
            if datetime.fromisoformat(r["expires_at"]) <= now:
                self._set_status(conn, r["client_order_id"], BrokerOrderStatus.expired, now,
                                 "day order expired at the session close")
                out.append(r["client_order_id"])
        return out

    @_venue_call
    def expire_day_orders(self, now: datetime | None = None) -> list[BrokerOrder]:
        """Expire working day orders whose session has closed by ``now``; returns them."""
        now = now or self.clock()
        with self._engine.begin() as conn:
            ids = self._expire_day_orders(conn, now)
            return [self._to_order(r) for r in (self._get(conn, i) for i in ids) if r is not None]

    # ------------------------------------------------------------------ expiry settlement

    @_venue_call
    def settle_expiries(self, day: date) -> list[BrokerEvent]:
        """Settle every option position expiring on or before ``day`` (after ``day``'s session close):
        ITM by at least ``itm_threshold`` against the settlement price -> long exercised / short assigned
        (100 shares per contract at the strike), otherwise expired worthless. Idempotent."""
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
        intrinsic = settle - pos.strike if pos.right == "C" else pos.strike - settle
        itm = intrinsic >= self.config.itm_threshold
        detail: dict[str, object] = {"settlement_price": str(settle), "strike": str(pos.strike), "right": pos.right,
                                     "expiry": pos.expiry.isoformat(), "position": n}
        books.realized += pos.trade(Side.sell if n > 0 else Side.buy, abs(n), ZERO)  # the option leaves at 0
        cash, stock_qty = ZERO, 0
        if itm:
            kind = "exercised" if n > 0 else "assigned"
            # long call / short put: receive shares and pay the strike; long put / short call: the reverse
            stock_qty = (1 if pos.right == "C" else -1) * n * OPTION_MULTIPLIER
            cash = -stock_qty * pos.strike
            stock_leg = Leg(pos.underlying, Side.buy if stock_qty > 0 else Side.sell, 1, AssetType.stock,
                            pos.underlying)
            stock = self._position_for(books, stock_leg)
            books.realized += stock.trade(stock_leg.side, abs(stock_qty), pos.strike)
            books.cash += cash
        else:
            kind = "expired"
        event = BrokerEvent(f"{kind}-{pos.expiry:%Y%m%d}-{pos.instrument.replace(' ', '')}", kind, pos.instrument,
                            -n, _money(cash), pos.underlying if itm else None, stock_qty,
                            pos.strike if itm else ZERO, now, detail)
        conn.execute(_events.insert().values(
            event_id=event.event_id, kind=kind, instrument=pos.instrument, quantity=-n, cash=str(cash),
            stock_instrument=event.stock_instrument, stock_quantity=stock_qty, stock_price=str(event.stock_price),
            at=_iso(now), detail=json.dumps(detail),
        ))
        return event

    # ------------------------------------------------------------------ reads

    @_venue_call
    def order(self, client_order_id: str) -> BrokerOrder | None:
        with self._engine.connect() as conn:
            r = self._get(conn, client_order_id)
            return None if r is None else self._to_order(r)

    @_venue_call
    def orders(self, status: BrokerOrderStatus | None = None) -> list[BrokerOrder]:
        q = sa.select(_orders).order_by(_orders.c.id)
        if status is not None:
            q = q.where(_orders.c.status == status.value)
        with self._engine.connect() as conn:
            return [self._to_order(r) for r in conn.execute(q).mappings()]

    @_venue_call
    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]:
        q = sa.select(_fills).order_by(_fills.c.id)
        if client_order_id is not None:
            q = q.where(_fills.c.client_order_id == client_order_id)
        with self._engine.connect() as conn:
            return [self._to_fill(r) for r in conn.execute(q).mappings()]

    @_venue_call
    def events(self) -> list[BrokerEvent]:
        with self._engine.connect() as conn:
            return [self._to_event(r) for r in conn.execute(sa.select(_events).order_by(_events.c.id)).mappings()]

    @_venue_call
    def positions(self) -> list[BrokerPosition]:
        with self._engine.connect() as conn:
            books = self._load(conn)
        out = []
        for p in sorted(books.positions.values(), key=lambda p: p.instrument):
            if p.quantity:
                avg = (abs(p.cost) / (abs(p.quantity) * p.multiplier)).quantize(SUB_PENNY, ROUND_HALF_EVEN)
                out.append(BrokerPosition(p.instrument, p.quantity, _money(avg), p.asset, p.underlying))
        return out

    @_venue_call
    def account(self) -> BrokerAccount:
        now = self.clock()
        with self._engine.connect() as conn:
            books = self._load(conn)
        req, _ = _margin(books.positions.values())
        marks = sum((self._mark(p, books, now) * p.quantity * p.multiplier
                     for p in books.positions.values() if p.quantity), ZERO)
        return BrokerAccount(_money(books.cash), _money(books.cash - req), _money(books.cash + marks))

    def realized_pnl(self) -> Decimal:
        """Realised P&L of all reductions so far (before commissions and fees)."""
        with self._engine.connect() as conn:
            return _money(self._load(conn).realized)

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
                return max(ZERO, spot - p.strike if p.right == "C" else p.strike - spot)
            except UnknownInstrument:
                pass
        return abs(p.cost) / (abs(p.quantity) * p.multiplier)

    # ------------------------------------------------------------------ audit

    def check_books(self) -> list[str]:
        """Cross-checks of the books; empty when consistent. Cash must equal the starting cash plus every
        recorded fill's and event's cash; positions must equal the fills and events that made them; every
        order's filled quantity must match its fills."""
        problems = []
        with self._engine.connect() as conn:
            books = self._load(conn)
            start = Decimal(conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "starting_cash")).scalar_one())
            fills = conn.execute(sa.select(_fills)).mappings().all()
            events = conn.execute(sa.select(_events)).mappings().all()
            orders = conn.execute(sa.select(_orders)).mappings().all()
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
