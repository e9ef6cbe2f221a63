"""Your own daily bars as the data source (`QM_DATA_SOURCE=csv`), imported with `python -m engine import-bars`.

Such files carry daily bars only: the scan, the charts and daily position rules run on them, and there is
no option chain (candidates report "no option chain"). A quote at time ``at`` uses only what was known then:
during a session whose bar is stored, that day's open (its close is not known until the close); after the
close, the close; before the open or on a day without a bar, the last close. Bid and ask sit a modelled
spread (QUOTE_SPREAD_FRAC of the price) around it, never bid = ask.
They carry no dividends either: ``dividend_yield`` is 0.0 for every symbol, meaning "unknown, treated as none".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd

from engine.clock import NEW_YORK
from engine.config import Settings
from engine.data import calendar
from engine.data.barstore import BarStore
from engine.data.panel import Panel
from engine.data.ports import UNIVERSE_COLUMNS
from engine.options.chain import empty_chain

QUOTE_SPREAD_FRAC = 0.001  # 10 bp, a liquid US stock's typical quoted spread; only half of it is slippage


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
        day = at.astimezone(NEW_YORK).date() if at.tzinfo else at.date()
        times = calendar.session_times(day)
        panel = self.store.load(end=day, symbols=list(symbols), dtype=np.float64)
        known = set(panel.symbols)
        rows = []
        for sym in symbols:
            frame = panel.frame(sym)[["open", "close"]].dropna() if sym in known else pd.DataFrame()
            last = float("nan")
            if len(frame):
                bar_day = pd.Timestamp(frame.index[-1]).date()
                if bar_day < day or times is None:
                    last = float(frame["close"].iloc[-1])
                elif at < times[0]:  # today's bar is stored, but the session has not opened yet
                    last = float(frame["close"].iloc[-2]) if len(frame) > 1 else float("nan")
                elif at < times[1]:  # during the session only the open is known
                    last = float(frame["open"].iloc[-1])
                else:
                    last = float(frame["close"].iloc[-1])
            half = last * QUOTE_SPREAD_FRAC / 2
            rows.append({"symbol": sym, "bid": last - half, "ask": last + half, "last": last, "time": at})
        return pd.DataFrame(rows)

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        return empty_chain()

    def dividend_yield(self, symbol: str, as_of: date) -> float:
        """0.0: imported bar files carry no dividend data, so the yield is unknown and treated as none.

        Harmless today (this source has no option chains to price); a chain source added here must
        bring its own yields rather than rely on this."""
        return 0.0
