"""Issue 12 item 5: two threads submitting the same approved order send exactly one broker order."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session, select

from engine.config import load_settings
from engine.db import get_engine, migrate, session_scope
from engine.execution import orders as om
from engine.execution import service
from engine.execution.ports import BrokerAccount, BrokerOrder, BrokerOrderStatus, Leg, Side
from engine.models import Order, OrderEvent

NOW = datetime(2026, 11, 2, 15, tzinfo=UTC)
CALL = Leg("AAA   261218C00100000", Side.buy)


class CountingBroker:
    """Accepts every order and counts the submissions it receives. Its account read (a network call the gate
    makes, with no transaction open) takes long enough for both submitters to be past their first read."""

    name = "counting"

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.account_reads = 0
        self._lock = threading.Lock()

    def account(self) -> BrokerAccount:
        with self._lock:
            self.account_reads += 1
        time.sleep(0.4)
        return BrokerAccount(Decimal("100000"), Decimal("100000"), Decimal("100000"))

    def submit(self, gate_pass):  # type: ignore[no-untyped-def]
        with self._lock:
            self.submitted.append(gate_pass.client_order_id)
        return BrokerOrder(gate_pass.client_order_id, f"B{len(self.submitted)}", BrokerOrderStatus.working, 1, 0, None)

    def fills(self, client_order_id=None):  # type: ignore[no-untyped-def]
        return []


def _approved_order(url: str) -> int:
    with session_scope(get_engine(url)) as s:
        o = Order(client_order_id="qm-race-1", strategy="s", symbol="AAA", structure="long_call", quantity=1,
                  limit_price=Decimal("1.00"), legs=[CALL.to_dict()], created_at=NOW, updated_at=NOW)
        om.create(s, o, "test", ("auto mode", "engine"), now=NOW)
        return int(o.id)  # type: ignore[arg-type]


def _race(url: str) -> CountingBroker:
    migrate(url)
    order_id = _approved_order(url)
    broker = CountingBroker()
    settings = load_settings()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def submit() -> None:
        barrier.wait()
        try:
            service.submit_one(get_engine(url), settings, broker, order_id, NOW)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    with Session(get_engine(url)) as s:
        moves = s.exec(select(OrderEvent.to_status).where(OrderEvent.order_id == order_id,
                                                          OrderEvent.to_status == "submitting")).all()
        assert len(moves) == 1
    assert broker.account_reads == 2  # both submitters passed their first read: the claim decided
    return broker


def test_one_broker_order_on_postgres(postgres_url: str) -> None:
    assert _race(postgres_url).submitted == ["qm-race-1"]


def test_one_broker_order_on_sqlite(sqlite_url: str) -> None:
    assert _race(sqlite_url).submitted == ["qm-race-1"]
