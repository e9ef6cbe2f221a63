"""The normalised option chain and parsers for the providers' chain shapes.

One row per contract, columns ``CHAIN_COLUMNS`` in that order:

- ``occ_symbol`` in the padded OCC spelling (``SPY   250701C00605000``), ``expiry`` a ``datetime.date``,
  ``dte`` calendar days from the quote's New York date to expiry, ``right`` 'C'/'P';
- ``bid/ask/mid/last`` per share, ``volume``, ``open_interest``;
- ``iv, delta, gamma, theta, vega``: the provider's own numbers (theta per day, vega per vol point),
  NaN when the provider has none;
- ``underlying_price``, ``quote_time`` (tz-aware UTC), ``source``;
- ``shares_per_contract``: the deliverable (100 for a standard contract; an adjusted contract after a
  split or merger, e.g. root ``AAPL1``, delivers something else), NaN when the provider does not say.

A field the provider does not send is NaN (or NaT): never invented.  The only derived value is ``mid``,
(bid + ask) / 2 when the provider sends both sides but no mid.  ``enrich`` adds our own numbers (American
exercise at the symbol's dividend yield, ``engine.options.pricing``) beside the provider's (``calc_*``) and
a ``quote_flag``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.options.occ import format_occ, parse_occ
from engine.options.pricing import Exercise, option_greeks, option_implied_vol_with_reasons

__all__ = [
    "CALC_COLUMNS",
    "CHAIN_COLUMNS",
    "QUOTE_FLAGS",
    "empty_chain",
    "enrich",
    "from_polygon_snapshot",
    "from_tastytrade_market_data",
    "from_tastytrade_nested_chain",
    "quote_flags",
]

CHAIN_COLUMNS = (
    "underlying", "occ_symbol", "expiry", "dte", "strike", "right", "bid", "ask", "mid", "last",
    "volume", "open_interest", "iv", "delta", "gamma", "theta", "vega", "underlying_price",
    "quote_time", "source", "shares_per_contract",
)
CALC_COLUMNS = ("calc_iv", "calc_delta", "calc_gamma", "calc_theta", "calc_vega", "calc_iv_reason", "quote_flag")
QUOTE_FLAGS = ("ok", "crossed", "no_ask", "no_bid", "nonfinite")

_NY = ZoneInfo("America/New_York")
_FLOAT_COLUMNS = ("dte", "strike", "bid", "ask", "mid", "last", "volume", "open_interest", "iv", "delta",
                  "gamma", "theta", "vega", "underlying_price", "shares_per_contract")


def empty_chain() -> pd.DataFrame:
    return _frame([])


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(CHAIN_COLUMNS))
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["quote_time"] = pd.to_datetime(df["quote_time"], utc=True)
    for col in ("underlying", "occ_symbol", "right", "source"):
        df[col] = df[col].astype(object)
    df["expiry"] = df["expiry"].astype(object)
    return df


def _num(value: Any) -> float:
    """A provider number (JSON number or numeric string) as float; NaN when absent or not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _dte(expiry: date, quote_time: pd.Timestamp | None) -> float:
    if quote_time is None or pd.isna(quote_time):
        return math.nan
    return float((expiry - quote_time.tz_convert(_NY).date()).days)


def _mid(bid: float, ask: float, given: float) -> float:
    if np.isfinite(given):
        return given
    if np.isfinite(bid) and np.isfinite(ask):
        return round((bid + ask) / 2.0, 6)
    return math.nan


# --------------------------------------------------------------------------- Polygon / Massive


def _ns_time(value: Any) -> pd.Timestamp | None:
    n = _num(value)
    if not np.isfinite(n) or n <= 0:
        return None
    return pd.Timestamp(int(value), unit="ns", tz="UTC")


