"""The trading day on PostgreSQL: the same steps, SQL aggregates and JSON columns as on SQLite."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.execution.reconcile import reconcile
from engine.models import AccountSnapshot, Order
from engine.replay import run_days


@pytest.mark.postgres
def test_two_trading_days_on_postgres(postgres_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=600, database_url=postgres_url)
    initialise(settings, sessions=300, progress=False)
    start = date(2026, 9, 14)
    clock = ReplayClock(datetime.combine(start, time(8, 0), NEW_YORK))
    ctx = build_context(settings, clock=clock)
    run_days(ctx, clock, start, 2, every_minutes=60)
    with Session(ctx.db) as s:
        orders = s.exec(select(Order)).all()
        snap = s.exec(select(AccountSnapshot).order_by(AccountSnapshot.id.desc())).first()
    assert orders and any(o.status == "filled" for o in orders)
    assert snap is not None and Decimal(snap.detail["broker_equity"]) == snap.equity
    assert reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), ctx.now).differences == []
    ctx.db.dispose()
