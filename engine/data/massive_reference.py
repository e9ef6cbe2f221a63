"""Reference data on Massive: the ticker universe, listed option contracts, sectors and dividends."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from engine.data.massive_http import SOURCE, MassiveHttp
from engine.data.massive_parse import trailing_cash_dividends, universe_frame
from engine.data.ratelimit import MalformedResponse

UNIVERSE_TTL = 24 * 3600.0
DIVIDEND_TTL = 24 * 3600.0


class MassiveReference(MassiveHttp):
    """Universe, contracts, sectors and dividends (cached reference data)."""

    _dividend_memo: dict[tuple[str, str, str, str], float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dividend_memo = {}


    def universe(self) -> pd.DataFrame:
        """All active US stock tickers (every page of ``list_tickers``), cached for a day."""
        key = (SOURCE, "universe", self.base)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        else:
            self._count_uncached_miss()
        results: list[dict[str, Any]] = []
        for page in self._pages(
            "ticker universe",
            lambda: self._rest.list_tickers(market="stocks", active=True, limit=1000, raw=True),
        ):
            results.extend(page)
        frame = universe_frame(results)
        if self.cache is not None:
            self.cache.set(key, frame, expire=UNIVERSE_TTL, tag="reference")
        return frame

    # --- dividends ----------------------------------------------------------------------------------

    def dividend_yield(self, symbol: str, as_of: date) -> float:
        """Continuous annualised dividend yield: q = ln(1 + D / S), D the cash dividends that went ex in
        the 12 months up to ``as_of`` (``v3/reference/dividends``), S the last stored close on or before
        ``as_of``. 0.0 when there were none (or no close to divide by). Cached a day per (symbol, date).

        Regular cash dividends only (type CD; LT/ST capital-gain distributions of funds count too):
        a special dividend (SC) does not recur, so it would overstate the forward yield."""
        key = (SOURCE, "dividend_yield", symbol, as_of.isoformat())
        with self._lock:
            memo = self._dividend_memo.get(key)
        if memo is not None:
            return memo
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                with self._lock:
                    self._dividend_memo[key] = float(cached)
                return float(cached)
        else:
            self._count_uncached_miss()
        start = as_of - timedelta(days=365)
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"dividends {symbol}",
            lambda: self._rest.list_dividends(
                ticker=symbol, ex_dividend_date_gte=start.isoformat(), ex_dividend_date_lte=as_of.isoformat(),
                limit=1000, raw=True,
            ),
        ):
            results.extend(page)
        cash = trailing_cash_dividends(results, symbol, start, as_of)
        close = self._last_close(symbol, as_of)
        q = math.log1p(cash / close) if cash > 0 and close is not None and close > 0 else 0.0
        with self._lock:
            self._dividend_memo[key] = q
        if self.cache is not None:
            self.cache.set(key, q, expire=DIVIDEND_TTL, tag="reference")
        return q

    def _last_close(self, symbol: str, as_of: date) -> float | None:
        store = self.store
        if store is None:
            return None
        panel = store.load(as_of - timedelta(days=14), as_of, [symbol], dtype=np.float64)
        closes = panel.close[:, 0] if panel.n_symbols else np.array([])
        closes = closes[np.isfinite(closes)]
        return float(closes[-1]) if closes.size else None

    # --- ticker details (sectors) -------------------------------------------------------------------

    def ticker_details(self, symbol: str) -> dict[str, Any]:
        """``v3/reference/tickers/{symbol}`` results (one request; the caller keeps what it needs)."""
        body = self._call(f"ticker details {symbol}", lambda: self._rest.get_ticker_details(symbol, raw=True))
        results = body.get("results")
        if not isinstance(results, dict):
            raise MalformedResponse(f"ticker details {symbol}: 'results' is not an object")
        return results
