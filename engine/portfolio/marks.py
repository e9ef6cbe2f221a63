"""Mark open positions to market: per-leg mids, position value, unrealized P&L and net greeks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlmodel import Session, select

from engine.data.ports import MarketData
from engine.execution.ports import AssetType, Leg
from engine.models import Position
from engine.portfolio.accounting import Book, cents, net_price, structure_multiplier

GREEKS = ("delta", "gamma", "theta", "vega")


@dataclass(frozen=True)
class LegQuote:
    bid: Decimal
    ask: Decimal
    greeks: dict[str, float]
    underlying_price: float

    @property
    def mid(self) -> Decimal:
        return ((self.bid + self.ask) / 2).quantize(Decimal("0.0001"))


def leg_quotes(market: MarketData, underlying: str, legs: list[Leg], at: datetime) -> dict[str, LegQuote]:
    """Quotes for every leg of one structure (one chain read per underlying)."""
    out: dict[str, LegQuote] = {}
    spot = float(market.quotes([underlying], at)["last"].iloc[0])
    option_legs = [leg for leg in legs if leg.asset is AssetType.option]
    if option_legs:
        contract_quotes = getattr(market, "option_quotes", None)
        if contract_quotes is not None:
            # Only the held contracts (one request on Massive), not every page of the whole chain.
            chain = contract_quotes([leg.instrument for leg in option_legs], at).set_index("occ_symbol")
        else:
            chain = market.option_chain(underlying, at).set_index("occ_symbol")
        for leg in option_legs:
            if leg.instrument not in chain.index:
                raise KeyError(f"{leg.instrument} is not in the {underlying} chain at {at:%Y-%m-%d %H:%M}")
            row = chain.loc[leg.instrument]
            out[leg.instrument] = LegQuote(
                Decimal(str(row["bid"])), Decimal(str(row["ask"])),
                {g: float(row[g]) if pd.notna(row[g]) else 0.0 for g in GREEKS}, float(row["underlying_price"]),
            )
    for leg in legs:
        if leg.asset is AssetType.stock:
            q = market.quotes([leg.instrument], at).iloc[0]
            out[leg.instrument] = LegQuote(Decimal(str(q["bid"])), Decimal(str(q["ask"])),
                                           {"delta": 1.0, "gamma": 0.0, "theta": 0.0, "vega": 0.0}, spot)
    return out


def structure_greeks(legs: list[Leg], quotes: dict[str, LegQuote], quantity: int, spot: float) -> dict[str, float]:
    """Net position greeks in dollars-per-unit terms: delta in shares, theta $/day, vega $/vol point."""
    net = dict.fromkeys(GREEKS, 0.0)
    for leg in legs:
        q = quotes[leg.instrument]
        for g in GREEKS:
            net[g] += leg.sign * leg.ratio * leg.multiplier * quantity * q.greeks[g]
    net["delta_dollars"] = net["delta"] * spot
    return {k: float(np.round(v, 4)) for k, v in net.items()}


def apply_mark(pos: Position, legs: list[Leg], quotes: dict[str, LegQuote]) -> None:
    """Set mark, unrealized P&L and greeks from quotes already fetched (no market call here)."""
    mark = net_price(legs, {k: q.mid for k, q in quotes.items()})
    book = Book(structure_multiplier(legs), pos.quantity, pos.entry_price, pos.realized_pnl)
    pos.mark = mark.quantize(Decimal("0.0001"))
    pos.unrealized_pnl = cents(book.unrealized(mark))
    spot = next(iter(quotes.values())).underlying_price if quotes else 0.0
    pos.greeks = {**structure_greeks(legs, quotes, pos.quantity, spot), "underlying_price": spot}
    pos.delta_dollars = abs(pos.greeks["delta_dollars"])


def fetch_marks(market: MarketData, positions: Sequence[Position], at: datetime) -> dict[int, dict[str, LegQuote]]:
    """Leg quotes for each position, by position id; a position that could not be quoted is left out.
    Network calls (Massive may wait on its rate limiter): made with no transaction open (issue 12 #2)."""
    out: dict[int, dict[str, LegQuote]] = {}
    for pos in positions:
        try:
            quotes = leg_quotes(market, pos.symbol, [Leg.from_dict(d) for d in pos.legs], at)
        except (KeyError, IndexError, ValueError):
            continue
        if pos.id is not None:
            out[pos.id] = quotes
    return out


def mark_all(session: Session, marks: dict[int, dict[str, LegQuote]]) -> list[str]:
    """Mark every open position from quotes fetched beforehand (``fetch_marks``); returns the symbols that
    could not be marked (kept at their last mark)."""
    failed = []
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        quotes = marks.get(pos.id) if pos.id is not None else None
        if quotes is None:
            failed.append(pos.symbol)
            continue
        apply_mark(pos, [Leg.from_dict(d) for d in pos.legs], quotes)
        session.add(pos)
    return failed


def positions_value(session: Session) -> Decimal:
    """Market value of the open positions at their last marks (cost basis where never marked)."""
    total = Decimal("0")
    for pos in session.exec(select(Position).where(Position.status == "open")).all():
        legs = [Leg.from_dict(d) for d in pos.legs]
        mark = pos.mark if pos.mark is not None else pos.entry_price
        total += Book(structure_multiplier(legs), pos.quantity, pos.entry_price).market_value(mark)
    return total
