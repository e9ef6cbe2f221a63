"""A whole paper day on the sandbox: the engine's scheduler steps trade through the tastytrade adapter
against the local API (every order dry-run first, placed once, filled per leg with fees), and at the end
the engine's books, the broker's and the synced transactions agree to the cent."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import EngineContext
from engine.data.sources import get_market_data
from engine.db import get_engine
from engine.execution.reconcile import reconcile
from engine.models import BrokerSyncState, Fill, Order, Transaction
from engine.replay import run_days
from engine.runtime import nightly
from tests.execution.tastytrade_fake import FakeTastytrade
from tests.execution.test_tastytrade_adapter import make

DAY = date(2026, 9, 14)


def test_a_paper_day_through_the_tastytrade_adapter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = load_settings(data_dir=tmp_path / "var", sim_symbols=1000)
    initialise(base, sessions=330, progress=False)
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=1000, broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"})
    clock = ReplayClock(datetime.combine(DAY, time(8, 0), NEW_YORK))
    fake = FakeTastytrade(clock=clock.now, cash=Decimal(str(settings.starting_cash)))
    broker = make(fake)
    broker._now = clock.now  # the adapter's "today" follows the replay clock
    ctx = EngineContext(settings, get_engine(settings.db_url), get_market_data(settings), broker, clock)
    try:
        run_days(ctx, clock, DAY, 1, every_minutes=30)
        nightly(ctx)  # the scheduler's nightly job: data upkeep, then the broker sync
        run = reconcile(ctx.db, broker, Decimal(str(settings.starting_cash)), ctx.now)
    finally:
        broker.close()
    assert fake.orders, "the day placed no order"
    external_ids = [o["external-identifier"] for o in fake.orders.values()]
    assert len(external_ids) == len(set(external_ids))  # never placed twice
    posts = [r for r in fake.requests if r.method == "POST"]
    for cid in external_ids:  # every placement came after a dry run of the same order
        first_place = next(i for i, r in enumerate(posts) if r.url.path.endswith("/orders")
                           and cid.encode() in r.content)
        assert any(r.url.path.endswith("/dry-run") and cid.encode() in r.content for r in posts[:first_place])
    with Session(ctx.db) as s:
        orders = {o.client_order_id: o for o in s.exec(select(Order)).all()}
        fills = s.exec(select(Fill)).all()
        txns = s.exec(select(Transaction).where(Transaction.broker == "tastytrade")).all()
        state = s.exec(select(BrokerSyncState)).one()
    assert set(external_ids) <= set(orders)
    for o in fake.orders.values():
        assert orders[o["external-identifier"]].status == "filled"
    assert {f.broker_fill_id for f in fills} == {f"tastytrade:{leg_fill['fill-id']}" for o in fake.orders.values()
                                                for leg in o["legs"] for leg_fill in leg["fills"]}
    assert sum(f.commission + f.fees for f in fills) == sum(Decimal(t["commission"]) for t in fake.transactions)
    assert run.differences == []  # positions per instrument
    # reconciliation compares cash only on the paper account; here the engine owns the whole sandbox
    # account, so its books must still match the broker's cash to the cent
    from engine.execution.reconcile import engine_cash

    with Session(ctx.db) as s:
        assert engine_cash(s, Decimal(str(settings.starting_cash))) == fake.cash
    # the nightly job synced the account: every trade transaction stored once
    assert {t.broker_txn_id for t in txns} == {str(t["id"]) for t in fake.transactions}
    assert state.environment == "sandbox" and state.differences == []
