"""Option chains for the options-mode backtest, and which kind of quote each fill used.

* ``read_vendor_eod``: the common vendor end-of-day layout (``../shared/data/options_eod/``): quote
  date, expiry, strike, type, bid, ask, volume, open interest, IV, greeks, in either of its two
  spellings (``underlying,underlying_last, exchange,optionroot,...,quotedate,...`` and
  ``UnderlyingSymbol,UnderlyingPrice,...,DataDate,...,IVMean,...``), into the normalised chain shape
  (``engine.options.chain.CHAIN_COLUMNS``). Deep-ITM rows carry placeholder IV/delta (IV <= 0.01 with
  delta 0): those become NaN so that our own greeks (``chain.enrich``) decide instead.
* ``EodChains``: chains by (underlying, quote date) from such files: fill source ``eod_chain``.
* ``SimChains``: the simulated market's own chains at a given minute: fill source ``sim_surface``.
* ``SurfaceChains``: for bars without chains (CSV/Massive stocks): a BSM chain on the symbol's 20-day
  realised volatility of the sessions *before* the quote day (a variance premium, a put skew, a
  term structure and a spread model that widens away from the money): fill source ``sim_surface``.
* ``LayeredChains``: historical chains where the data has them, the fallback otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.data.panel import Panel
from engine.options.chain import CHAIN_COLUMNS, empty_chain
from engine.options.occ import occ_padded
from engine.options.pricing import bsm_price, greeks

__all__ = ["ChainSource", "EodChains", "LayeredChains", "SimChains", "SurfaceChains", "read_vendor_eod"]

NY = ZoneInfo("America/New_York")
EOD, SIM = "eod_chain", "sim_surface"

_LAYOUTS = {
    "optopsy": {"underlying": "underlying", "underlying_price": "underlying_last", "type": "type",
                "expiry": "expiration", "quote_date": "quotedate", "strike": "strike", "last": "last", "bid": "bid",
                "ask": "ask", "volume": "volume", "open_interest": "openinterest", "iv": "impliedvol",
                "delta": "delta", "gamma": "gamma", "theta": "theta", "vega": "vega"},
    "ivmean": {"underlying": "UnderlyingSymbol", "underlying_price": "UnderlyingPrice", "type": "Type",
               "expiry": "Expiration", "quote_date": "DataDate", "strike": "Strike", "last": "Last", "bid": "Bid",
               "ask": "Ask", "volume": "Volume", "open_interest": "OpenInterest", "iv": "IVMean", "delta": "Delta",
               "gamma": "Gamma", "theta": "Theta", "vega": "Vega"},
}


def read_vendor_eod(path: Path | str) -> pd.DataFrame:
    """One vendor EOD file as a chain frame (CHAIN_COLUMNS + ``quote_date``); raises naming a missing column."""
    raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    layout = next((name for name, cols in _LAYOUTS.items() if set(cols.values()) <= set(raw.columns)), None)
    if layout is None:
        need = sorted(set(_LAYOUTS["optopsy"].values()) - set(raw.columns))
        raise ValueError(f"{path}: not a known EOD option layout; missing columns {need}")
    c = _LAYOUTS[layout]

    def num(key: str) -> np.ndarray:
        return pd.to_numeric(raw[c[key]], errors="coerce").to_numpy(dtype=np.float64)

    expiry = pd.to_datetime(raw[c["expiry"]], format="%m/%d/%Y", errors="coerce")
    quote = pd.to_datetime(raw[c["quote_date"]], format="%m/%d/%Y", errors="coerce")
    bad = expiry.isna() | quote.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: row {i + 2}: bad date expiry={raw[c['expiry']].iloc[i]!r} "
                         f"quote_date={raw[c['quote_date']].iloc[i]!r}")
    right = raw[c["type"]].str.strip().str.lower().map({"call": "C", "put": "P", "c": "C", "p": "P"})
    if right.isna().any():
        i = int(np.flatnonzero(right.isna().to_numpy())[0])
        raise ValueError(f"{path}: row {i + 2}: type={raw[c['type']].iloc[i]!r} is neither call nor put")
    und = raw[c["underlying"]].str.strip().str.upper()
    strike = num("strike")
    iv, delta = num("iv"), num("delta")
    placeholder = (iv <= 0.01) & (delta == 0)  # deep-ITM rows: the vendor had no model value
    iv = np.where(placeholder | (iv <= 0), np.nan, iv)
    delta = np.where(placeholder, np.nan, delta)
    bid, ask = num("bid"), num("ask")
    exp_d = expiry.dt.date.to_numpy()
    q_d = quote.dt.date.to_numpy()
    out = pd.DataFrame({
        "underlying": und.to_numpy(dtype=object),
        "occ_symbol": [occ_padded(u, e, r, k) for u, e, r, k in zip(und, exp_d, right, strike, strict=True)],
        "expiry": exp_d,
        "dte": (expiry - quote).dt.days.to_numpy(dtype=np.float64),
        "strike": strike, "right": right.to_numpy(dtype=object), "bid": bid, "ask": ask,
        "mid": np.round((bid + ask) / 2, 6), "last": num("last"), "volume": num("volume"),
        "open_interest": num("open_interest"), "iv": iv, "delta": delta,
        "gamma": np.where(placeholder, np.nan, num("gamma")), "theta": np.where(placeholder, np.nan, num("theta")),
        "vega": np.where(placeholder, np.nan, num("vega")), "underlying_price": num("underlying_price"),
        "quote_time": pd.to_datetime([datetime.combine(d, time(16, 0), NY) for d in q_d], utc=True),
        "source": f"eod:{Path(path).name}",
    }, columns=list(CHAIN_COLUMNS))
    out["quote_date"] = q_d
    return out


class ChainSource(Protocol):
    def chain(self, symbol: str, day: date, at: time) -> tuple[pd.DataFrame, str]:
        """The chain of ``symbol`` on ``day`` at wall-clock ``at`` (NY) and the fill source name."""
        ...

    def quotes(self, symbol: str, occ_symbols: Sequence[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        ...


class EodChains:
    """Historical chains by (underlying, quote date). The vendor's quotes are end-of-day (taken at the
    16:00 close), so a chain is known only from the close of its quote date: a request before 16:00 on
    ``day`` gets the latest chain quoted before ``day`` (the previous session's close, at most
    ``STALE_DAYS`` calendar days old), never the closing chain of ``day`` itself."""

    CLOSE = time(16, 0)
    STALE_DAYS = 5

    def __init__(self, frames: Iterable[pd.DataFrame]) -> None:
        self._by: dict[tuple[str, date], pd.DataFrame] = {}
        for f in frames:
            for (u, d), g in f.groupby(["underlying", "quote_date"], sort=False):
                self._by[(str(u), d)] = g.drop(columns="quote_date").reset_index(drop=True)

    def known(self, symbol: str, day: date, at: time) -> date | None:
        """The quote date of the chain known at ``at`` on ``day`` (None: none recent enough)."""
        if at >= self.CLOSE:
            return day if (symbol, day) in self._by else None
        for back in range(1, self.STALE_DAYS + 1):
            d = day - timedelta(days=back)
            if (symbol, d) in self._by:
                return d
        return None

    @classmethod
    def from_dir(cls, folder: Path | str) -> EodChains:
        return cls(read_vendor_eod(p) for p in sorted(Path(folder).glob("*.csv")))

    def has(self, symbol: str, day: date) -> bool:
        return (symbol, day) in self._by

    def days(self, symbol: str) -> list[date]:
        return sorted(d for s, d in self._by if s == symbol)

    def chain(self, symbol: str, day: date, at: time) -> tuple[pd.DataFrame, str]:
        d = self.known(symbol, day, at)
        return (empty_chain() if d is None else self._by[(symbol, d)]), EOD

    def quotes(self, symbol: str, occ_symbols: Sequence[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        ch, _ = self.chain(symbol, day, at)
        return ch[ch["occ_symbol"].isin(list(occ_symbols))].reset_index(drop=True), EOD


class SimChains:
    """The simulated market's chains (BSM on its own surface) at a minute of the session."""

    def __init__(self, market: object) -> None:
        self.market = market

    def chain(self, symbol: str, day: date, at: time) -> tuple[pd.DataFrame, str]:
        return self.market.option_chain(symbol, datetime.combine(day, at, NY)), SIM  # type: ignore[attr-defined]

    def quotes(self, symbol: str, occ_symbols: Sequence[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        q = self.market.option_quotes(list(occ_symbols), datetime.combine(day, at, NY))  # type: ignore[attr-defined]
        return q, SIM


class SurfaceChains:
    """A BSM chain from bars alone: IV from the 20-session realised vol *before* ``day`` (no look-ahead)."""

    VAR_PREMIUM, SKEW, TERM, FLOOR_IV = 1.15, 0.25, -0.05, 0.08

    def __init__(self, panel: Panel, r: float = 0.04) -> None:
        self.panel, self.r = panel, r
        c = panel.close.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            lr = np.diff(np.log(c), axis=0)
        vol = pd.DataFrame(lr).rolling(20).std(ddof=1).to_numpy() * math.sqrt(252)
        self._rv = np.vstack([np.full((1, panel.n_symbols), np.nan), vol])  # rv[t] uses returns up to t
        self._col = {s: j for j, s in enumerate(panel.symbols)}
        self._row = {d: i for i, d in enumerate(panel.dates.astype("datetime64[D]").astype(object))}

    def _spot_iv(self, symbol: str, day: date, at: time) -> tuple[float, float]:
        j, t = self._col[symbol], self._row[day]
        spot = float(self.panel.open[t, j] if at < time(12, 0) else self.panel.close[t, j])
        rv = float(self._rv[t - 1, j]) if t > 0 else math.nan
        return spot, max(self.FLOOR_IV, rv * self.VAR_PREMIUM) if math.isfinite(rv) else math.nan

    def _price(self, symbol: str, day: date, at: time, expiries: list[date], strikes: np.ndarray,
               calls: np.ndarray) -> pd.DataFrame:
        spot, atm = self._spot_iv(symbol, day, at)
        if not (math.isfinite(spot) and math.isfinite(atm)) or spot <= 0:
            return empty_chain()
        dte = np.array([(e - day).days for e in expiries], dtype=np.float64)
        t = np.maximum(dte, 0.5) / 365.0
        m = np.log(strikes / spot) / np.sqrt(t)
        iv = np.maximum(self.FLOOR_IV, atm * (1 + self.TERM * np.log(t * 12)) * (1 - self.SKEW * m + 0.5 * m * m))
        theo = bsm_price(spot, strikes, t, self.r, 0.0, iv, calls)
        g = greeks(spot, strikes, t, self.r, 0.0, iv, calls)
        half = np.maximum(0.025, theo * (0.02 + 0.04 * np.abs(m)))  # wider away from the money
        bid = np.maximum(0.0, np.floor((theo - half) * 100) / 100)
        ask = np.ceil((theo + half) * 100) / 100
        right = np.where(calls, "C", "P")
        moneyness = np.abs(np.log(strikes / spot))
        oi = np.round(5000 * np.exp(-8 * moneyness))
        return pd.DataFrame({
            "underlying": symbol, "occ_symbol": [occ_padded(symbol, e, r, k) for e, r, k in
                                                 zip(expiries, right, strikes, strict=True)],
            "expiry": expiries, "dte": dte, "strike": strikes, "right": right.astype(object), "bid": bid,
            "ask": ask, "mid": np.round((bid + ask) / 2, 6), "last": np.nan, "volume": np.round(oi / 5),
            "open_interest": oi, "iv": iv, "delta": g.delta, "gamma": g.gamma, "theta": g.theta, "vega": g.vega,
            "underlying_price": spot, "quote_time": pd.Timestamp(datetime.combine(day, at, NY)).tz_convert("UTC"),
            "source": "surface",
        }, columns=list(CHAIN_COLUMNS))

    def chain(self, symbol: str, day: date, at: time) -> tuple[pd.DataFrame, str]:
        spot, _ = self._spot_iv(symbol, day, at)
        if not math.isfinite(spot):
            return empty_chain(), SIM
        step = 0.5 if spot < 25 else 1.0 if spot < 100 else 5.0
        strikes = np.arange(max(step, math.floor(spot * 0.7 / step) * step), spot * 1.3 + step, step)
        expiries = [day + timedelta(days=d) for d in (14, 21, 28, 35, 42, 49, 63)]
        expiries = [e - timedelta(days=(e.weekday() - 4) % 7) for e in expiries]  # Fridays
        e_list = [e for e in expiries for _ in range(2 * len(strikes))]
        k = np.tile(np.repeat(strikes, 2), len(expiries))
        calls = np.tile(np.array([True, False]), len(strikes) * len(expiries))
        return self._price(symbol, day, at, e_list, k, calls), SIM

    def quotes(self, symbol: str, occ_symbols: Sequence[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        from engine.options.occ import parse_occ

        parsed = [parse_occ(o) for o in occ_symbols]
        live = [p for p in parsed if p.expiry > day]
        if not live:
            return empty_chain(), SIM
        return self._price(symbol, day, at, [p.expiry for p in live], np.array([float(p.strike) for p in live]),
                           np.array([p.right == "C" for p in live])), SIM


class LayeredChains:
    """Historical EOD chains where they exist for (symbol, day); the fallback's surface otherwise."""

    def __init__(self, eod: EodChains | None, fallback: ChainSource) -> None:
        self.eod, self.fallback = eod, fallback

    def chain(self, symbol: str, day: date, at: time) -> tuple[pd.DataFrame, str]:
        if self.eod is not None and self.eod.known(symbol, day, at) is not None:
            return self.eod.chain(symbol, day, at)
        return self.fallback.chain(symbol, day, at)

    def quotes(self, symbol: str, occ_symbols: Sequence[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        if self.eod is not None and self.eod.known(symbol, day, at) is not None:
            q, src = self.eod.quotes(symbol, occ_symbols, day, at)
            if len(q) == len(set(occ_symbols)):
                return q, src
        return self.fallback.quotes(symbol, occ_symbols, day, at)
