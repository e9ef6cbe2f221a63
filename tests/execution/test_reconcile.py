"""Reconciliation after a crash: what the broker knows decides; what it never received is resent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session

from engine.bootstrap import initialise
from engine.clock import ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.db import session_scope
from engine.execution import orders as om
from engine.execution import service
from engine.execution.orders import OrderStatus
from engine.execution.ports import Leg, Side
from engine.execution.reconcile import reconcile
from engine.models import Order
from engine.options.chain import enrich
from engine.risk import Intent

NOW = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)  # 11:00 New York


def _setup(tmp_path):  # type: ignore[no-untyped-def]
    # wide limits: these tests are about reconciliation, not the gate (one SPY call is ~20% of equity)
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=100, starting_cash=1_000_000.0,
                             risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100, "max_heat_pct": 100,
                                   "max_sector_exposure_pct": 100})
    initialise(settings, sessions=300, progress=False)
    ctx = build_context(settings, clock=ReplayClock(NOW))
    chain = enrich(ctx.market.option_chain("SPY", NOW), r=0.04, q=ctx.market.dividend_yield("SPY", NOW.date()))
    row = chain[(chain["right"] == "C") & (chain["dte"] > 21)].iloc[(chain["delta"] - 0.6).abs().argsort()[:1]].iloc[0]
    leg = Leg(row.occ_symbol, Side.buy, 1, underlying="SPY", right="C", strike=Decimal(str(row.strike)),
              expiry=row.expiry)
    limit = Decimal(str(row.ask)) + Decimal("0.10")
    spec = service.OrderSpec("test", "signal:x", "SPY", "ETF", "long_call", Intent.open, (leg,), 1, limit,
                             limit * 100, limit * 100, Decimal("1.10"))
    return settings, ctx, spec


def test_an_order_the_broker_never_received_goes_back_to_approved_and_is_sent_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings, ctx, spec = _setup(tmp_path)
    with session_scope(ctx.db) as s:
        order = service.propose(s, spec, settings, NOW)
        om.transition(s, order, OrderStatus.submitting, "crashed before the broker call", now=NOW)
        oid = order.id
    run = reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), NOW)
    assert run.differences == []
    with Session(ctx.db) as s:
        order = s.get(Order, oid)
        assert order is not None and order.status == "approved"
        assert "never received" in om.history(s, order)[-1].reason
    report = service.submit_approved(ctx.db, settings, ctx.broker, NOW)
    assert report.submitted == [order.client_order_id]
    assert [o.client_order_id for o in ctx.broker.orders()] == [order.client_order_id]


def test_an_order_the_broker_filled_while_we_were_down_is_applied(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings, ctx, spec = _setup(tmp_path)
    with session_scope(ctx.db) as s:
        oid = service.propose(s, spec, settings, NOW).id
    # Gate and send, but lose the answer: the order stays in 'submitting' as after a crash.
    with session_scope(ctx.db) as s:
        order = s.get(Order, oid)
        decision = service.check(s, order, settings, ctx.broker, NOW)
        om.transition(s, order, OrderStatus.submitting, "sending", now=NOW)
    answer = ctx.broker.submit(decision.gate_pass)
    assert answer.filled_quantity == 1
    run = reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), NOW)
    assert run.differences == []  # positions and cash agree once the fill is applied
    with Session(ctx.db) as s:
        order = s.get(Order, oid)
        assert order is not None and order.status == "filled" and order.filled_quantity == 1
        assert order.position_id is not None
