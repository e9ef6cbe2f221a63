"""The instrument universe: kept in the instruments table, filtered for what the strategy may trade."""

from __future__ import annotations

import pandas as pd
from sqlmodel import Session, select

from engine.models import Instrument, utcnow

# Types the strategy must not trade (kept in the table, marked not tradable).
UNTRADABLE_TYPES = frozenset({"WARRANT", "RIGHT", "UNIT", "PFD", "SP", "OTC", "ADRW", "ADRR", "ADRU", "BOND"})


def sync_universe(session: Session, frame: pd.DataFrame, source: str) -> int:
    """Upsert every row of a universe frame (UNIVERSE_COLUMNS) into the instruments table."""
    existing = {i.symbol: i for i in session.exec(select(Instrument)).all()}
    now = utcnow()
    for row in frame.itertuples(index=False):
        inst = existing.get(row.symbol) or Instrument(symbol=row.symbol)
        inst.name = str(row.name or "")
        if row.sector or not inst.sector:  # a listing without sectors (Massive) keeps the SIC-derived one
            inst.sector = str(row.sector or "")
        inst.type = str(row.type or "CS")
        inst.exchange = str(row.exchange or "")
        inst.currency = str(row.currency or "USD")
        inst.active = bool(row.active)
        inst.tradable = bool(row.tradable) and inst.type.upper() not in UNTRADABLE_TYPES
        inst.list_date = None if pd.isna(row.list_date) else pd.Timestamp(row.list_date).date()
        inst.source = source
        inst.updated_at = now
        session.add(inst)
    return len(frame)


def tradable_symbols(session: Session) -> list[str]:
    rows = session.exec(
        select(Instrument.symbol).where(Instrument.active, Instrument.tradable).order_by(Instrument.symbol)
    )
    return list(rows.all())


def sectors(session: Session) -> dict[str, str]:
    return dict(session.exec(select(Instrument.symbol, Instrument.sector)).all())
