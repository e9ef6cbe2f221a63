"""Reads for the Broker and Transactions pages and the page header, broker-neutral (whatever broker the
settings name; the data come from the last sync stored in ``BrokerSyncState`` and the shared
``Transaction`` table, never from a broker call)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.models import BrokerSyncState, Transaction
from engine.portfolio import sync as ps

TRANSACTION_COLUMNS = ["executed_at", "broker", "account", "type", "symbol", "underlying", "quantity", "price",
                       "amount", "fees", "currency", "broker_txn_id"]


def environment(settings: Settings) -> str:
    """paper | sandbox | production: which money the engine trades."""
    if settings.broker.value == "paper":
        return "paper"
    if settings.broker.value == "tastytrade":
        return "sandbox" if settings.tastytrade.sandbox else "production"
    return "live" if settings.trading_mode.value == "live" else "paper account"


def header(engine: Engine, settings: Settings) -> dict[str, Any]:
    """What every page header shows: broker, environment, account."""
    with Session(engine) as session:
        state = ps.latest_state(session, settings.broker.value)
    account = state.account if state is not None else None
    if account is None and settings.broker.value == "tastytrade":
        account = settings.tastytrade.account_number
    if settings.broker.value == "paper":
        account = "paper"
    env = state.environment if state is not None and state.environment else environment(settings)
    return {"broker": settings.broker.value, "environment": env, "account": account or "not synced yet",
            "trading_mode": settings.trading_mode.value}


def broker_overview(engine: Engine, settings: Settings) -> dict[str, Any]:
    with Session(engine) as session:
        state = ps.latest_state(session, settings.broker.value)
    head = header(engine, settings)
    if state is None:
        return {**head, "synced": False, "last_sync_at": None, "balances": {}, "differences": [],
                "transactions_total": 0}
    return {**head, "synced": True, "last_sync_at": state.last_sync_at,
            "balances": {k: float(v) for k, v in state.balances.items()}, "differences": list(state.differences),
            "transactions_total": state.transactions_total, "last_txn_at": state.last_txn_at}


def positions_side_by_side(engine: Engine, settings: Settings) -> pd.DataFrame:
    """One row per instrument: the broker's quantity (last sync) and the engine's now, with the difference."""
    columns = ["instrument", "underlying", "instrument_type", "broker_quantity", "engine_quantity", "difference",
               "kind", "average_open_price"]
    with Session(engine) as session:
        state = ps.latest_state(session, settings.broker.value)
        ours = ps.engine_instrument_positions(session)
    theirs = [ps._from_row(d) for d in state.positions] if state is not None else []
    by_instrument = {p.instrument: p for p in theirs}
    kinds = {d["instrument"]: d["kind"] for d in ps.differences(theirs, ours)}
    rows = []
    for instrument in sorted(set(by_instrument) | set(ours)):
        p = by_instrument.get(instrument)
        b = p.quantity if p is not None else 0
        e = ours.get(instrument, 0)
        rows.append({"instrument": instrument.strip(), "underlying": p.underlying if p is not None else "",
                     "instrument_type": p.asset.value if p is not None else "", "broker_quantity": b,
                     "engine_quantity": e, "difference": b - e, "kind": kinds.get(instrument, "same"),
                     "average_open_price": float(p.avg_price) if p is not None else None})
    return pd.DataFrame(rows, columns=columns)


def external_by_underlying(engine: Engine, settings: Settings) -> pd.DataFrame:
    """External positions grouped as the adopt action takes them, with the risk they count in the gate."""
    with Session(engine) as session:
        state = ps.latest_state(session, settings.broker.value)
        ours = ps.engine_instrument_positions(session)
        risk = ps.external_risk(session, settings.broker.value)
    theirs = [ps._from_row(d) for d in state.positions] if state is not None else []
    groups: dict[str, list[str]] = {}
    for p in ps.external_positions(theirs, ours):
        groups.setdefault(p.underlying or p.instrument, []).append(f"{p.quantity:+d} {p.instrument.strip()}")
    return pd.DataFrame([{"underlying": u, "legs": ", ".join(legs), "risk": float(risk.get(u, 0))}
                         for u, legs in sorted(groups.items())], columns=["underlying", "legs", "risk"])


def transactions(engine: Engine, start: date | None = None, end: date | None = None, symbol: str | None = None,
                 types: list[str] | None = None, broker: str | None = None, limit: int = 50_000) -> pd.DataFrame:
    """Transactions of every broker (the shared table), newest first, filtered in SQL."""
    query = select(Transaction)
    if start is not None:
        query = query.where(Transaction.executed_at >= datetime.combine(start, time.min))
    if end is not None:
        query = query.where(Transaction.executed_at < datetime.combine(end + timedelta(days=1), time.min))
    if symbol:
        like = f"%{symbol.strip().upper()}%"
        query = query.where((Transaction.symbol.like(like)) | (Transaction.underlying.like(like)))  # type: ignore[union-attr]
    if types:
        query = query.where(Transaction.type.in_(types))  # type: ignore[attr-defined]
    if broker:
        query = query.where(Transaction.broker == broker)
    query = query.order_by(Transaction.executed_at.desc(), Transaction.id.desc()).limit(limit)  # type: ignore[attr-defined]
    with Session(engine) as session:
        rows = session.exec(query).all()
    frame = pd.DataFrame([{c: getattr(r, c) for c in TRANSACTION_COLUMNS} for r in rows], columns=TRANSACTION_COLUMNS)
    for c in ("quantity", "price", "amount", "fees"):
        frame[c] = frame[c].astype(float)
    return frame


def transaction_types(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(set(session.exec(select(Transaction.type)).all()))


def transactions_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def sync_states(engine: Engine) -> list[BrokerSyncState]:
    with Session(engine) as session:
        return list(session.exec(select(BrokerSyncState)).all())
