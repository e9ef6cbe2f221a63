"""Portfolio sync with a real broker account, broker-neutral (tastytrade now, IBKR through the same port).

What one sync does (nightly, and ``python -m engine sync --broker NAME``):
1. reads the broker's positions and balances;
2. pulls transactions incrementally (from the day of the last synced one; rows already stored are skipped
   by their broker id, so a sync can be rerun at any time) into the shared ``Transaction`` table;
3. compares broker positions with the engine's, instrument by instrument, and stores the broker's
   snapshot and the differences in ``BrokerSyncState``.

External positions (held at the broker, not opened by the engine) are shown, count in the risk gate's
heat, symbol risk and position count (``external_risk``), and are never managed or closed by the engine
until the operator adopts one; adoption goes through the risk gate like an entry.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.db import session_scope
from engine.execution.ports import OPTION_MULTIPLIER, STANDARD_DELIVERABLE, AssetType, BrokerPosition, Leg, Side
from engine.models import BrokerSyncState, Position, Transaction
from engine.portfolio.accounting import cents, share_strike

CENT = Decimal("0.01")


@dataclass(frozen=True)
class BrokerTransaction:
    """One broker transaction as the shared table stores it. ``quantity`` is signed (+ bought, - sold);
    ``amount`` the signed cash effect net of fees; ``fees`` the positive cost of commissions and fees."""

    broker: str
    account: str
    broker_txn_id: str
    type: str
    symbol: str | None
    underlying: str | None
    quantity: Decimal
    price: Decimal
    amount: Decimal
    fees: Decimal
    currency: str
    executed_at: datetime
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerBalances:
    net_liquidating_value: Decimal
    cash_balance: Decimal
    buying_power: Decimal  # for options (what the gate uses)
    equity_buying_power: Decimal = Decimal("0")
    maintenance_requirement: Decimal = Decimal("0")
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SyncableBroker(Protocol):
    """What a broker adapter offers for the sync, beside the ``Broker`` port's ``positions()``."""

    name: str
    account_number: str
    environment: str  # sandbox | production | paper

    def positions(self) -> list[BrokerPosition]: ...

    def balances(self) -> BrokerBalances: ...

    def transactions(self, since: date | None = None) -> list[BrokerTransaction]: ...


@dataclass(frozen=True)
class SyncReport:
    broker: str
    account: str
    environment: str
    positions: list[BrokerPosition]
    balances: BrokerBalances
    transactions_new: int
    differences: list[dict[str, Any]]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The CLI's last line: exactly the fields issue 14 names, no more (scripts read it; the environment
        and buying power are in the human-readable lines above it)."""
        return {
            "broker": self.broker,
            "account": self.account,
            "positions": [position_json(p) for p in self.positions],
            "balances": {"net_liquidating_value": float(self.balances.net_liquidating_value),
                         "cash_balance": float(self.balances.cash_balance)},
            "transactions_new": self.transactions_new,
            "differences": self.differences,
        }


def position_json(p: BrokerPosition) -> dict[str, Any]:
    return {"symbol": p.instrument, "quantity": p.quantity, "average_open_price": float(p.avg_price),
            "instrument_type": p.asset.value}


def _position_row(p: BrokerPosition) -> dict[str, Any]:
    row = {"symbol": p.instrument, "quantity": p.quantity, "average_open_price": str(p.avg_price),
           "instrument_type": p.asset.value, "underlying": p.underlying}
    if p.deliverable != STANDARD_DELIVERABLE:
        row["deliverable"] = p.deliverable  # only when adjusted: older rows and standard ones read as 100
    return row


def _from_row(d: dict[str, Any]) -> BrokerPosition:
    return BrokerPosition(str(d["symbol"]), int(d["quantity"]), Decimal(str(d["average_open_price"])),
                          AssetType(str(d["instrument_type"])), str(d.get("underlying") or ""),
                          int(d.get("deliverable") or STANDARD_DELIVERABLE))


# --- comparing -------------------------------------------------------------------------------------------


def engine_instrument_positions(session: Session) -> dict[str, int]:
    """Signed quantity per instrument implied by the engine's open positions (adopted ones included)."""
    held: dict[str, int] = defaultdict(int)
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        for d in pos.legs:
            leg = Leg.from_dict(d)
            held[leg.instrument] += leg.sign * leg.ratio * pos.quantity
    return {k: v for k, v in held.items() if v}


