"""Pure parsers of Massive (Polygon.io) responses into our shapes; tested on the recorded responses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from engine.data.barstore import SCHEMA
from engine.data.ports import UNIVERSE_COLUMNS
from engine.data.ratelimit import MalformedResponse

NEW_YORK = ZoneInfo("America/New_York")

# Ticker types (v3/reference/tickers/types) the strategy may trade; every other type (warrants, rights,
# units, preferreds, bonds, structured products, ADR warrants/rights, funds, baskets, liquidating trusts)
# and every OTC listing is kept in the universe but marked not tradable.
TRADABLE_TYPES = frozenset({"CS", "ETF", "ETN", "ETV", "ETS", "ADRC", "OS", "GDR", "NYRS"})


def grouped_to_table(body: dict[str, Any], day: date) -> pa.Table:
    """A grouped-daily response as bar-store rows for ``day`` (the requested session).

    The row date is the requested session, not the ``t`` field: ``t`` is the end of the aggregate window
    and recorded responses mix days. Rows without a ticker or a close are dropped; a ticker listed twice
    keeps its last row.
    """
    if not isinstance(body, dict):
        raise MalformedResponse(f"grouped daily bars {day}: expected a JSON object, got {type(body).__name__}")
    results = body.get("results") or []
    if not isinstance(results, list):
        raise MalformedResponse(f"grouped daily bars {day}: 'results' is not a list")
    if not results:
        return SCHEMA.empty_table()

    def column(key: str) -> np.ndarray:
        return np.array([_number(r.get(key)) for r in results], dtype=np.float64)

    symbols = [r.get("T") for r in results]
    table = pa.table(
        {
            "date": pa.array(np.full(len(results), np.datetime64(day, "D")), pa.date32()),
            "symbol": pa.array(symbols, pa.string()),
            "open": column("o"),
            "high": column("h"),
            "low": column("l"),
            "close": column("c"),
            "volume": column("v"),
        },
        schema=SCHEMA,
    )
    keep = np.array([isinstance(s, str) and s != "" for s in symbols]) & np.isfinite(table["close"].to_numpy())
    if not keep.all():
        table = table.filter(pa.array(keep))
    if len(set(table["symbol"].to_pylist())) != table.num_rows:
        frame = table.to_pandas().drop_duplicates("symbol", keep="last")
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    return table


def aggs_to_table(results: Iterable[dict[str, Any]], symbol: str) -> pa.Table:
    """Per-ticker daily aggregates (``list_aggs``) as bar-store rows; ``t`` is the New York midnight
    that starts the bar's day."""
    rows = [
        r for r in results if isinstance(r, dict) and r.get("t") is not None and np.isfinite(_number(r.get("c")))
    ]
    if not rows:
        return SCHEMA.empty_table()
    days = (
        pd.to_datetime(pd.Series([r["t"] for r in rows], dtype="int64"), unit="ms", utc=True)
        .dt.tz_convert(NEW_YORK)
        .dt.date
    )
    frame = pd.DataFrame(
        {
            "date": days,
            "symbol": symbol,
            **{name: [_number(r.get(key)) for r in rows] for name, key in _OHLCV.items()},
        }
    ).drop_duplicates("date", keep="last")
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


