"""Reference data on Massive: the ticker universe and listed option contracts."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from engine.data.massive_http import SOURCE, MassiveHttp
from engine.data.massive_parse import universe_frame

UNIVERSE_TTL = 24 * 3600.0


class MassiveReference(MassiveHttp):
    """Universe and contracts (cached reference data)."""


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

    def option_contracts(self, underlying: str | None = None, as_of: date | None = None) -> pd.DataFrame:
        """Listed option contracts (reference data, every page of ``list_options_contracts``)."""
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"option contracts {underlying or 'all'}",
            lambda: self._rest.list_options_contracts(
                underlying_ticker=underlying, as_of=as_of.isoformat() if as_of else None, limit=1000, raw=True
            ),
        ):
            results.extend(page)
        columns = [
            "ticker", "underlying_ticker", "contract_type", "expiration_date", "strike_price",
            "shares_per_contract", "exercise_style", "primary_exchange",
        ]
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in results], columns=columns)
        frame["expiration_date"] = pd.to_datetime(frame["expiration_date"]).dt.date
        return frame

