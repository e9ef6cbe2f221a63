"""A broker that times out, drops connections and refuses at 30%: every order ends in a known state,
nothing is sent twice, and the books agree after reconciliation."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time
from decimal import Decimal

from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.execution.brokers.faulty import FaultInjectingBroker
from engine.execution.reconcile import reconcile
from engine.models import Fill, Order
from engine.replay import run_days


def test_orders_survive_a_faulty_broker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=1000)
    initialise(settings, sessions=330, progress=False)
    start = date(2026, 9, 14)
    clock = ReplayClock(datetime.combine(start, time(8, 0), NEW_YORK))
    ctx = build_context(settings, clock=clock)
    paper = ctx.broker
    faulty = FaultInjectingBroker(paper, rate=0.3, seed=11)
    ctx.broker = faulty
    run_days(ctx, clock, start, 6, every_minutes=30)
    assert faulty.injected_total > 20  # the faults really happened

    with faulty.paused():
        run = reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), ctx.now)
    assert run.differences == []
    assert paper.check_books() == []
    broker_orders = paper.orders()
    ids = [o.client_order_id for o in broker_orders]
    assert len(ids) == len(set(ids))  # no client order id twice at the broker
    with Session(ctx.db) as s:
        orders = s.exec(select(Order)).all()
        engine_fills = set(s.exec(select(Fill.broker_fill_id)).all())
    by_id = {o.client_order_id: o for o in orders}
    assert all(cid in by_id for cid in ids)  # nothing at the broker the engine does not know
    assert {o.status for o in orders} <= {"filled", "cancelled", "rejected", "expired"}  # all known and final
    for bo in broker_orders:  # engine and broker agree on every order's fill
        assert by_id[bo.client_order_id].filled_quantity == bo.filled_quantity
    assert engine_fills == {f.fill_id for f in paper.fills()}
    # one entry per decision, however many retries the faults caused
    entries = Counter(o.decision_key for o in orders if o.intent == "open" and o.filled_quantity > 0)
    assert entries and max(entries.values()) == 1
