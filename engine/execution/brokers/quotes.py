"""Quotes for the paper broker: what the simulated venue sees when it decides whether and where to fill.

``QuoteSource`` is the small port the paper broker reads; ``SimQuoteSource`` answers it from the
simulated market (stocks from ``SimMarket.quotes``; options contract by contract from
``SimMarket.contract_quotes``, which prices any set of contracts across underlyings in one vectorised pass
and says whether that minute's chain lists each), from a source that quotes contracts by their own
tickers (``quotes_by_contract``: Massive), one contract per request instead of every page of the chain,
or from any other source's whole chain at that minute.
A venue marking a book or checking an order's legs calls ``prefetch`` first, so all of them cost one
pricing pass; the ``quote`` calls that follow are cache hits.
Prices cross this port as ``Decimal``: the broker does money arithmetic on them.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from engine.options.occ import parse_occ

__all__ = [
    "InstrumentQuote",
    "OptionSpec",
    "QuoteSource",
    "SimQuoteSource",
    "UnknownInstrument",
    "parse_option_symbol",
    "to_decimal",
]


class UnknownInstrument(LookupError):
    """The instrument does not exist (is not listed or quoted) at the time asked."""


@dataclass(frozen=True)
class InstrumentQuote:
    bid: Decimal
    ask: Decimal
    volume: int = 0  # today's volume so far (contracts or shares); 0 when unknown
    open_interest: int = 0
    underlying_price: Decimal | None = None  # options: the underlying's price at the quote

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def half_spread(self) -> Decimal:
        return (self.ask - self.bid) / 2


@dataclass(frozen=True)
class OptionSpec:
    underlying: str
    expiry: date
    right: str  # "C" | "P"
    strike: Decimal


def parse_option_symbol(symbol: str) -> OptionSpec | None:
    """(underlying, expiry, right, strike) of an OCC option symbol (padded, compact or "O:"-prefixed form);
    None when ``symbol`` is not one (a stock symbol)."""
    try:
        occ = parse_occ(symbol)
    except ValueError:
        return None
    return OptionSpec(occ.root, occ.expiry, occ.right, occ.strike)


def to_decimal(value: Any) -> Decimal:
    """A float price from a DataFrame as the Decimal it was meant to be (prices are on a 1/100-cent grid)."""
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"not a finite price: {value!r}")
    return Decimal(repr(round(f, 4))) + Decimal("0.00")


@runtime_checkable
class QuoteSource(Protocol):
    def quote(self, instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        """The quote of a stock symbol or OCC option symbol at tz-aware ``at``.

        Raises ``UnknownInstrument`` when it does not exist at that time. ``held=True`` says the caller
        already holds the contract: a contract listed earlier still quotes even where today's chain no
        longer lists its strike (a real exchange does not delist a strike with open interest)."""
        ...

    def settlement_price(self, underlying: str, day: date) -> Decimal:
        """The underlying's official close of session ``day`` (what expiring options settle against)."""
        ...


_Row = tuple[Decimal, Decimal, int, int, Decimal | None]


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _count(value: Any) -> int:
    return int(value) if _finite(value) else 0


def _padded(instrument: str, spec: OptionSpec | None = None) -> str | None:
    """The padded OCC symbol of an option contract (``spec``: its parse, when the caller has it); None for a
    stock symbol."""
    spec = spec or parse_option_symbol(instrument)
    return None if spec is None else f"{spec.underlying:<6}{instrument.strip()[-15:]}"


