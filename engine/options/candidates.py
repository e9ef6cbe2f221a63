"""From a scan's signals to stored option candidates and sized entry orders.

build_candidates: for each signal, read the chain, add our own greeks, compute IV rank from the stored
ATM IV history, let ``select_candidates`` pick the structures, and store every one (the first is the
chosen one) with the rejected contracts and their reasons.
entry_spec: turn the chosen structure into an order spec sized by the risk gate's sizing rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlmodel import Session, select

from engine.clock import new_york
from engine.config import Settings
from engine.data.ports import MarketData
from engine.execution import orders as om
from engine.execution.economics import unit_economics
from engine.execution.ports import AssetType, Leg, Side
from engine.execution.service import OrderSpec
from engine.models import IvHistory, OptionCandidate, Signal
from engine.options.chain import enrich
from engine.options.chainrequest import ChainRequest, candidate_request, fetch_chain
from engine.options.ivrank import iv_rank
from engine.options.ivrecord import record_chain_iv
from engine.options.selection import planned_kinds, select_candidates
from engine.options.structures import Structure
from engine.risk import Intent, PortfolioRisk, risk_rooms, size_for_risk

IV_WINDOW_DAYS = 380  # calendar days of ATM IV kept for a 252-session rank


@dataclass(frozen=True)
class CandidateOutcome:
    signal_id: int
    symbol: str
    candidate_id: int | None
    structure: Structure | None
    note: str


def iv_history(session: Session, market: MarketData | None, symbol: str, as_of: date,
               fresh: pd.Series | None = None) -> pd.Series:
    """The stored daily ATM IV series of the sessions before ``as_of``, topped up from the source when it
    can say.  ``as_of`` (the decision day) itself is excluded: its closing IV is not known before its
    close, and a row for it stored in the morning would be read back later as if it had been.

    ``fresh``: the source's series, already fetched outside the transaction (``fetch_iv_series``); then
    ``market`` is not called."""
    start = as_of - timedelta(days=IV_WINDOW_DAYS)
    last = as_of - timedelta(days=1)

    def stored() -> list[IvHistory]:
        return list(session.exec(select(IvHistory).where(IvHistory.symbol == symbol, IvHistory.trade_date >= start,
                                                         IvHistory.trade_date <= last)).all())

    rows = stored()
    have = {r.trade_date for r in rows}
    series_fn = getattr(market, "atm_iv_series", None) if fresh is None else (lambda *_a: fresh)
    if series_fn is not None and (not rows or max(have) < last):
        fresh = series_fn(symbol, start, last)
        for day, iv in fresh.items():
            d = pd.Timestamp(day).date()
            if d < as_of and d not in have and math.isfinite(float(iv)):
                session.add(IvHistory(symbol=symbol, trade_date=d, atm_iv=float(iv), source=market.name))
                have.add(d)
        session.flush()
        rows = stored()
    return pd.Series({r.trade_date: r.atm_iv for r in rows}, dtype="float64").sort_index()


def fetch_iv_series(market: MarketData, symbol: str, as_of: date) -> pd.Series | None:
    """The source's ATM IV series for the rank window (a network call: make it outside any transaction)."""
    series_fn = getattr(market, "atm_iv_series", None)
    last = as_of - timedelta(days=1)  # the decision day's own IV is not known yet (no look-ahead)
    return None if series_fn is None else series_fn(symbol, as_of - timedelta(days=IV_WINDOW_DAYS), last)


def current_iv_rank(session: Session, market: MarketData | None, symbol: str, as_of: date,
                    iv_fresh: pd.Series | None = None) -> float | None:
    """IV rank on the decision day from the sessions before it; None while the history is too short."""
    rank = iv_rank(iv_history(session, market, symbol, as_of, fresh=iv_fresh), as_of=as_of)
    return None if math.isnan(rank) else rank


