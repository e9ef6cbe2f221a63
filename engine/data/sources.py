"""Choose the configured market-data source and keep the bar store filled from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np

from engine.config import DataSource, Settings
from engine.data import calendar
from engine.data.barstore import BarStore, panel_to_table
from engine.data.ports import MarketData


def get_market_data(settings: Settings) -> MarketData:
    if settings.data_source is DataSource.sim:
        from engine.data.sim import SimMarket

        return SimMarket(seed=settings.sim_seed, n_symbols=settings.sim_symbols)
    if settings.data_source is DataSource.massive:
        from engine.data.massive import MassiveMarketData

        return MassiveMarketData.from_settings(settings)
    from engine.data.csvsource import CsvMarketData

    return CsvMarketData(settings)


def bar_store(settings: Settings) -> BarStore:
    return BarStore(settings.bar_store_dir, settings.data_source.value)


def fill_bar_store(
    market: MarketData,
    store: BarStore,
    start: date,
    end: date,
    chunk_sessions: int = 60,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the sessions in [start, end] that the store lacks, in chunks; returns sessions written.

    Sessions already stored are never fetched again, so an interrupted fill resumes where it stopped.
    """
    wanted = calendar.sessions(start, end)
    have = store.stored_dates(start, end)
    missing = np.setdiff1d(wanted, have)
    done = 0
    for i in range(0, len(missing), chunk_sessions):
        chunk = missing[i : i + chunk_sessions]
        first, last = chunk[0].astype(object), chunk[-1].astype(object)
        panel = market.daily_bars(first, last)
        keep = np.isin(panel.dates, chunk)
        table = panel_to_table(panel)
        table = table.filter(np.isin(table["date"].to_numpy().astype("datetime64[D]"), panel.dates[keep]))
        store.write(table)
        done += len(chunk)
        if progress:
            progress(done, len(missing))
    return done


def settle_sessions(market: MarketData) -> int:
    """Re-fetch the sessions a source stored before they were final (Massive revises volume, VWAP and
    trade counts after the close); 0 for sources whose bars never change."""
    settle = getattr(market, "settle_sessions", None)
    return int(settle()) if settle is not None else 0
