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
- cash of a fill = -(sign x price x quantity x multiplier) - commission - fees (``accounting.leg_cash``);
  premiums and strikes are x 100 for adjusted contracts too, only the shares they deliver differ.

Margin (Reg-T style, used for buying power): a short option must be covered by a long option of the same
underlying and right expiring no earlier (requirement = the spread's width x 100 when the long is further
out of the money, else 0) or, for a short call, by the shares it delivers (100, or an adjusted contract's
deliverable; a long covers a short only when both deliver the same). Uncovered ("naked") short options and
new short stock are not supported: orders that would create them are rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Engine

from engine.data import calendar
from engine.db import make_engine
from engine.execution.brokers.paper_books import (
    SCHEMA_VERSION,
    ZERO,
    PaperBooks,
    W,
    _account,
    _Books,
    _ceil,
    _fills,
    _floor,
    _iso,
    _md,
    _meta,
    _money,
    _orders,
    _venue_call,
    migrate,
)
from engine.execution.brokers.paper_margin import PaperBuyingPower
from engine.execution.brokers.paper_reads import PaperReads
from engine.execution.brokers.paper_settlement import PaperSettlement
from engine.execution.brokers.paper_splits import PaperSplits
from engine.execution.brokers.quotes import InstrumentQuote, QuoteSource, UnknownInstrument, parse_option_symbol
from engine.execution.ports import (
    AssetType,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.portfolio.accounting import deliverable_problem, leg_cash, net_coefficient, structure_multiplier
from engine.risk import is_gate_pass

__all__ = ["PaperBroker", "PaperConfig"]

# built once (issue 11: building a statement costs more than SQLite takes to run it)
_LAST_ORDER_ID = sa.select(sa.func.max(_orders.c.id))
_FILLS_OF_INSTRUMENTS = sa.select(_fills.c.instrument, _fills.c.quantity, _fills.c.at).where(
    _fills.c.instrument.in_(sa.bindparam("names", expanding=True)))
_INSERT_ORDER = _orders.insert()
_INSERT_FILL = _fills.insert()
_UPDATE_ORDER_FILLED = _orders.update().where(_orders.c.client_order_id == sa.bindparam("cid")).values(
    {c: sa.bindparam(c) for c in ("filled_quantity", "filled_value", "executions", "leg_commissions", "status",
                                  "updated_at")})


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


@dataclass(frozen=True)
class _Priced:
    """A structure priced against current quotes."""

    mid: Decimal
    natural: Decimal
    fill: Decimal  # the net price it fills at (exactly the net of leg_prices)
    leg_prices: tuple[Decimal, ...]
    max_units: int  # volume cap for this attempt, in units of the structure


class PaperBroker(PaperBooks, PaperSettlement, PaperSplits, PaperBuyingPower, PaperReads):
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
        migrate(self._engine)
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
        m = structure_multiplier(legs)
        coefs = [net_coefficient(leg, m) for leg in legs]
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
            next_id = (conn.execute(_LAST_ORDER_ID).scalar() or 0) + 1
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
            conn.execute(_INSERT_ORDER, row)
            if reason:
                rejected = self._to_order(row)
            else:
                if self._market_open(now):
                    self._try_fill(conn, books, row, now, quotes)  # the row as just inserted
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
        if (mixed := deliverable_problem(legs)) is not None:
            return f"{mixed}: every option leg of one order needs the same deliverable", quotes
        self._prefetch([leg.instrument for leg in legs], now)
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
        working = self._working(conn)
        if intent == "close":
            pending = self._pending_closes(working)
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
        problem = self._bp_problem(books, legs, quantity, cost, self._reserved(working, books))
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
        for inst, qty, at in conn.execute(_FILLS_OF_INSTRUMENTS, {"names": names}):
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
            cash = leg_cash(leg, qty, price) - commission - fees
            books.realized += pos.trade(leg.side, qty, price)
            books.cash += cash
            fill = BrokerFill(f"{r['broker_order_id']}-{execution}-{i + 1}", r["client_order_id"], leg.instrument,
                              leg.side, qty, price, _money(commission), _money(fees), now)
            conn.execute(_INSERT_FILL, dict(
                fill_id=fill.fill_id, client_order_id=fill.client_order_id, execution=execution, leg=i + 1,
                instrument=fill.instrument, side=fill.side.value, quantity=qty, price=str(price),
                commission=str(fill.commission), fees=str(fill.fees), cash=str(cash), at=_iso(now),
            ))
            fills.append(fill)
        filled = int(r["filled_quantity"]) + units
        status = BrokerOrderStatus.filled if filled >= int(r["quantity"]) else W
        conn.execute(_UPDATE_ORDER_FILLED, dict(
            cid=r["client_order_id"], filled_quantity=filled,
            filled_value=str(Decimal(r["filled_value"]) + priced.fill * units),
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
            self._prefetch([leg.instrument for r in rows for leg in self._legs(r)], now)
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