def chain_request_for(signal: Signal, iv_rank_value: float | None, today: date, settings: Settings,
                      kinds: list[str] | None = None, with_fallback: bool = False) -> ChainRequest:
    """The filtered chain a candidate build for ``signal`` needs (expiries, strike band, rights), from the
    structures it would try; ``with_fallback`` widens it to the call debit spread that replaces a long call
    over the risk budget, so one request serves both."""
    planned = kinds if kinds is not None else planned_kinds(signal.zone, iv_rank_value, settings.options)
    planned = list(planned) or ["long_call"]  # nothing planned for the zone: the selection explains; a small band
    if with_fallback and "long_call" in planned:
        planned.append("call_debit_spread")
    return candidate_request(signal.entry_price, signal.atr, today, settings.options, planned)


def build_candidates(session: Session, market: MarketData | None, settings: Settings, signal: Signal,
                     now: datetime, kinds: list[str] | None = None, why: str | None = None,
                     chain: pd.DataFrame | None = None, iv_fresh: pd.Series | None = None,
                     q: float | None = None) -> CandidateOutcome:
    """Store the structures chosen for ``signal``; with ``kinds``, build those instead of the IV-rank plan
    and make the first of them the chosen candidate (``why`` says why, in the candidate's notes).

    ``chain``, ``iv_fresh`` and ``q`` (dividend yield), fetched beforehand outside the transaction
    (``chain_request_for`` says which chain to fetch), spare the market calls."""
    today = new_york(now).date()
    rank_or_none = current_iv_rank(session, market, signal.symbol, today, iv_fresh)
    if chain is None:
        assert market is not None, "build_candidates needs a market or a fetched chain"
        chain = fetch_chain(market, signal.symbol, now, chain_request_for(signal, rank_or_none, today, settings, kinds))
    if chain.empty:
        return CandidateOutcome(signal.id, signal.symbol, None, None, "no option chain")
    if q is None:
        assert market is not None, "build_candidates needs a market or a fetched dividend yield"
        q = market.dividend_yield(signal.symbol, today)
    chain = enrich(chain, r=settings.risk_free_rate, q=q)
    if market is not None and getattr(market, "atm_iv_series", None) is None:
        # No IV series at the source: record today's 30-day ATM IV from the chain. iv_history leaves the
        # decision day out, so this row counts from the next session on (no look-ahead).
        record_chain_iv(session, signal.symbol, chain, today, market.name)
    view = {"symbol": signal.symbol, "close": signal.entry_price, "atr": signal.atr, "stop": signal.stop,
            "targets": signal.targets, "zone": signal.zone}
    selection = select_candidates(view, chain, settings.options, iv_rank=rank_or_none, kinds=kinds)
    rejected = selection.rejected.to_dict("records")
    if kinds is not None and selection.structures:
        for earlier in session.exec(select(OptionCandidate).where(OptionCandidate.signal_id == signal.id,
                                                                  OptionCandidate.chosen)).all():
            earlier.chosen = False
            session.add(earlier)
    first_id = None
    for i, structure in enumerate(selection.structures):
        cand = OptionCandidate(
            signal_id=signal.id, symbol=signal.symbol, structure=structure.kind, chosen=i == 0,
            legs=[_leg_record(leg) for leg in structure.legs],
            net_mid=float(structure.net_price("mid")), net_natural=float(structure.net_price("natural")),
            max_loss=float(structure.max_loss_per_contract("natural")),
            max_profit=_finite_or_none(structure.max_profit_per_contract("natural")),
            breakevens=[float(b) for b in structure.breakevens("mid")],
            greeks=structure.net_greeks(per_contract=True) | {"underlying_price": structure.underlying_price},
            iv_rank=rank_or_none,
            reasons={"notes": ([why] if why else []) + list(selection.notes) + list(structure.notes),
                     "zone": signal.zone, "iv_rank": rank_or_none},
            rejected=rejected if i == 0 else [],
            created_at=now,
        )
        session.add(cand)
        session.flush()
        first_id = first_id or cand.id
    signal.status = "candidates_built" if selection.structures else "no_candidate"
    session.add(signal)
    note = "; ".join(selection.notes) or ("chosen " + selection.chosen.kind if selection.chosen else "none chosen")
    return CandidateOutcome(signal.id, signal.symbol, first_id, selection.chosen, note)


