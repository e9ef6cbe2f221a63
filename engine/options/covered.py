"""Covered calls on held shares (DESIGN §5): the pre-market writes one 30-45 day call at |delta| 0.25-0.35
per 100 uncovered shares of a held stock position (e.g. shares delivered by an assignment).

How a covered call lives in the books: the shares stay in their own "stock" position; the call is a
separate position (structure ``covered_call``, one short call leg) in the same symbol. Coverage is counted
per symbol: long shares held versus 100 x (open covered calls + working covered-call orders), so a second
pre-market never writes a second call on the same shares.

Its risk (DESIGN §6): the shares carry theirs (entry-to-stop); the call adds no loss beyond them, so its
max loss and buying power per unit are zero and the gate counts only its fees. It goes through the same
``service.propose`` route and the same gate as every entry. Management (``portfolio.manager``): held to
expiry or assignment; bought back first when the shares are sold; an assignment calls the shares away
(``execution.reconcile`` nets the delivered shares against the stock position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlmodel import Session, func, select

from engine.config import Settings
from engine.execution import orders as om
from engine.execution.ports import OPTION_MULTIPLIER, AssetType, Leg, Side
from engine.execution.service import OrderSpec
from engine.models import OptionCandidate, Order, Position
from engine.options.candidates import entry_limit, order_legs
from engine.options.chain import enrich
from engine.options.chainrequest import ChainRequest, candidate_request
from engine.options.selection import select_candidates
from engine.options.structures import Structure
from engine.risk import Intent

STRUCTURE = "covered_call"


@dataclass(frozen=True)
class Holding:
    """Long shares of one symbol and how many of them no covered call covers yet."""

    symbol: str
    shares: int
    covered_contracts: int
    committed_shares: int  # shares the written calls deliver if assigned (their own deliverables)
    position_id: int  # the oldest stock position (its signal, strategy and sector label the call)
    signal_id: int | None
    strategy: str
    sector: str
    entry_atr: float

    @property
    def uncovered_lots(self) -> int:
        return max(0, (self.shares - self.committed_shares) // OPTION_MULTIPLIER)


def _is_long_stock(pos: Position) -> bool:
    return pos.structure == "stock" and any(d.get("asset") == "stock" and d.get("side") == "buy" for d in pos.legs)


def long_shares(session: Session, symbol: str) -> int:
    """Long shares of ``symbol`` held in the engine's open stock positions."""
    rows = session.exec(select(Position).where(Position.status == "open", Position.symbol == symbol,
                                               Position.structure == "stock")).all()
    return sum(p.quantity for p in rows if _is_long_stock(p))


def covered_contracts(session: Session, symbol: str, include_working: bool = True) -> int:
    """Covered calls open on ``symbol`` plus, with ``include_working``, what working entry orders will add."""
    held = session.exec(select(func.sum(Position.quantity)).where(
        Position.status == "open", Position.symbol == symbol, Position.structure == STRUCTURE)).one() or 0
    working = 0
    if include_working:
        working = session.exec(select(func.sum(Order.quantity - Order.filled_quantity)).where(
            Order.symbol == symbol, Order.structure == STRUCTURE, Order.intent == "open",
            Order.status.in_(om.LIVE_VALUES))).one() or 0
    return int(held) + int(working)


def covered_shares(session: Session, symbol: str, include_working: bool = True) -> int:
    """Shares of ``symbol`` the covered calls (held and, with ``include_working``, being written) would
    deliver if assigned: each contract's own deliverable (150 for a call adjusted by a 3:2 split)."""
    rows: list[tuple[int, list[dict[str, Any]]]] = [
        (int(q), legs) for q, legs in session.exec(select(Position.quantity, Position.legs).where(
            Position.status == "open", Position.symbol == symbol, Position.structure == STRUCTURE)).all()]
    if include_working:
        rows += [(int(q - f), legs) for q, f, legs in session.exec(
            select(Order.quantity, Order.filled_quantity, Order.legs).where(
                Order.symbol == symbol, Order.structure == STRUCTURE, Order.intent == "open",
                Order.status.in_(om.LIVE_VALUES))).all()]
    total = 0
    for units, legs in rows:
        for leg in (Leg.from_dict(d) for d in legs):
            if leg.asset is AssetType.option:
                total += units * leg.ratio * leg.deliverable
    return total


def covering_positions(session: Session, symbol: str) -> list[int]:
    """Open covered-call positions on ``symbol`` (bought back before its shares are sold)."""
    return [i for i in session.exec(select(Position.id).where(
        Position.status == "open", Position.symbol == symbol, Position.structure == STRUCTURE)).all()
            if i is not None]


def holdings(session: Session) -> list[Holding]:
    """Every symbol with at least 100 long shares held, with its coverage (symbols in name order)."""
    rows = session.exec(select(Position).where(Position.status == "open", Position.structure == "stock")
                        .order_by(Position.opened_at, Position.id)).all()
    first: dict[str, Position] = {}
    shares: dict[str, int] = {}
    for p in rows:
        if _is_long_stock(p) and p.quantity > 0:
            first.setdefault(p.symbol, p)
            shares[p.symbol] = shares.get(p.symbol, 0) + p.quantity
    out = []
    for symbol in sorted(shares):
        if shares[symbol] < OPTION_MULTIPLIER:
            continue
        p = first[symbol]
        assert p.id is not None
        out.append(Holding(symbol, shares[symbol], covered_contracts(session, symbol),
                           covered_shares(session, symbol), p.id, p.signal_id,
                           p.strategy, p.sector, float(p.entry_atr or 0.0)))
    return out