def from_polygon_snapshot(results: list[dict] | dict, *, source: str = "polygon") -> pd.DataFrame:
    """Polygon/Massive ``/v3/snapshot/options/{underlying}`` (a list of results) or the single-contract
    snapshot (one result), given as the whole response or its ``results``.

    ``quote_time`` is the last quote's ``last_updated`` (else NaT) and ``dte`` counts from its New York
    date; ``volume`` is the day's volume.
    """
    if isinstance(results, Mapping) and "results" in results:
        results = results["results"]
    if isinstance(results, Mapping):
        results = [results]
    rows = []
    for res in results or []:
        details = res.get("details") or {}
        quote = res.get("last_quote") or {}
        trade = res.get("last_trade") or {}
        day = res.get("day") or {}
        greeks_ = res.get("greeks") or {}
        under = res.get("underlying_asset") or {}
        ticker = details.get("ticker")
        if not ticker:
            raise ValueError(f"polygon snapshot result without details.ticker: {res!r:.200}")
        sym = parse_occ(ticker)
        expiry = date.fromisoformat(details["expiration_date"]) if details.get("expiration_date") else sym.expiry
        kind = details.get("contract_type")
        right = {"call": "C", "put": "P"}.get(kind, sym.right) if kind else sym.right
        strike = _num(details.get("strike_price"))
        if not np.isfinite(strike):
            strike = float(sym.strike)
        qt = _ns_time(quote.get("last_updated"))
        bid, ask = _num(quote.get("bid")), _num(quote.get("ask"))
        rows.append({
            "underlying": under.get("ticker") or sym.root,
            "occ_symbol": format_occ(sym.root, expiry, right, sym.strike),
            "expiry": expiry,
            "dte": _dte(expiry, qt),
            "strike": strike,
            "right": right,
            "bid": bid,
            "ask": ask,
            "mid": _mid(bid, ask, _num(quote.get("midpoint"))),
            "last": _num(trade.get("price")),
            "volume": _num(day.get("volume")),
            "open_interest": _num(res.get("open_interest")),
            "iv": _num(res.get("implied_volatility")),
            "delta": _num(greeks_.get("delta")),
            "gamma": _num(greeks_.get("gamma")),
            "theta": _num(greeks_.get("theta")),
            "vega": _num(greeks_.get("vega")),
            "underlying_price": _num(under.get("price")),
            "quote_time": qt,
            "source": source,
            "shares_per_contract": _num(details.get("shares_per_contract")),
        })
    return _frame(rows)


# --------------------------------------------------------------------------- tastytrade


def _items(doc: Any) -> list[dict]:
    if isinstance(doc, Mapping):
        if "data" in doc and isinstance(doc["data"], Mapping):
            doc = doc["data"]
        doc = doc.get("items", [])
    return list(doc or [])


def from_tastytrade_market_data(doc: Mapping | Iterable[dict], *,
                                underlying_price: float | Mapping[str, float] | None = None,
                                source: str = "tastytrade") -> pd.DataFrame:
    """tastytrade ``/market-data/by-type`` (whole response, its ``data``, or the items list).

    Only ``Equity Option`` items become rows.  ``underlying_price`` comes from the argument (one number
    or a mapping by underlying) or else from an ``Equity`` item for the same symbol in the same response
    (its mid, else mark, else last); otherwise NaN.
    """
    items = _items(doc)
    spots: dict[str, float] = {}
    for it in items:
        if it.get("instrument-type") == "Equity":
            for key in ("mid", "mark", "last"):
                v = _num(it.get(key))
                if np.isfinite(v):
                    spots[it.get("symbol")] = v
                    break
    rows = []
    for it in items:
        if it.get("instrument-type") != "Equity Option":
            continue
        sym = parse_occ(it["symbol"])
        qt = pd.Timestamp(it["updated-at"]).tz_convert("UTC") if it.get("updated-at") else None
        if isinstance(underlying_price, Mapping):
            spot = _num(underlying_price.get(sym.root))
        elif underlying_price is not None:
            spot = _num(underlying_price)
        else:
            spot = spots.get(sym.root, math.nan)
        bid, ask = _num(it.get("bid")), _num(it.get("ask"))
        rows.append({
            "underlying": sym.root,
            "occ_symbol": sym.occ(),
            "expiry": sym.expiry,
            "dte": _dte(sym.expiry, qt),
            "strike": float(sym.strike),
            "right": sym.right,
            "bid": bid,
            "ask": ask,
            "mid": _mid(bid, ask, _num(it.get("mid"))),
            "last": _num(it.get("last")),
            "volume": _num(it.get("volume")),
            "open_interest": _num(it.get("open-interest")),
            "iv": _num(it.get("volatility")),
            "delta": _num(it.get("delta")),
            "gamma": _num(it.get("gamma")),
            "theta": _num(it.get("theta")),
            "vega": _num(it.get("vega")),
            "underlying_price": spot,
            "quote_time": qt,
            "source": source,
        })
    return _frame(rows)


