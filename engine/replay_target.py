"""Where a replay runs: never on a live book.

With the default simulated market and paper broker a replay is the demo and shares the database. With a
live data source (Massive, whose "now" prices are today's) or a real broker configured, a replay runs on the
simulated market and a paper broker, into its own data folder and database (``<data_dir>/replay``) that the
console can be pointed at with ``QM_DATA_DIR``; of the Discord webhooks only the playground is kept (a
replay's messages go there, marked as replayed, or nowhere).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine.clock import NEW_YORK
from engine.config import BrokerName, DataSource, Settings, TradingMode
from engine.data import calendar

REPLAY_DIR = "replay"


def touches_live(settings: Settings) -> bool:
    return (settings.data_source is not DataSource.sim or settings.broker is not BrokerName.paper
            or settings.trading_mode is TradingMode.live)


def replay_settings(settings: Settings) -> tuple[Settings, Path | None]:
    """Settings a replay may use, and the separate data folder when it had to move off the live one."""
    if not touches_live(settings):
        return settings, None
    folder = settings.data_dir / REPLAY_DIR
    quiet = {f"discord_webhook_{c}": None for c in ("signals", "portfolio", "morning_brew", "system_status")}
    isolated = settings.model_copy(update={
        "data_source": DataSource.sim, "broker": BrokerName.paper, "trading_mode": TradingMode.paper,
        "live_trading_confirmed": False, "data_dir": folder, "database_url": None, **quiet,
    })
    return isolated, folder


def auto_replays(now: datetime) -> bool:
    """``--auto`` replays only while the market is closed (README): during a session it trades live at once."""
    times = calendar.session_times(now.astimezone(NEW_YORK).date())
    return times is None or not (times[0] <= now < times[1])