def differences(broker_positions: list[BrokerPosition], engine_positions: dict[str, int]) -> list[dict[str, Any]]:
    """Every instrument whose quantity differs. ``external``: the broker holds more (same direction) than
    the engine opened; ``missing_at_broker``: the engine believes in a position the broker does not have;
    ``quantity``: anything else (opposite signs)."""
    theirs = {p.instrument: p for p in broker_positions if p.quantity}
    out = []
    for instrument in sorted(set(theirs) | set(engine_positions)):
        b = theirs[instrument].quantity if instrument in theirs else 0
        e = engine_positions.get(instrument, 0)
        if b == e:
            continue
        if b != 0 and (e == 0 or (b > 0) == (e > 0)) and abs(b) > abs(e):
            kind = "external"
        elif b == 0 or (abs(b) < abs(e) and (b > 0) == (e > 0)):
            kind = "missing_at_broker"
        else:
            kind = "quantity"
        out.append({"kind": kind, "instrument": instrument, "engine": e, "broker": b, "external": b - e
                    if kind == "external" else 0,
                    "underlying": theirs[instrument].underlying if instrument in theirs else ""})
    return out


def external_positions(broker_positions: list[BrokerPosition],
                       engine_positions: dict[str, int]) -> list[BrokerPosition]:
    """The part of each broker position the engine did not open."""
    by_instrument = {p.instrument: p for p in broker_positions}
    out = []
    for d in differences(broker_positions, engine_positions):
        if d["kind"] == "external":
            p = by_instrument[d["instrument"]]
            out.append(BrokerPosition(p.instrument, int(d["external"]), p.avg_price, p.asset, p.underlying))
    return out


# --- risk of external positions ----------------------------------------------------------------------------


def _payoff_parts(p: BrokerPosition) -> tuple[str, Decimal, int]:
    from engine.options.occ import parse_occ

    if p.asset is AssetType.stock:
        return "S", Decimal(0), p.quantity
    occ = parse_occ(p.instrument)
    # per delivered share: an adjusted contract pays strike x 100 for its deliverable
    return occ.right, share_strike(occ.strike, p.deliverable), p.quantity * p.deliverable


def max_loss(positions: list[BrokerPosition]) -> Decimal:
    """Dollars the positions of one underlying can lose from their open prices, at expiry values: the
    minimum of the piecewise-linear payoff at 0, at every strike and, when the payoff keeps falling above
    the highest strike (short calls, short stock), at twice that strike (a stress bound: the true loss is
    unlimited)."""
    if not positions:
        return Decimal(0)
    parts = [_payoff_parts(p) for p in positions]
    # premiums are x 100 per contract whatever it delivers
    cost = sum((Decimal(p.quantity * (OPTION_MULTIPLIER if p.asset is AssetType.option else 1)) * p.avg_price
                for p in positions), Decimal(0))
    strikes = sorted({k for right, k, _ in parts if right != "S"} | {p.avg_price for p in positions
                                                                     if p.asset is AssetType.stock})
    top = max([*strikes, Decimal(1)])
    points = [Decimal(0), *strikes, top * 2]

    def value(s: Decimal) -> Decimal:
        total = Decimal(0)
        for right, k, shares in parts:
            if right == "S":
                total += shares * s
            else:
                total += shares * (max(s - k, Decimal(0)) if right == "C" else max(k - s, Decimal(0)))
        return total

    worst = min(value(s) for s in points) - cost
    return cents(max(-worst, Decimal(0)))


def latest_state(session: Session, broker: str) -> BrokerSyncState | None:
    return session.exec(_LATEST_STATE, params={"broker": broker}).first()


# built once: the risk gate asks for every order (issue 11)
_LATEST_STATE = (select(BrokerSyncState).where(BrokerSyncState.broker == bindparam("broker"))
                 .order_by(BrokerSyncState.last_sync_at.desc()))


def _external_groups(session: Session, broker: str, exclude_underlying: str | None) -> dict[str, list[BrokerPosition]]:
    """The external positions of the broker's newest snapshot (the last sync, refreshed by every intraday
    reconciliation), by underlying."""
    state = latest_state(session, broker)
    if state is None or not state.positions:
        return {}
    ours = engine_instrument_positions(session)
    ext = [p for p in external_positions([_from_row(d) for d in state.positions], ours)
           if (p.underlying or p.instrument) != exclude_underlying]
    grouped: dict[str, list[BrokerPosition]] = defaultdict(list)
    for p in ext:
        grouped[p.underlying or p.instrument].append(p)
    return dict(grouped)


def external_risk(session: Session, broker: str, exclude_underlying: str | None = None) -> dict[str, Decimal]:
    """Risk in dollars per underlying of the external positions in the broker's newest snapshot."""
    return {u: max_loss(ps) for u, ps in _external_groups(session, broker, exclude_underlying).items()}