class SimQuoteSource:
    """``QuoteSource`` over ``engine.data.sim.SimMarket`` (or anything with the same three methods).

    Quotes within the same minute are the same, so what was priced is cached per (underlying or
    contract, minute) in bounded LRUs: whole chains on a source that only has chains, single contracts
    (with their listed flag) on one that has ``contract_quotes``."""

    def __init__(self, market: Any, cache_size: int = 128, contract_cache_size: int = 8192) -> None:
        self.market = market
        self.cache_size = max(1, int(cache_size))
        self.contract_cache_size = max(1, int(contract_cache_size))
        # (underlying or contract, minute) -> rows: chains, or single contracts on a quotes_by_contract source
        self._chains: OrderedDict[tuple[str, datetime], dict[str, _Row]] = OrderedDict()
        # (padded contract, minute) -> (row, listed at that minute); None: not quoted (expired, no price)
        self._contracts: OrderedDict[tuple[str, datetime], tuple[_Row, bool] | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _minute(at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("quote times must be timezone-aware")
        return at.replace(second=0, microsecond=0)

    def _cached(self, key: tuple[str, datetime], load: Callable[[], Any]) -> dict[str, _Row]:
        """Rows for ``key`` from the bounded LRU, or from ``load()`` (a chain or contracts frame)."""
        with self._lock:
            rows = self._chains.get(key)
            if rows is not None:
                self._chains.move_to_end(key)
                self.hits += 1
                return rows
            self.misses += 1
        rows = self._rows(load())
        with self._lock:
            self._chains[key] = rows
            self._chains.move_to_end(key)
            while len(self._chains) > self.cache_size:
                self._chains.popitem(last=False)
        return rows

    def _chain(self, underlying: str, minute: datetime) -> dict[str, _Row]:
        def load() -> Any:
            try:
                return self.market.option_chain(underlying, minute)
            except KeyError as exc:  # unknown underlying
                raise UnknownInstrument(f"unknown underlying {underlying!r}") from exc

        return self._cached((underlying, minute), load)

    @staticmethod
    def _rows(frame: Any) -> dict[str, _Row]:
        rows: dict[str, _Row] = {}
        if frame is None or len(frame) == 0:
            return rows
        cols = [frame[c].to_numpy() for c in ("occ_symbol", "bid", "ask", "volume", "open_interest",
                                                "underlying_price")]
        for occ, bid, ask, vol, oi, und in zip(*cols, strict=True):
            if not (_finite(bid) and _finite(ask)):
                continue
            rows[str(occ)] = (to_decimal(bid), to_decimal(ask), _count(vol), _count(oi),
                              to_decimal(und) if _finite(und) else None)
        return rows

    def _contract(self, padded: str, minute: datetime) -> dict[str, _Row]:
        """One contract's quote by its own ticker (``option_quotes``), cached like a chain."""
        return self._cached((padded, minute), lambda: self.market.option_quotes([padded], minute))

    def prefetch(self, instruments: Sequence[str], at: datetime) -> None:
        """Price the option contracts among ``instruments`` at ``at`` in one call (a book's marks, an
        order's legs), so the ``quote`` calls that follow are cache hits. A no-op on chain-only sources."""
        if not hasattr(self.market, "contract_quotes"):
            return
        minute = self._minute(at)
        with self._lock:
            wanted = [p for p in dict.fromkeys(_padded(i) for i in instruments)
                      if p is not None and (p, minute) not in self._contracts]
        if wanted:
            self._load_contracts(wanted, minute)

    def _load_contracts(self, padded: list[str], minute: datetime) -> None:
        try:
            priced = self.market.contract_quotes(padded, minute)
        except KeyError as exc:  # an unknown underlying
            raise UnknownInstrument(str(exc)) from exc
        with self._lock:
            self.misses += len(padded)
            for p in padded:
                got = priced.get(p)
                entry = None
                if got is not None and _finite(got[0]) and _finite(got[1]):
                    bid, ask, vol, oi, und, listed = got
                    entry = ((to_decimal(bid), to_decimal(ask), _count(vol), _count(oi),
                              to_decimal(und) if _finite(und) else None), bool(listed))
                self._contracts[(p, minute)] = entry
                self._contracts.move_to_end((p, minute))
            while len(self._contracts) > self.contract_cache_size:
                self._contracts.popitem(last=False)

    def _contract_row(self, padded: str, minute: datetime, held: bool) -> _Row | None:
        """One contract from the per-contract cache (priced now on a miss); None when not quotable:
        expired, unpriced, or, unless ``held``, not on that minute's chain."""
        key = (padded, minute)
        with self._lock:
            cached = key in self._contracts
            if cached:
                self.hits += 1
                self._contracts.move_to_end(key)
        if not cached:
            self._load_contracts([padded], minute)
        with self._lock:
            entry = self._contracts.get(key)
        if entry is None:
            return None
        row, listed = entry
        return row if listed or held else None

    def quote(self, instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        minute = self._minute(at)
        spec = parse_option_symbol(instrument)
        if spec is None:
            return self._stock_quote(instrument, minute)
        padded = _padded(instrument, spec)
        assert padded is not None
        if hasattr(self.market, "contract_quotes"):
            row = self._contract_row(padded, minute, held)
            if row is None:
                raise UnknownInstrument(f"{instrument!r} is not listed at {minute.isoformat()}")
            return InstrumentQuote(*row)
        if getattr(self.market, "quotes_by_contract", False):
            # A source whose chain is many paid pages (Massive) but that quotes listed contracts by their
            # own tickers in one request: never page the whole chain for one leg.
            row = self._contract(padded, minute).get(padded)
            if row is None:
                raise UnknownInstrument(f"{instrument!r} is not listed at {minute.isoformat()}")
            return InstrumentQuote(*row)
        row = self._chain(spec.underlying, minute).get(padded)
        if row is None and held and hasattr(self.market, "option_quotes"):
            row = next(iter(self._rows(self.market.option_quotes([padded], minute)).values()), None)
        if row is None:
            raise UnknownInstrument(f"{instrument!r} is not listed at {minute.isoformat()}")
        bid, ask, vol, oi, und = row
        return InstrumentQuote(bid, ask, vol, oi, und)

    def _stock_quote(self, symbol: str, minute: datetime) -> InstrumentQuote:
        try:
            frame = self.market.quotes([symbol], minute)
        except KeyError as exc:
            raise UnknownInstrument(f"unknown symbol {symbol!r}") from exc
        bid, ask = float(frame["bid"].iloc[0]), float(frame["ask"].iloc[0])
        if not (math.isfinite(bid) and math.isfinite(ask)):
            raise UnknownInstrument(f"{symbol!r} has no quote at {minute.isoformat()} (not listed yet)")
        return InstrumentQuote(to_decimal(bid), to_decimal(ask))

    def settlement_price(self, underlying: str, day: date) -> Decimal:
        try:
            if hasattr(self.market, "bar"):
                close = self.market.bar(underlying, day)["close"]
            else:  # any MarketData: the session's daily bar
                panel = self.market.daily_bars(day, day, [underlying])
                close = panel.close[0, 0] if panel.n_days and panel.n_symbols else math.nan
        except KeyError as exc:
            raise UnknownInstrument(f"unknown symbol {underlying!r}") from exc
        if not _finite(close):
            raise UnknownInstrument(f"{underlying!r} has no close on {day}")
        return to_decimal(close)
