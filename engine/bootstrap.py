"""First start: migrate the database and seed the configured market data (universe and daily bars)."""

from __future__ import annotations

import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

from engine.config import Settings
from engine.data import calendar
from engine.data.sources import bar_store, fill_bar_store, get_market_data
from engine.data.universe import sync_universe
from engine.db import get_engine, migrate, session_scope
from engine.progress import ProgressBar

NEW_YORK = ZoneInfo("America/New_York")


def last_completed_session(now: datetime | None = None) -> date:
    """The newest session whose daily bar is final now (or at ``now``)."""
    return calendar.last_completed_session(now or datetime.now(NEW_YORK))


def initialise(settings: Settings, sessions: int = 420, progress: bool = True) -> dict[str, object]:
    started = time.perf_counter()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    market = get_market_data(settings)
    universe = market.universe()
    with session_scope(get_engine(settings.db_url)) as session:
        n_instruments = sync_universe(session, universe, market.name)
    end = last_completed_session()
    start = calendar.sessions_back(end, sessions)[0].astype(object)
    bar = ProgressBar("seeding daily bars", sessions) if progress else None
    written = fill_bar_store(market, bar_store(settings), start, end, progress=bar)
    return {
        "database": settings.db_url.split("://")[0],
        "instruments": n_instruments,
        "bars_from": start,
        "bars_to": end,
        "sessions_written": written,
        "seconds": round(time.perf_counter() - started, 2),
    }
