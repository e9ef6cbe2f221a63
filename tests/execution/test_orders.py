from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session

from engine.execution import orders as om
from engine.execution.orders import OrderStatus
from engine.execution.ports import Leg, Side
from engine.models import Order

CALL = Leg("AAA   261218C00050000", Side.buy)
SHORT = Leg("AAA   261218C00060000", Side.sell)
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_client_order_id_is_deterministic_and_sensitive_to_what_the_order_is() -> None:
    a = om.client_order_id("atr_matrix", "signal:17", "call_debit_spread", [CALL, SHORT], 1)
    assert a == om.client_order_id("atr_matrix", "signal:17", "call_debit_spread", [SHORT, CALL], 1)  # leg order
    assert a.startswith("qm-") and a.endswith("-1") and len(a) <= 64
    others = {
        om.client_order_id("atr_matrix", "signal:18", "call_debit_spread", [CALL, SHORT], 1),
        om.client_order_id("atr_matrix", "signal:17", "long_call", [CALL], 1),
        om.client_order_id("atr_matrix", "signal:17", "call_debit_spread", [CALL, SHORT], 2),
        om.client_order_id("other", "signal:17", "call_debit_spread", [CALL, SHORT], 1),
    }
    assert a not in others and len(others) == 4


def _order(session: Session) -> Order:
    o = Order(client_order_id="qm-x-1", strategy="s", symbol="AAA", structure="long_call", quantity=2,
              limit_price=Decimal("1.00"), legs=[CALL.to_dict()])
    om.create(session, o, "test", now=NOW)
    return o


HAPPY = [OrderStatus.approved, OrderStatus.submitting, OrderStatus.submitted, OrderStatus.partially_filled,
         OrderStatus.partially_filled, OrderStatus.filled]


def test_lifecycle_events_are_appended_for_every_transition(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    with Session(migrated_sqlite) as s:
        o = _order(s)
        for to in HAPPY:
            om.transition(s, o, to, f"to {to.value}", now=NOW)
        s.commit()
        events = om.history(s, o)
        assert [e.to_status for e in events] == ["proposed", *[t.value for t in HAPPY]]
        assert [e.from_status for e in events][1:] == ["proposed", *[t.value for t in HAPPY[:-1]]]
        assert all(e.reason for e in events)


@pytest.mark.parametrize(("path", "illegal"), [
    ([], OrderStatus.submitted),  # proposed cannot skip approval and the gate
    ([], OrderStatus.filled),
    ([OrderStatus.approved], OrderStatus.filled),  # approved has not been sent
    ([OrderStatus.approved, OrderStatus.submitting, OrderStatus.filled], OrderStatus.cancelled),  # terminal
    ([OrderStatus.rejected], OrderStatus.approved),
    ([OrderStatus.approved, OrderStatus.submitting, OrderStatus.submitted, OrderStatus.partially_filled],
     OrderStatus.submitted),
])
def test_illegal_transitions_raise(migrated_sqlite, path, illegal) -> None:  # type: ignore[no-untyped-def]
    with Session(migrated_sqlite) as s:
        o = _order(s)
        for to in path:
            om.transition(s, o, to, "step", now=NOW)
        with pytest.raises(om.IllegalTransition):
            om.transition(s, o, illegal, "nope", now=NOW)
        assert o.status == (path[-1].value if path else "proposed")


def test_terminal_states_have_no_way_out() -> None:
    for state in om.TERMINAL:
        assert not om.TRANSITIONS.get(state)


def test_money_rounds_to_cents_half_even() -> None:
    assert om.money("2.345") == Decimal("2.34") and om.money("2.355") == Decimal("2.36")
    assert om.money(0.1 + 0.2) == Decimal("0.30")


def test_a_new_order_routed_at_once_is_inserted_approved_with_both_events(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    with Session(migrated_sqlite) as s:
        o = Order(client_order_id="qm-r-1", strategy="s", symbol="AAA", structure="long_call", quantity=1,
                  limit_price=Decimal("1.00"), legs=[CALL.to_dict()])
        om.create(s, o, "signal 7", ("auto mode", "engine"), now=NOW)
        held = Order(client_order_id="qm-m-1", strategy="s", symbol="AAA", structure="long_call", quantity=1,
                     limit_price=Decimal("1.00"), legs=[CALL.to_dict()])
        om.create(s, held, "signal 8", None, now=NOW)
        s.commit()
        assert (o.status, held.status) == ("approved", "proposed")
        assert [(e.from_status, e.to_status, e.reason, e.actor) for e in om.history(s, o)] == [
            (None, "proposed", "signal 7", "engine"), ("proposed", "approved", "auto mode", "engine")]
        assert [(e.from_status, e.to_status) for e in om.history(s, held)] == [(None, "proposed")]
        with pytest.raises(om.IllegalTransition):  # only a new, proposed order is created
            om.create(s, Order(client_order_id="qm-z-1", strategy="s", symbol="AAA", structure="long_call",
                               quantity=1, status="approved", legs=[CALL.to_dict()]), "x", now=NOW)


def test_a_claim_wins_once_and_a_stale_claimer_writes_nothing(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    with Session(migrated_sqlite, expire_on_commit=False) as s:
        o = _order(s)
        om.transition(s, o, OrderStatus.approved, "ok", now=NOW)
        s.commit()
    with Session(migrated_sqlite, expire_on_commit=False) as first, \
            Session(migrated_sqlite, expire_on_commit=False) as second:
        b = second.get(Order, o.id)  # the second claimer read it approved ...
        second.commit()
        a = first.get(Order, o.id)
        assert a is not None and b is not None and b.status == "approved"
        assert om.claim(first, a, OrderStatus.submitting, "gate passed", {"risk_decision": {"by": "first"}}, now=NOW)
        first.commit()  # ... and the first claimed it meanwhile
        assert not om.claim(second, b, OrderStatus.submitting, "gate passed", {"risk_decision": {"by": "second"}},
                            now=NOW)
        second.commit()
        assert b.status == "submitting"  # refreshed to what the winner wrote
    with Session(migrated_sqlite) as s:
        row = s.get(Order, o.id)
        assert row is not None and row.risk_decision == {"by": "first"}
        assert [e.to_status for e in om.history(s, row)] == ["proposed", "approved", "submitting"]
