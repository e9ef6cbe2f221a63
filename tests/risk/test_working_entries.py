"""Working (unfilled) entry orders count as positions and as symbol risk (DESIGN §6), and the Risk page's
limit table is the gate's own checks (issue 11, item 3 and the design note on one implementation)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session

from engine import queries
from engine.config import get_settings
from engine.execution.ports import Leg, Side
from engine.models import Order, Position
from engine.portfolio.exposure import portfolio_risk_offline
from engine.risk import Intent, ProposedOrder, evaluate

D = Decimal
NOW = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)


def _position(symbol: str, max_loss: str = "500") -> Position:
    return Position(strategy="atr_matrix", symbol=symbol, sector="Tech", structure="long_call", quantity=1,
                    initial_quantity=1, max_loss=D(max_loss), status="open", legs=[])


def _working(symbol: str, risk_per_unit: str = "300", status: str = "submitted", qty: int = 1) -> Order:
    return Order(client_order_id=f"qm-w-{symbol}-{status}", strategy="atr_matrix", symbol=symbol,
                 structure="long_call", intent="open", legs=[], quantity=qty, limit_price=D("3"), status=status,
                 risk_per_unit=D(risk_per_unit), max_loss=D(risk_per_unit) * qty)


def _order(symbol: str, qty: int = 3) -> ProposedOrder:
    # a long call at 3.10: $310 max loss + $1.10 fees per contract; 3 contracts risk 933.30 (0.93%)
    leg = Leg(f"{symbol:<6}261218C00050000", Side.buy, 1)
    return ProposedOrder(f"qm-new-{symbol}", symbol, "Energy", Intent.open, (leg,), qty, D("3.10"), D("310"),
                         D("310"), 0.0, D("1.10"))


def test_working_entries_count_as_open_positions(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()  # 100,000 starting cash, at most 10 open positions
    with Session(migrated_sqlite) as session:
        for i in range(9):
            session.add(_position(f"P{i}"))
        for i in range(5):
            session.add(_working(f"W{i}", status=("approved", "submitted", "partially_filled")[i % 3]))
        session.commit()
        state = portfolio_risk_offline(session, settings, NOW)
    # 9 held + 5 with a working entry = 14 symbols engaged; heat 9 x 500 + pending 5 x 300 = 6,000 (6%)
    assert state.open_positions == 14
    assert state.heat + state.pending_risk == D("6000.00")
    d = evaluate(_order("NEW"), state, settings.risk)
    assert not d.approved and {c.rule for c in d.failures} == {"open_positions"}
    check = d.failures[0]
    assert check.current == 14 and check.after == 15 and check.limit == 10
    # adding to a symbol that already has a working entry opens no new position
    same = next(c for c in evaluate(_order("W1"), state, settings.risk).checks if c.rule == "open_positions")
    assert same.after == 14


def test_working_entries_count_as_symbol_risk(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    with Session(migrated_sqlite) as session:
        session.add(_working("AAA", risk_per_unit="1500", qty=3))  # 4,500 working in AAA (4.5%)
        session.commit()
        state = portfolio_risk_offline(session, settings, NOW)
    assert state.risk_by_symbol["AAA"] == D("4500.00")
    # 4,500 + 933.30 = 5,433.30 = 5.43% > 5% per symbol
    d = evaluate(_order("AAA"), state, settings.risk)
    assert {c.rule for c in d.failures} == {"symbol_risk"}
    assert abs(d.failures[0].after - 5.4333) < 1e-9


def test_risk_page_limits_are_the_gates_checks(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    """10 of 10 positions open: the gate refuses an 11th symbol, so the page must not call it fine."""
    settings = get_settings()
    with Session(migrated_sqlite) as session:
        for i in range(10):
            session.add(_position(f"P{i}", max_loss="200"))
        session.commit()
        state = portfolio_risk_offline(session, settings, NOW)
    assert not evaluate(_order("NEW", qty=1), state, settings.risk).approved
    overview = queries.risk_overview(migrated_sqlite, settings, NOW)
    rows = {r["rule"]: r for r in overview["limits"]}
    assert rows["open_positions"]["used"] == 10 and rows["open_positions"]["ok"] is False
    # heat 10 x 200 = 2,000 = 2% of 100,000: room left, as the gate says
    assert abs(rows["heat"]["used"] - 2.0) < 1e-9 and rows["heat"]["ok"] is True
    assert rows["symbol_risk"]["ok"] is True and rows["kill_switch"]["ok"] is True