def _leg_record(leg: Any) -> dict[str, Any]:
    strike = None if leg.strike is None else float(leg.strike)
    return {"occ_symbol": leg.occ_symbol, "right": leg.right, "strike": strike,
            "expiry": None if leg.expiry is None else leg.expiry.isoformat(), "qty": leg.qty, "bid": float(leg.bid),
            "ask": float(leg.ask), "iv": leg.iv, "delta": leg.delta, "gamma": leg.gamma, "theta": leg.theta,
            "vega": leg.vega, "dte": leg.dte, "deliverable": leg.deliverable}


def _finite_or_none(x: Decimal) -> float | None:
    return None if x.is_infinite() else float(x)


def order_legs(structure: Structure) -> tuple[Leg, ...]:
    out = []
    for leg in structure.legs:
        if leg.right == "S":
            out.append(Leg(leg.occ_symbol, Side.buy if leg.qty > 0 else Side.sell, abs(leg.qty) * 100,
                           AssetType.stock, structure.underlying))
        else:
            out.append(Leg(leg.occ_symbol, Side.buy if leg.qty > 0 else Side.sell, abs(leg.qty), AssetType.option,
                           structure.underlying, leg.right, leg.strike, leg.expiry, leg.deliverable))
    return tuple(out)


def entry_limit(structure: Structure) -> Decimal:
    """Half-way between mid and natural, to the cent: marketable at our paper slippage, fair in real life."""
    return om.money((structure.net_price("mid") + structure.net_price("natural")) / 2)


def entry_spec(signal: Signal, candidate_id: int, structure: Structure, sector: str, settings: Settings,
               portfolio: PortfolioRisk, fees_per_contract_leg: Decimal) -> tuple[OrderSpec | None, str]:
    limit = entry_limit(structure)
    legs = order_legs(structure)
    # Debit: what we pay; credit: width minus the credit (the same function measures overrides).
    econ = unit_economics(legs, limit, fees_per_contract_leg)
    max_loss, buying_power, fees = econ.max_loss_per_unit, econ.buying_power_per_unit, econ.fees_per_unit
    if max_loss <= 0 or max_loss.is_infinite():
        return None, f"max loss {max_loss} per contract cannot be sized"
    qty = size_for_risk(max_loss, fees, portfolio, settings.risk, signal.symbol)
    if qty < 1:
        rule, room = min(risk_rooms(portfolio, settings.risk, signal.symbol).items(), key=lambda kv: kv[1])
        return None, f"one contract risks ${max_loss + fees:,.2f}; {rule} leaves ${max(room, Decimal(0)):,.2f}"
    spot = structure.underlying_price if math.isfinite(structure.underlying_price) else signal.entry_price
    delta_dollars = abs(structure.net_greeks(per_contract=True)["delta"]) * spot
    spec = OrderSpec(
        strategy=signal.strategy, signal_key=f"signal:{signal.id}", underlying=signal.symbol, sector=sector,
        structure=structure.kind, intent=Intent.open, legs=legs, quantity=qty, limit_price=limit,
        max_loss_per_unit=max_loss, buying_power_per_unit=buying_power, fees_per_unit=fees,
        delta_dollars_per_unit=delta_dollars if math.isfinite(delta_dollars) else 0.0,
        reason=(f"{signal.strategy} entry: score {signal.score:.2f}, zone {signal.zone}, "
                f"close {signal.entry_price:.2f}, ATR {signal.atr:.2f}"
                + (f", stop {signal.stop:.2f}" if signal.direction == "long" else ", neutral (condor levels)")
                + f"; {structure.kind} x{qty} at {limit}"),
        signal_id=signal.id, candidate_id=candidate_id)
    return spec, "ok"
