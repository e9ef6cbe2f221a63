"""Operator overrides go through the gate with recomputed numbers (issue 11, item 2; DESIGN §6).

Hand numbers: equity 100,000 (starting cash, no snapshot yet); fees 1.00 commission + 0.10 fee = 1.10 per
contract and leg. Three calls at 3.15 risk 3 x (315 + 1.10) = 948.30 = 0.95% of equity; at 9.00 the same
three risk 3 x (900 + 1.10) = 2,703.30 = 2.70% > 1% per trade."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from engine.config import load_settings
from engine.execution import service
from engine.execution.ports import (
    BrokerAccount,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    Leg,
    Side,
)
from engine.models import Order, OrderEvent, Position
from engine.risk import Intent

D = Decimal
NOW = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)
EXPIRY = date(2026, 7, 17)


class _Account:
    """The one broker call the gate makes: the account."""

    def account(self) -> BrokerAccount:
        return BrokerAccount(cash=D(100_000), buying_power=D(100_000), equity=D(100_000))


def _settings(sqlite_url: str):  # type: ignore[no-untyped-def]
    return load_settings(database_url=sqlite_url, approval_mode="manual")


def _call_spec(qty: int = 3, limit: str = "3.15") -> service.OrderSpec:
    leg = Leg("AAA   260717C00100000", Side.buy, 1, underlying="AAA", right="C", strike=D(100), expiry=EXPIRY)
    return service.OrderSpec(strategy="atr_matrix", signal_key="test:calls", underlying="AAA", sector="Tech",
                             structure="long_call", intent=Intent.open, legs=(leg,), quantity=qty,
                             limit_price=D(limit), max_loss_per_unit=D(limit) * 100,
                             buying_power_per_unit=D(limit) * 100, fees_per_unit=D("1.10"))


def _put_spread_spec() -> service.OrderSpec:
    # sell the 50 put, buy the 45 put for a 1.50 credit: max loss (5 - 1.50) x 100 = 350 per spread
    legs = (Leg("BBB   260717P00050000", Side.sell, 1, underlying="BBB", right="P", strike=D(50), expiry=EXPIRY),
            Leg("BBB   260717P00045000", Side.buy, 1, underlying="BBB", right="P", strike=D(45), expiry=EXPIRY))
    return service.OrderSpec(strategy="atr_matrix", signal_key="test:bps", underlying="BBB", sector="Tech",
                             structure="bull_put_credit_spread", intent=Intent.open, legs=legs, quantity=2,
                             limit_price=D("-1.50"), max_loss_per_unit=D(350), buying_power_per_unit=D(350),
                             fees_per_unit=D("2.20"))


def test_a_price_override_is_refused_at_its_real_risk(migrated_sqlite, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(sqlite_url)
    with Session(migrated_sqlite) as session:
        order = service.propose(session, _call_spec(), settings, NOW)
        assert order.status == "proposed" and order.max_loss == D("945.00")
        with pytest.raises(service.OverrideRefused) as refused:
            service.override(session, order, "operator", "pay up", NOW, limit_price=D("9.00"), settings=settings)
        assert "risk_per_trade" in str(refused.value) and "2.70%" in str(refused.value)
        session.rollback()
        kept = session.get(Order, order.id)
        assert kept.limit_price == D("3.15") and kept.economics["max_loss_per_unit"] == "315.00"


def test_the_send_time_gate_sees_the_overridden_numbers(migrated_sqlite, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """Even an override made without the gate at hand is measured at its new price when it is sent."""
    settings = _settings(sqlite_url)
    with Session(migrated_sqlite) as session:
        order = service.propose(session, _call_spec(), settings, NOW)
        service.override(session, order, "operator", "pay up", NOW, limit_price=D("9.00"))
        assert order.economics["max_loss_per_unit"] == "900.00"
        assert order.max_loss == D("2700.00") and order.risk_per_unit == D("901.10")
        decision = service.check(session, order, settings, _Account(), NOW)
    assert not decision.approved and {c.rule for c in decision.failures} == {"risk_per_trade"}
    assert decision.order_risk == D("2703.30")


def test_an_override_within_the_limits_records_its_figures_on_order_and_position(  # type: ignore[no-untyped-def]
        migrated_sqlite, sqlite_url) -> None:
    settings = _settings(sqlite_url)
    with Session(migrated_sqlite) as session:
        order = service.propose(session, _call_spec(), settings, NOW)
        # one call at 9.00: 900 + 1.10 = 901.10 = 0.90%: the gate passes it
        decision = service.override(session, order, "operator", "one at 9", NOW, quantity=1, limit_price=D("9.00"),
                                    settings=settings)
        assert decision is not None and decision.approved and decision.order_risk == D("901.10")
        assert order.quantity == 1 and order.max_loss == D("900.00")
        event = session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id,
                                                      OrderEvent.reason == "override: one at 9")).one()
        assert event.data["after"]["economics"]["max_loss_per_unit"] == "900.00"
        assert event.data["risk_decision"]["approved"] is True
        session.commit()
        fill = BrokerFill("f1", order.client_order_id, "AAA   260717C00100000", Side.buy, 1, D("8.90"), D("1.00"),
                          D("0.10"), NOW)
        answer = BrokerOrder(order.client_order_id, "b1", BrokerOrderStatus.filled, 1, 1, D("8.90"))
        order.status = "submitted"
        service.apply_broker_state(session, order, answer, [fill], NOW)
        session.commit()
        pos = session.exec(select(Position)).one()
    assert pos.max_loss == D("900.00") and pos.initial_risk == D("900.00")


def test_a_credit_spread_override_recomputes_width_minus_credit(migrated_sqlite, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(sqlite_url)
    with Session(migrated_sqlite) as session:
        order = service.propose(session, _put_spread_spec(), settings, NOW)
        # a 1.00 credit instead of 1.50: max loss (5 - 1.00) x 100 = 400 per spread, 2 spreads = 800
        service.override(session, order, "operator", "less credit", NOW, limit_price=D("-1.00"), settings=settings)
        assert order.economics["max_loss_per_unit"] == "400.00"
        assert order.economics["buying_power_per_unit"] == "400.00"
        assert order.economics["fees_per_unit"] == "2.20"  # 1.10 x 2 legs
        assert order.max_loss == D("800.00") and order.risk_per_unit == D("402.20")
