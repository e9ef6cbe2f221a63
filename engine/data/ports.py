"""Ports for market data. The simulated market, Massive (Polygon.io) and CSV sources implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from engine.data.panel import Panel

# Columns of the universe frame every source returns.
UNIVERSE_COLUMNS = ("symbol", "name", "sector", "type", "exchange", "currency", "active", "list_date", "tradable")


@dataclass(frozen=True)
class Quote:
    symbol: str
    time: datetime  # timezone-aware
    bid: float
    ask: float
    last: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@runtime_checkable
class MarketData(Protocol):
    """What the engine needs from a market-data source."""

    name: str

    def universe(self) -> pd.DataFrame:
        """One row per instrument with UNIVERSE_COLUMNS."""
        ...

    def daily_bars(self, start: date, end: date, symbols: Sequence[str] | None = None) -> Panel:
        """Daily bars for the exchange sessions in [start, end], all symbols when ``symbols`` is None."""
        ...

    def quotes(self, symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Stock quotes at ``at`` (tz-aware): columns symbol, bid, ask, last, time."""
        ...

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        """The underlying's option chain at ``at`` in the normalised chain shape (engine.options.chain)."""
        ...

    def dividend_yield(self, symbol: str, as_of: date) -> float:
        """The symbol's continuous annualised dividend yield as known on ``as_of`` (0.0 = pays none).

        Option IV and greeks use it (the forward, and early exercise of American calls)."""
        ...
