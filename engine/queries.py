"""Read-only queries the console and reports use. No trading logic lives here, only reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.data.sources import bar_store
from engine.models import Heartbeat, Instrument

INDEX_PROXIES = ("SPY", "QQQ", "IWM", "DIA")


def _aware(ts: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC.
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def heartbeats(engine: Engine, now: datetime | None = None) -> pd.DataFrame:
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        rows = session.exec(select(Heartbeat)).all()
    return pd.DataFrame(
        [
            {
                "component": r.component,
                "instance": r.instance_id,
                "last_beat": _aware(r.at),
                "age_seconds": (now - _aware(r.at)).total_seconds(),
                **{k: v for k, v in r.info.items() if isinstance(v, str | int | float)},
            }
            for r in rows
        ]
    )


def universe_summary(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(Instrument)).one()
        tradable = session.exec(
            select(func.count()).select_from(Instrument).where(Instrument.tradable, Instrument.active)
        ).one()
        by_sector = dict(
            session.exec(select(Instrument.sector, func.count()).group_by(Instrument.sector)).all()
        )
    return {"instruments": int(total), "tradable": int(tradable), "by_sector": by_sector}


def bar_coverage(settings: Settings) -> dict[str, Any]:
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) == 0:
        return {"sessions": 0, "first": None, "last": None, "size_mb": 0.0, "source": store.source}
    return {
        "sessions": len(dates),
        "first": dates[0].astype(object),
        "last": dates[-1].astype(object),
        "size_mb": store.size_bytes() / 1e6,
        "source": store.source,
    }


def index_proxies(settings: Settings, lookback_days: int = 30) -> pd.DataFrame:
    """Last close and change for SPY/QQQ/IWM/DIA from the bar store (missing proxies are left out)."""
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) < 2:
        return pd.DataFrame(columns=["symbol", "date", "close", "change_pct"])
    start = (dates[-1] - np.timedelta64(lookback_days, "D")).astype(object)
    panel = store.load(start, dates[-1].astype(object), dtype=np.float64)
    rows = []
    for symbol in INDEX_PROXIES:
        if symbol not in set(panel.symbols):
            continue
        bars = panel.frame(symbol)["close"].dropna()
        if len(bars) >= 2:
            rows.append(
                {
                    "symbol": symbol,
                    "date": bars.index[-1].date(),
                    "close": float(bars.iloc[-1]),
                    "change_pct": float(100 * (bars.iloc[-1] / bars.iloc[-2] - 1)),
                }
            )
    return pd.DataFrame(rows)


def scheduler_alive(engine: Engine, max_age: timedelta = timedelta(minutes=2)) -> bool:
    beats = heartbeats(engine)
    if beats.empty or "scheduler" not in set(beats["component"]):
        return False
    age = beats.loc[beats["component"] == "scheduler", "age_seconds"].iloc[0]
    return bool(age <= max_age.total_seconds())