@dataclass(frozen=True)
class ExternalView:
    """What external positions add to the risk gate's view: risk per underlying, delta dollars per sector."""

    risk_by_symbol: dict[str, Decimal] = field(default_factory=dict)
    delta_dollars_by_sector: dict[str, float] = field(default_factory=dict)


def external_view(session: Session, broker: str, exclude_underlying: str | None = None) -> ExternalView:
    """External positions count in the sector limit too, under their underlying's stored sector (the
    Instrument table; "" when unknown, the gate's "no sector" bucket)."""
    from engine.models import Instrument

    groups = _external_groups(session, broker, exclude_underlying)
    sectors: dict[str, float] = defaultdict(float)
    for underlying, ps in groups.items():
        sector = session.exec(select(Instrument.sector).where(Instrument.symbol == underlying)).first() or ""
        sectors[sector] += float(delta_shares_bound(ps) * _underlying_price(session, underlying, ps))
    return ExternalView({u: max_loss(ps) for u, ps in groups.items()}, dict(sectors))


def delta_shares_bound(positions: list[BrokerPosition]) -> int:
    """The most the positions' net delta can be, in shares, without greeks (the broker sends none): a call's
    delta lies in [0, 1] and a put's in [-1, 0], so the net delta lies between the sums of each leg's
    extremes. Exact for stock and single options, an upper bound for spreads (never an underestimate)."""
    high = low = 0
    for p in positions:
        right, _, shares = _payoff_parts(p)
        if right == "S":
            high, low = high + shares, low + shares
        elif (right == "C") == (shares > 0):  # long call or short put: delta between 0 and +|shares|
            high += abs(shares)
        else:
            low -= abs(shares)
    return max(abs(high), abs(low))


def _underlying_price(session: Session, underlying: str, positions: list[BrokerPosition]) -> Decimal:
    """The newest scan's close of the underlying; without one, the stock's open price or the highest strike
    (options are opened near the money, and the higher strike errs on the side of more exposure)."""
    from engine.models import ScanResult

    close = session.exec(select(ScanResult.close).where(ScanResult.symbol == underlying, ScanResult.close.is_not(None))
                         .order_by(ScanResult.scan_run_id.desc())).first()
    if close:
        return Decimal(str(close))
    stock = [p.avg_price for p in positions if p.asset is AssetType.stock]
    if stock:
        return max(stock)
    return max((_payoff_parts(p)[1] for p in positions), default=Decimal(0))


def refresh_positions(session: Session, broker: SyncableBroker, positions: list[BrokerPosition],
                      engine_positions: dict[str, int]) -> None:
    """The intraday reconciliation's cheap refresh of the external-position view: the positions it read from
    the broker this cycle replace the snapshot the risk gate reads, so a position opened at the broker
    between two syncs counts at once. Balances and transactions wait for the full sync (``last_sync_at``
    stays the full sync's time)."""
    state = _state(session, broker)
    state.positions = [_position_row(p) for p in positions]
    state.differences = differences(positions, engine_positions)
    session.add(state)


# --- syncing ---------------------------------------------------------------------------------------------


def sync(engine: Engine, broker: SyncableBroker, now: datetime) -> SyncReport:
    positions = broker.positions()
    balances = broker.balances()
    with session_scope(engine) as session:
        state = _state(session, broker)
        since = state.last_txn_at.date() if state.last_txn_at is not None else None
    txns = broker.transactions(since)
    with session_scope(engine) as session:
        state = _state(session, broker)
        new = store_transactions(session, txns)
        if txns:
            last = max(txns, key=lambda t: (t.executed_at, t.broker_txn_id))
            if state.last_txn_at is None or last.executed_at >= state.last_txn_at:
                state.last_txn_id, state.last_txn_at = last.broker_txn_id, last.executed_at
        diffs = differences(positions, engine_instrument_positions(session))
        state.environment = broker.environment
        state.last_sync_at = now
        state.transactions_total += new
        state.positions = [_position_row(p) for p in positions]
        state.balances = {"net_liquidating_value": str(balances.net_liquidating_value),
                          "cash_balance": str(balances.cash_balance), "buying_power": str(balances.buying_power),
                          "equity_buying_power": str(balances.equity_buying_power),
                          "maintenance_requirement": str(balances.maintenance_requirement)}
        state.differences = diffs
        session.add(state)
    return SyncReport(broker.name, broker.account_number, broker.environment, positions, balances, new, diffs, now)


