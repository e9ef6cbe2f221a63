"""Your own daily bars as the data source (`QM_DATA_SOURCE=csv`), imported with `python -m engine import-bars`.

Such files carry daily bars only: the scan, the charts and daily position rules run on them; quotes are
the last close, and there is no option chain (candidates report "no option chain").  They carry no
dividends either: ``dividend_yield`` is 0.0 for every symbol, meaning "unknown, treated as none".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd

from engine.config import Settings
from engine.data.barstore import BarStore
from engine.data.panel import Panel
from engine.data.ports import UNIVERSE_COLUMNS
from engine.options.chain import empty_chain


class CsvMarketData:
    name = "csv"

    def __init__(self, settings: Settings) -> None:
        self.store = BarStore(settings.bar_store_dir, "csv")

    def universe(self) -> pd.DataFrame:
        symbols = self.store.load(dtype=np.float32).symbols
        return pd.DataFrame({
            "symbol": symbols, "name": symbols, "sector": "", "type": "CS", "exchange": "", "currency": "USD",
            "active": True, "list_date": None, "tradable": True,
        }, columns=list(UNIVERSE_COLUMNS))

    def daily_bars(self, start: date, end: date, symbols: Sequence[str] | None = None) -> Panel:
        return self.store.load(start, end, symbols=symbols, dtype=np.float64)

    def quotes(self, symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        panel = self.store.load(end=at.date(), symbols=list(symbols), dtype=np.float64)
        rows = []
        for sym in symbols:
            closes = panel.frame(sym)["close"].dropna() if sym in set(panel.symbols) else pd.Series(dtype=float)
            last = float(closes.iloc[-1]) if len(closes) else float("nan")
            rows.append({"symbol": sym, "bid": last, "ask": last, "last": last, "time": at})
        return pd.DataFrame(rows)

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        return empty_chain()

    def dividend_yield(self, symbol: str, as_of: date) -> float:
        """0.0: imported bar files carry no dividend data, so the yield is unknown and treated as none.

        Harmless today (this source has no option chains to price); a chain source added here must
        bring its own yields rather than rely on this."""
        return 0.0