def chain_request(spot: float, atr: float, today: date, settings: Settings) -> ChainRequest:
    """The calls a covered-call choice can use (the same request builder as every candidate)."""
    return candidate_request(spot, atr, today, settings.options, [STRUCTURE])


@dataclass(frozen=True)
class CoveredCall:
    structure: Structure | None  # the held shares (at ``spot``) + the short call
    candidate_id: int | None
    note: str


def choose(session: Session, settings: Settings, holding: Holding, spot: float, chain: pd.DataFrame, q: float,
           now: datetime) -> CoveredCall:
    """Pick the call with the selection's filters (``kinds=["covered_call"]``) and store the candidate (when
    the shares came from a signal) with every rejected contract and why."""
    if chain.empty:
        return CoveredCall(None, None, "no option chain")
    chain = enrich(chain, r=settings.risk_free_rate, q=q)
    view = {"symbol": holding.symbol, "close": spot, "atr": holding.entry_atr, "stop": math.nan, "targets": [],
            "zone": "held"}
    selection = select_candidates(view, chain, settings.options, kinds=[STRUCTURE])
    why = (f"{holding.shares} shares of {holding.symbol} held, {holding.covered_contracts} call(s) written: "
           f"{holding.uncovered_lots} covered call(s) at |delta| {settings.options.covered_delta_min:g}-"
           f"{settings.options.covered_delta_max:g}, {settings.options.dte_target_min}-"
           f"{settings.options.dte_target_max} days (DESIGN §5)")
    structure = selection.chosen
    if structure is None:
        return CoveredCall(None, None, "; ".join(selection.notes))
    candidate_id = None
    if holding.signal_id is not None:
        cand = OptionCandidate(
            signal_id=holding.signal_id, symbol=holding.symbol, structure=STRUCTURE, chosen=True,
            legs=[{"occ_symbol": leg.occ_symbol, "right": leg.right,
                   "strike": None if leg.strike is None else float(leg.strike),
                   "expiry": None if leg.expiry is None else leg.expiry.isoformat(), "qty": leg.qty,
                   "bid": float(leg.bid), "ask": float(leg.ask), "iv": leg.iv, "delta": leg.delta, "dte": leg.dte}
                  for leg in structure.legs],
            net_mid=float(structure.net_price("mid")), net_natural=float(structure.net_price("natural")),
            max_loss=0.0,  # covered: nothing beyond the shares' own risk
            max_profit=float(structure.max_profit_per_contract("natural")),
            breakevens=[float(b) for b in structure.breakevens("mid")],
            greeks=structure.net_greeks(per_contract=True) | {"underlying_price": spot},
            iv_rank=None, reasons={"notes": [why, *selection.notes, *structure.notes], "zone": "held",
                                   "stock_position_id": holding.position_id},
            rejected=selection.rejected.to_dict("records"), created_at=now)
        session.add(cand)
        session.flush()
        candidate_id = cand.id
    return CoveredCall(structure, candidate_id, why)


def order_spec(holding: Holding, chosen: CoveredCall, fees_per_contract: Decimal, today: date) -> OrderSpec:
    """Sell one call per uncovered 100 shares; only the call is traded (the shares are held)."""
    assert chosen.structure is not None
    call_legs = tuple(leg for leg in order_legs(chosen.structure) if leg.asset is AssetType.option)
    (call,) = call_legs
    assert call.side is Side.sell
    call_only = Structure(STRUCTURE, holding.symbol, tuple(x for x in chosen.structure.legs if x.right == "C"))
    limit = entry_limit(call_only)  # a credit: negative, between mid and the bid
    quote = next(x for x in chosen.structure.legs if x.right == "C")
    return OrderSpec(
        strategy=holding.strategy, signal_key=f"cover:{holding.symbol}:{today.isoformat()}",
        underlying=holding.symbol, sector=holding.sector, structure=STRUCTURE, intent=Intent.open,
        legs=call_legs, quantity=holding.uncovered_lots, limit_price=limit,
        # Covered by the held shares: no loss beyond theirs, no margin held (DESIGN §6).
        max_loss_per_unit=Decimal("0"), buying_power_per_unit=Decimal("0"), fees_per_unit=fees_per_contract,
        delta_dollars_per_unit=0.0,  # it lowers the shares' delta; counted as adding none to the sector
        reason=(f"{chosen.note}: sell {holding.uncovered_lots} x {_describe(call)} at {limit} "
                f"(|delta| {abs(quote.delta):.2f}, {quote.dte:g} DTE)"),
        signal_id=holding.signal_id, candidate_id=chosen.candidate_id)


def _describe(leg: Leg) -> str:
    return f"{leg.underlying} {leg.expiry} {leg.right}{leg.strike}"
