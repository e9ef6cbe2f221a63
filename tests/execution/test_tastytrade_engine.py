"""The engine's order path on tastytrade: the gate checks the broker's dry run, a timeout mid-order is
resolved by reconciliation without a second order, fills land per leg with their fees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from engine.config import Settings, load_settings
from engine.db import make_engine, migrate, session_scope
from engine.execution import service
from engine.execution.brokers.tastytrade import TastytradeBroker
from engine.execution.ports import Leg, Side
from engine.execution.reconcile import reconcile
from engine.models import Fill, Order, Position
from engine.risk import Intent
from tests.execution.tastytrade_fake import FakeTastytrade
from tests.execution.test_tastytrade_adapter import CALL_610, CALL_620, CONDOR, NOW, PUT_570, PUT_580, make


@pytest.fixture
def fake() -> FakeTastytrade:
    f = FakeTastytrade(clock=lambda: NOW)
    f.quotes = {PUT_570: Decimal("1.25"), PUT_580: Decimal("3.20"), CALL_610: Decimal("1.55"),
                CALL_620: Decimal("0.55")}
    return f


@pytest.fixture
def broker(fake: FakeTastytrade) -> Iterator[TastytradeBroker]:
    b = make(fake)
    yield b
    b.close()


@pytest.fixture
def env(sqlite_url: str):  # type: ignore[no-untyped-def]
    migrate(sqlite_url)
    # wide risk limits: these tests are about the broker's numbers (1,445 of risk is 1.4% of 100,000)
    settings = load_settings(database_url=sqlite_url, broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"},
                             risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100, "max_heat_pct": 100})
    return settings, make_engine(sqlite_url)


def _condor_spec(quantity: int = 2, key: str = "signal:ic") -> service.OrderSpec:
    # width 10 - credit 2.82 = 7.18 per share -> 718 per condor; model fees 4 legs x 1.10
    return service.OrderSpec("test", key, "SPY", "ETF", "iron_condor", Intent.open, CONDOR, quantity,
                             Decimal("-2.82"), Decimal("718"), Decimal("718"), Decimal("4.40"))


def _submit(settings: Settings, db, broker: TastytradeBroker, spec: service.OrderSpec) -> Order:  # type: ignore[no-untyped-def]
    with session_scope(db) as s:
        order = service.propose(s, spec, settings, NOW)
        oid = order.id
    return service.submit_one(db, settings, broker, oid, NOW)


def _order(db, cid: str) -> Order:  # type: ignore[no-untyped-def]
    with Session(db) as s:
        return s.exec(select(Order).where(Order.client_order_id == cid)).one()


def test_the_gate_counts_the_dry_runs_fees_and_buying_power(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                           broker: TastytradeBroker) -> None:
    settings, db = env
    order = _submit(settings, db, broker, _condor_spec())
    order = _order(db, order.client_order_id)
    assert order.status == "filled", order.risk_decision
    checks = {c["rule"]: c for c in order.risk_decision["checks"]}
    assert checks["broker_preview"]["passed"]
    # the fake's dry run: (width 10 x 100 - credit 282) x 2 + fees 8 contracts x 1.142 = 1436 + 9.136
    assert checks["broker_buying_power"]["after"] == pytest.approx(1445.136)
    assert "buying_power" not in checks  # the model's estimate gave way to the broker's number
    # order risk = (max loss 718 + broker fees 9.136 / 2 per condor) x 2 = 1445.136
    assert Decimal(order.risk_decision["order_risk"]) == Decimal("1445.136")
    with Session(db) as s:
        fills = s.exec(select(Fill).where(Fill.order_id == order.id)).all()
        position = s.exec(select(Position)).one()
    assert len(fills) == 4 and sum(f.commission for f in fills) == Decimal("9.136")
    assert position.quantity == 2 and position.entry_price == Decimal("-2.82")


def test_the_gate_refuses_when_the_dry_run_reports_errors(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                          broker: TastytradeBroker) -> None:
    settings, db = env
    fake.dry_run_errors = [{"code": "insufficient_buying_power", "message": "Insufficient buying power"}]
    order = _order(db, _submit(settings, db, broker, _condor_spec()).client_order_id)
    assert order.status == "rejected"
    failed = [c["rule"] for c in order.risk_decision["checks"] if not c["passed"]]
    assert failed == ["broker_preview"]
    assert not fake.orders  # nothing was placed


def test_the_gate_refuses_more_buying_power_than_the_account_has(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                                 broker: TastytradeBroker) -> None:
    settings, db = env
    fake.cash = Decimal("1400")  # the dry run needs 1445.136 for two condors
    order = _order(db, _submit(settings, db, broker, _condor_spec()).client_order_id)
    assert order.status == "rejected"
    failed = {c["rule"]: c for c in order.risk_decision["checks"] if not c["passed"]}
    assert "broker_buying_power" in failed and "exceeds" in failed["broker_buying_power"]["message"]
    assert not fake.orders


@pytest.mark.parametrize("fault", ["timeout_after_create", "500_after_create"])
def test_a_timeout_mid_order_is_reconciled_without_a_duplicate(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                              broker: TastytradeBroker, fault: str) -> None:
    settings, db = env
    fake.fail_next_place = fault  # the broker creates (and fills) the order, the answer never arrives
    cid = _submit(settings, db, broker, _condor_spec()).client_order_id
    assert _order(db, cid).status == "submitting"
    assert len(fake.orders) == 1
    service.submit_approved(db, settings, broker, NOW)  # nothing approved: nothing resent
    restarted = make(fake)  # a fresh adapter (engine restart) knows nothing of the id
    try:
        reconcile(db, restarted, Decimal("100000"), NOW)
        order = _order(db, cid)
        assert order.status == "filled" and order.filled_quantity == 2
        assert order.broker_order_id == str(next(iter(fake.orders)))
        reconcile(db, restarted, Decimal("100000"), NOW)  # idempotent
    finally:
        restarted.close()
    assert len(fake.orders) == 1
    assert sum(1 for r in fake.requests if r.method == "POST" and r.url.path.endswith("/orders")) == 1
    with Session(db) as s:
        assert len(s.exec(select(Fill)).all()) == 4


def test_a_timeout_before_the_broker_acted_is_sent_once_after_reconciliation(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                                            broker: TastytradeBroker) -> None:
    settings, db = env
    clock = {"now": NOW}
    broker._now = lambda: clock["now"]
    fake.fail_next_place = "timeout_before_create"
    cid = _submit(settings, db, broker, _condor_spec()).client_order_id
    assert _order(db, cid).status == "submitting" and not fake.orders
    run = reconcile(db, broker, Decimal("100000"), NOW)  # too soon: it may still be in flight
    assert _order(db, cid).status == "submitting"
    assert any(d["kind"] == "broker_unavailable" and "not visible yet" in d["detail"] for d in run.differences)
    clock["now"] = NOW + timedelta(seconds=61)
    reconcile(db, broker, Decimal("100000"), NOW)  # proves it absent: back to approved, same id
    assert _order(db, cid).status == "approved"
    report = service.submit_approved(db, settings, broker, NOW)
    assert report.submitted == [cid]
    assert [o["external-identifier"] for o in fake.orders.values()] == [cid]
    assert _order(db, cid).status == "filled"


def test_partial_fills_then_the_rest(env, fake: FakeTastytrade, broker: TastytradeBroker) -> None:  # type: ignore[no-untyped-def]
    settings, db = env
    fake.fill_mode = "partial"
    legs = (Leg("SPY   261218C00600000", Side.buy),)
    fake.quotes["SPY   261218C00600000"] = Decimal("4.15")
    spec = service.OrderSpec("test", "signal:lc", "SPY", "ETF", "long_call", Intent.open, legs, 4, Decimal("4.15"),
                             Decimal("415"), Decimal("415"), Decimal("1.10"))
    cid = _submit(settings, db, broker, spec).client_order_id
    order = _order(db, cid)
    assert order.status == "partially_filled" and order.filled_quantity == 2
    fake.fill(int(order.broker_order_id))
    reconcile(db, broker, Decimal("100000"), NOW)
    order = _order(db, cid)
    assert order.status == "filled" and order.filled_quantity == 4 and order.avg_fill_price == Decimal("4.15")


def test_an_event_on_an_external_position_moves_no_engine_cash(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                               broker: TastytradeBroker) -> None:
    from engine.execution.reconcile import engine_cash
    from engine.models import Transaction
    from tests.execution.test_tastytrade_adapter import _receive_deliver

    _, db = env
    _receive_deliver(fake, 2, CALL_610, "Equity Option", "Assignment", "Buy to Close", "1")
    _receive_deliver(fake, 3, "SPY", "Equity", "Assignment", "Sell to Close", "100", "610.0")
    reconcile(db, broker, Decimal("100000"), NOW)
    with Session(db) as s:
        assert s.exec(select(Position)).all() == []  # no stock position for the engine to manage
        assert [t.type for t in s.exec(select(Transaction)).all()] == ["assigned_external"]
        assert engine_cash(s, Decimal("100000")) == Decimal("100000")


def test_after_a_restart_the_persisted_submitting_time_keeps_the_order_in_flight(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                                                 broker: TastytradeBroker) -> None:
    from engine.execution.brokers.tastytrade_factory import order_times_from

    settings, db = env
    fake.fail_next_place = "timeout_before_create"
    cid = _submit(settings, db, broker, _condor_spec()).client_order_id  # "submitting" committed at NOW
    clock = {"now": NOW + timedelta(seconds=5)}
    restarted = make(fake, now=lambda: clock["now"], order_times=order_times_from(db))
    try:
        reconcile(db, restarted, Decimal("100000"), NOW)  # 5 s after the send: not absent yet
        assert _order(db, cid).status == "submitting"
        clock["now"] = NOW + timedelta(seconds=61)
        reconcile(db, restarted, Decimal("100000"), NOW)
        assert _order(db, cid).status == "approved"  # absent: resent later with the same id
    finally:
        restarted.close()
    assert not fake.orders


def test_a_replace_that_raises_the_risk_goes_through_the_gate_with_the_dry_run(env, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                                                              broker: TastytradeBroker) -> None:
    import json

    from engine.execution.brokers.tastytrade_replace import gated_replace

    settings, db = env
    fake.fill_mode = "never"
    cid = _submit(settings, db, broker, _condor_spec()).client_order_id
    assert _order(db, cid).status == "submitted"
    # less credit (2.50 instead of 2.82) = more risk: (10 - 2.50) x 100 = 750 per condor. The account's
    # buying power drops to 1,500; the broker's dry run of the replacement needs (1000 - 250) x 2 + fees
    # 8 x 1.142 = 1,509.136: refused by the gate, nothing sent.
    fake.cash = Decimal("1500")
    result = gated_replace(db, settings, broker, cid, Decimal("-2.50"), NOW)
    assert not result.replaced and "broker_buying_power" in result.message
    dry_runs = [json.loads(r.content) for r in fake.requests if r.url.path.endswith("/dry-run")]
    assert (Decimal(dry_runs[-1]["price"]), dry_runs[-1]["price-effect"]) == (Decimal("2.5"), "Credit")
    assert not any(r.method == "PUT" for r in fake.requests)
    assert _order(db, cid).limit_price == Decimal("-2.82")
    fake.cash = Decimal("100000")
    result = gated_replace(db, settings, broker, cid, Decimal("-2.50"), NOW)
    assert result.replaced, result.message
    order = _order(db, cid)
    assert order.limit_price == Decimal("-2.50") and order.status == "submitted"
    # the pending risk the gate counts from now on: max loss 750 + the dry run's fees 9.136 / 2 per condor
    assert order.risk_per_unit == Decimal("754.568") and order.max_loss == Decimal("1500.00")
    assert Decimal(order.risk_decision["order_risk"]) == Decimal("1509.136")
    assert order.broker_order_id != str(min(fake.orders))  # the new order at the broker, same client id