def from_tastytrade_nested_chain(doc: Mapping | Iterable[dict], *, source: str = "tastytrade") -> pd.DataFrame:
    """tastytrade ``/option-chains/{symbol}/nested``: the contracts, without quotes (all quote fields NaN).

    ``dte`` is the chain's own ``days-to-expiration``; ``quote_time`` is NaT.
    """
    rows = []
    for chain in _items(doc):
        underlying = chain.get("underlying-symbol") or chain.get("root-symbol")
        deliverable = _num(chain.get("shares-per-contract"))
        for exp in chain.get("expirations") or []:
            expiry = date.fromisoformat(exp["expiration-date"])
            dte = _num(exp.get("days-to-expiration"))
            for strike in exp.get("strikes") or []:
                for key, right in (("call", "C"), ("put", "P")):
                    symbol = strike.get(key)
                    if not symbol:
                        continue
                    sym = parse_occ(symbol)
                    if sym.expiry != expiry or sym.right != right:
                        raise ValueError(f"{symbol!r} disagrees with its chain entry {exp['expiration-date']} {key}")
                    rows.append({
                        "underlying": underlying or sym.root,
                        "occ_symbol": sym.occ(),
                        "expiry": expiry,
                        "dte": dte,
                        "strike": _num(strike.get("strike-price")) if strike.get("strike-price") else float(sym.strike),
                        "right": right,
                        **dict.fromkeys(("bid", "ask", "mid", "last", "volume", "open_interest", "iv", "delta",
                                         "gamma", "theta", "vega", "underlying_price"), math.nan),
                        "quote_time": None,
                        "source": source,
                        "shares_per_contract": deliverable,
                    })
    return _frame(rows)


# --------------------------------------------------------------------------- enrichment


def quote_flags(bid, ask) -> np.ndarray:
    """'nonfinite' (bid or ask missing/inf), 'no_ask' (ask <= 0), 'no_bid' (bid <= 0), 'crossed'
    (bid > ask) or 'ok', checked in that order; a locked quote (bid == ask) is 'ok'."""
    bid = np.asarray(bid, dtype=np.float64)
    ask = np.asarray(ask, dtype=np.float64)
    return np.select(
        [~(np.isfinite(bid) & np.isfinite(ask)), ask <= 0, bid <= 0, bid > ask],
        ["nonfinite", "no_ask", "no_bid", "crossed"],
        "ok",
    ).astype(object)


def _deliverable_share(chain: pd.DataFrame) -> np.ndarray:
    """Shares per contract / 100 per row: 1 for a standard contract or a chain that does not say."""
    if "shares_per_contract" not in chain:
        return np.ones(len(chain))
    d = pd.to_numeric(chain["shares_per_contract"], errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(d) & (d > 0), d / 100.0, 1.0)


def enrich(chain: pd.DataFrame, *, r: float | np.ndarray | pd.Series, q: float | np.ndarray | pd.Series,
           price: str = "mid", exercise: Exercise = "american") -> pd.DataFrame:
    """A copy of ``chain`` with our IV and greeks beside the provider's.

    Adds ``calc_iv`` (from ``price``, the mid by default, with T = dte / 365, the given continuous
    ``r`` and the underlying's dividend yield ``q``: required, since q = 0 misprices every payer's
    chain), ``calc_delta/gamma/theta/vega`` at that IV (theta per day, vega per vol point, per share),
    ``calc_iv_reason`` (``pricing.IV_REASONS``, or 'quote_<flag>') and ``quote_flag``.  ``exercise``
    'american' (US equity options) uses the American model where early exercise matters (puts, calls
    with q > 0) and BSM where it is exact; 'european' is BSM throughout.  Flagged quotes get NaN calc_*.
    """
    out = chain.copy()
    flags = quote_flags(out["bid"], out["ask"])
    px = pd.to_numeric(out[price], errors="coerce").to_numpy(dtype=np.float64)
    spot = pd.to_numeric(out["underlying_price"], errors="coerce").to_numpy(dtype=np.float64)
    strike = pd.to_numeric(out["strike"], errors="coerce").to_numpy(dtype=np.float64)
    t = pd.to_numeric(out["dte"], errors="coerce").to_numpy(dtype=np.float64) / 365.0
    is_call = (out["right"] == "C").to_numpy()
    r_ = np.asarray(r, dtype=np.float64)
    q_ = np.asarray(q, dtype=np.float64)
    # An OCC-adjusted contract (d shares for strike x 100) is worth d/100 standard options struck at
    # strike x 100 / d: its IV is that option's, its greeks per quote point d/100 times that option's.
    share = _deliverable_share(out)
    px, strike = px / share, strike / share
    iv, why = option_implied_vol_with_reasons(px, spot, strike, t, r_, q_, is_call, exercise=exercise)
    iv = np.atleast_1d(iv)
    why = np.atleast_1d(why).astype(object)
    bad_quote = flags != "ok"
    iv = np.where(bad_quote, np.nan, iv)
    why = np.where(bad_quote, "quote_" + flags.astype(str), why).astype(object)
    g = option_greeks(spot, strike, t, r_, q_, iv, is_call, exercise=exercise, with_rho=False)
    out["calc_iv"] = iv
    out["calc_delta"] = g.delta * share
    out["calc_gamma"] = g.gamma * share
    out["calc_theta"] = g.theta * share
    out["calc_vega"] = g.vega * share
    out["calc_iv_reason"] = why
    out["quote_flag"] = flags
    return out