_OHLCV = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def universe_frame(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """``v3/reference/tickers`` results as a universe frame (UNIVERSE_COLUMNS)."""
    rows = []
    for r in results:
        symbol = r.get("ticker")
        if not symbol:
            continue
        market = str(r.get("market") or "stocks").lower()
        kind = str(r.get("type") or ("OTC" if market == "otc" else "")).upper()
        rows.append(
            {
                "symbol": symbol,
                "name": r.get("name") or "",
                "sector": "",  # not in the tickers listing (ticker details' SIC code would need one call per symbol)
                "type": kind,
                "exchange": r.get("primary_exchange") or "",
                "currency": str(r.get("currency_name") or "usd").upper(),
                "active": bool(r.get("active", True)),
                "list_date": pd.to_datetime(r.get("list_date"), errors="coerce") if r.get("list_date") else pd.NaT,
                "tradable": kind in TRADABLE_TYPES and market != "otc",
            }
        )
    frame = pd.DataFrame(rows, columns=list(UNIVERSE_COLUMNS))
    frame["list_date"] = pd.to_datetime(frame["list_date"])
    frame["active"] = frame["active"].astype(bool)
    frame["tradable"] = frame["tradable"].astype(bool)
    return frame.drop_duplicates("symbol", keep="first").reset_index(drop=True)


def snapshot_quotes(tickers: Iterable[dict[str, Any]], symbols: Sequence[str]) -> pd.DataFrame:
    """Whole-market snapshot rows as quotes for ``symbols`` (request order; NaN where unknown).

    bid/ask from ``lastQuote`` (p = bid, P = ask; 0 means no quote), last from ``lastTrade`` (falling back
    to the minute bar, the day bar, the previous close), time = the newer of the quote and the trade.
    """
    by_symbol = {t.get("ticker"): t for t in tickers if isinstance(t, dict)}
    rows = []
    for sym in symbols:
        snap = by_symbol.get(sym)
        if snap is None:
            rows.append((sym, np.nan, np.nan, np.nan, pd.NaT))
            continue
        quote = snap.get("lastQuote") or {}
        trade = snap.get("lastTrade") or {}
        bid, ask = _positive(quote.get("p")), _positive(quote.get("P"))
        last = _positive(trade.get("p"))
        for fallback in ("min", "day", "prevDay"):
            if last != last:
                last = _positive((snap.get(fallback) or {}).get("c"))
        stamps = [s for s in (quote.get("t"), trade.get("t"), snap.get("updated")) if isinstance(s, int) and s > 0]
        when = pd.Timestamp(max(stamps[:2] or stamps), unit="ns", tz="UTC") if stamps else pd.NaT
        rows.append((sym, bid, ask, last, when))
    frame = pd.DataFrame(rows, columns=["symbol", "bid", "ask", "last", "time"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _positive(value: Any) -> float:
    number = _number(value)
    return number if number > 0 else float("nan")


def universal_option_results(page: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Universal-snapshot (``/v3/snapshot``) option entries in the chain snapshot's shape: ``ticker``
    moves into ``details`` and the ``session`` volume becomes the ``day`` volume; error entries (unknown
    tickers) and other asset types are dropped."""
    out = []
    for r in page:
        if not isinstance(r, dict) or r.get("error") or r.get("type") not in (None, "options"):
            continue
        ticker = r.get("ticker")
        if not isinstance(ticker, str) or not ticker.startswith("O:"):
            continue
        session = r.get("session") or {}
        out.append({**r, "details": {**(r.get("details") or {}), "ticker": ticker},
                    "day": r.get("day") or {"volume": session.get("volume")}})
    return out


CASH_DIVIDEND_TYPES = frozenset({"CD", "LT", "ST"})  # regular cash, fund capital-gain distributions


def trailing_cash_dividends(results: Iterable[dict[str, Any]], symbol: str, start: date, end: date) -> float:
    """Sum of ``cash_amount`` per share of ``symbol``'s recurring cash dividends that went ex in
    [start, end] (``v3/reference/dividends`` results; specials and non-USD amounts are left out)."""
    total = 0.0
    seen: set[tuple[str, float]] = set()
    for r in results:
        if not isinstance(r, dict) or r.get("ticker") != symbol:
            continue
        if str(r.get("dividend_type") or "CD").upper() not in CASH_DIVIDEND_TYPES:
            continue
        if str(r.get("currency") or "USD").upper() != "USD":
            continue
        ex = r.get("ex_dividend_date")
        amount = _number(r.get("cash_amount"))
        if not ex or not np.isfinite(amount) or amount <= 0:
            continue
        day = date.fromisoformat(str(ex))
        if start <= day <= end and (ex, amount) not in seen:  # a listing repeated across pages counts once
            seen.add((ex, amount))
            total += amount
    return total