def _state(session: Session, broker: SyncableBroker) -> BrokerSyncState:
    state = session.exec(select(BrokerSyncState).where(BrokerSyncState.broker == broker.name,
                                                       BrokerSyncState.account == broker.account_number)).first()
    if state is None:
        state = BrokerSyncState(broker=broker.name, account=broker.account_number, environment=broker.environment)
        session.add(state)
        session.flush()
    return state


def store_transactions(session: Session, txns: list[BrokerTransaction]) -> int:
    """Insert the ones not stored yet (by broker, account and broker id). Returns how many were new."""
    if not txns:
        return 0
    keys = {(t.broker, t.account) for t in txns}
    seen: set[tuple[str, str, str]] = set()
    for b, a in keys:
        ids = session.exec(select(Transaction.broker_txn_id).where(Transaction.broker == b,
                                                                   Transaction.account == a)).all()
        seen.update((b, a, i) for i in ids)
    new = 0
    for t in txns:
        key = (t.broker, t.account, t.broker_txn_id)
        if key in seen:
            continue
        seen.add(key)
        session.add(Transaction(broker=t.broker, account=t.account, broker_txn_id=t.broker_txn_id, type=t.type,
                                symbol=t.symbol, underlying=t.underlying, quantity=t.quantity, price=t.price,
                                amount=t.amount, fees=t.fees, currency=t.currency, executed_at=t.executed_at,
                                raw=t.raw))
        new += 1
    return new


# --- adopting ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptionResult:
    adopted: bool
    message: str
    position_id: int | None = None
    decision: dict[str, Any] = field(default_factory=dict)


def adopt(session: Session, broker: str, underlying: str, portfolio_for: Any, limits: Any, now: datetime,
          actor: str = "operator") -> AdoptionResult:
    """Make the external positions of one underlying the engine's, as one structure (a spread held at the
    broker is two positions but one risk): the risk gate must accept it as if it were a new entry.

    ``portfolio_for(underlying)`` builds the gate's view of the portfolio without this underlying's own
    external risk (it would otherwise count twice)."""
    import math

    from engine import risk
    from engine.options.occ import parse_occ
    from engine.portfolio.accounting import net_price

    state = latest_state(session, broker)
    if state is None:
        return AdoptionResult(False, f"no {broker} sync yet: run `python -m engine sync --broker {broker}`")
    ext = [p for p in external_positions([_from_row(d) for d in state.positions], engine_instrument_positions(session))
           if (p.underlying or p.instrument) == underlying]
    if not ext:
        return AdoptionResult(False, f"{underlying} has no external position in the last {broker} sync")
    unit = math.gcd(*[abs(p.quantity) for p in ext])
    legs = []
    for p in ext:
        side = Side.buy if p.quantity > 0 else Side.sell
        if p.asset is AssetType.option:
            occ = parse_occ(p.instrument)
            legs.append(Leg(p.instrument, side, abs(p.quantity) // unit, p.asset, underlying, occ.right, occ.strike,
                            occ.expiry, p.deliverable))
        else:
            legs.append(Leg(p.instrument, side, abs(p.quantity) // unit, p.asset, underlying))
    entry = net_price(legs, {p.instrument: p.avg_price for p in ext})
    loss = max_loss(ext)
    proposed = risk.ProposedOrder(
        client_order_id=f"adopt-{broker}-{underlying}", underlying=underlying, sector="", intent=risk.Intent.open,
        legs=tuple(legs), quantity=unit, limit_price=entry, max_loss_per_unit=loss / unit,
        buying_power_per_unit=Decimal(0))  # already held: it uses no new buying power
    decision = risk.evaluate(proposed, portfolio_for(underlying), limits, now)
    if not decision.approved:
        return AdoptionResult(False, f"risk gate refused the adoption: {decision.summary()}",
                              decision=decision.to_dict())
    kinds = {p.asset.value for p in ext}
    pos = Position(strategy="adopted", symbol=underlying, structure="adopted_" + "_".join(sorted(kinds)),
                   legs=[leg.to_dict() for leg in legs], quantity=unit, initial_quantity=unit,
                   entry_price=entry.quantize(Decimal("0.000001")), max_loss=loss, initial_risk=loss, status="open",
                   opened_at=now)
    session.add(pos)
    session.flush()
    shown = ", ".join(f"{p.quantity:+d} {p.instrument.strip()}" for p in ext)
    return AdoptionResult(True, f"adopted {shown} by {actor}: the engine manages it now", pos.id, decision.to_dict())
