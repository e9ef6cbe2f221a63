"""The fault injector: rates, determinism, and that "after" faults really reached the broker."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.config import RiskSettings
from engine.execution.brokers.faulty import FAULT_KINDS, FaultInjectingBroker
from engine.execution.brokers.paper import PaperBroker, PaperConfig
from engine.execution.brokers.quotes import InstrumentQuote, UnknownInstrument
from engine.execution.ports import (
    AssetType,
    Broker,
    BrokerAccount,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.risk import GatePass, Intent, PortfolioRisk, ProposedOrder, evaluate

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York"))
C100 = "XYZ   260320C00100000"


def gate(cid: str, qty: int = 1, limit: str = "2.20") -> GatePass:
    order = ProposedOrder(cid, "XYZ", "Information Technology", Intent.open,
                          (Leg(C100, Side.buy, 1, AssetType.option, "XYZ"),), qty, D(limit), D("1"), D("1"))
    big = D("1000000000")
    gp = evaluate(order, PortfolioRisk(big, big, big, 0, D("0")), RiskSettings()).gate_pass
    assert gp is not None
    return gp


class RecordingBroker:
    """A trivial in-memory broker that records every call it receives."""

    name = "recording"

    def __init__(self) -> None:
        self.received: list[tuple[str, object]] = []
        self.orders: dict[str, BrokerOrder] = {}

    def submit(self, gate_pass: GatePass) -> BrokerOrder:
        self.received.append(("submit", gate_pass.client_order_id))
        return self.orders.setdefault(gate_pass.client_order_id, BrokerOrder(
            gate_pass.client_order_id, f"B{len(self.orders)}", BrokerOrderStatus.working, gate_pass.quantity, 0, None))

    def cancel(self, client_order_id: str) -> BrokerOrder:
        self.received.append(("cancel", client_order_id))
        return self.orders[client_order_id]

    def order(self, client_order_id: str) -> BrokerOrder | None:
        self.received.append(("order", client_order_id))
        return self.orders.get(client_order_id)

    def fills(self, client_order_id: str | None = None) -> list:
        self.received.append(("fills", client_order_id))
        return []

    def events(self) -> list:
        self.received.append(("events", None))
        return []

    def positions(self) -> list:
        self.received.append(("positions", None))
        return []

    def account(self) -> BrokerAccount:
        self.received.append(("account", None))
        return BrokerAccount(D("1"), D("1"), D("1"))

    def process(self) -> str:
        return "processed"


def outcome(call) -> str:  # type: ignore[no-untyped-def]
    try:
        call()
        return "ok"
    except BrokerUnavailable as exc:
        return f"unavailable:{'after' if 'forwarded,' in str(exc) else 'before'}"
    except BrokerRejected:
        return "rejected"


def test_rate_is_respected_and_kinds_are_spread() -> None:
    faulty = FaultInjectingBroker(RecordingBroker(), rate=0.3, seed=11)
    assert isinstance(faulty, Broker)
    results = Counter(outcome(lambda: faulty.order("x")) for _ in range(3000))
    injected = 3000 - results["ok"]
    assert 0.27 * 3000 < injected < 0.33 * 3000
    assert injected == faulty.injected_total
    assert faulty.calls["order"] == 3000
    # reads never get a definite rejection; the three unavailable kinds each take about a third
    assert set(k for _, k in faulty.injected) == {"timeout_before", "timeout_after", "connection_error"}
    for kind in ("timeout_before", "timeout_after", "connection_error"):
        assert 0.25 * injected < faulty.injected[("order", kind)] < 0.42 * injected
    assert results["rejected"] == 0
    # submit can also be refused outright
    sub = FaultInjectingBroker(RecordingBroker(), rate=0.5, seed=3)
    passes = [gate(f"r{i}") for i in range(400)]
    sub_results = Counter(outcome(lambda gp=gp: sub.submit(gp)) for gp in passes)
    assert sub_results["rejected"] == sub.injected[("submit", "reject")] > 25  # expected 400 x 0.5 / 4 = 50
    assert 0.42 * 400 < sub.injected_total < 0.58 * 400


def test_deterministic_by_seed() -> None:
    def run(seed: int) -> list[str]:
        faulty = FaultInjectingBroker(RecordingBroker(), rate=0.4, seed=seed)
        passes = [gate(f"d{i}") for i in range(60)]
        out = []
        for gp in passes:
            out.append(outcome(lambda gp=gp: faulty.submit(gp)))
            out.append(outcome(lambda gp=gp: faulty.order(gp.client_order_id)))
            out.append(outcome(faulty.account))
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_before_faults_never_reach_the_broker_and_after_faults_do() -> None:
    for kind, forwarded in (("timeout_before", False), ("connection_error", False), ("reject", False),
                            ("timeout_after", True)):
        inner = RecordingBroker()
        faulty = FaultInjectingBroker(inner, rate=1.0, seed=0, kinds=(kind,))
        gp = gate(f"k-{kind}")
        expected = BrokerRejected if kind == "reject" else BrokerUnavailable
        with pytest.raises(expected):
            faulty.submit(gp)
        assert (("submit", gp.client_order_id) in inner.received) is forwarded, kind
        assert faulty.injected == Counter({("submit", kind): 1})
    # "reject" is only ever a submit fault: with nothing else allowed, reads just pass through
    inner = RecordingBroker()
    only_reject = FaultInjectingBroker(inner, rate=1.0, kinds=("reject",))
    assert only_reject.positions() == [] and only_reject.injected_total == 0


def test_reads_can_fail_and_the_switches_work() -> None:
    inner = RecordingBroker()
    faulty = FaultInjectingBroker(inner, rate=1.0, seed=1, kinds=("timeout_before",))
    for read in (faulty.positions, faulty.account, faulty.events, lambda: faulty.order("x"), faulty.fills,
                 lambda: faulty.cancel("x")):
        with pytest.raises(BrokerUnavailable):
            read()
    assert inner.received == []
    with faulty.paused():
        assert faulty.account() == BrokerAccount(D("1"), D("1"), D("1"))
    assert faulty.process() == "processed"  # venue controls pass straight through
    assert FaultInjectingBroker(inner, rate=0.0).account().cash == D("1")
    with pytest.raises(PermissionError):
        faulty.submit(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaultInjectingBroker(inner, rate=1.5)
    with pytest.raises(ValueError):
        FaultInjectingBroker(inner, kinds=("gremlins",))
    assert set(FAULT_KINDS) == {"timeout_before", "timeout_after", "connection_error", "reject"}


class Quotes:
    def quote(self, instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        if instrument != C100:
            raise UnknownInstrument(instrument)
        return InstrumentQuote(D("2.00"), D("2.20"), 1000, 5000, None)

    def settlement_price(self, underlying: str, day: date) -> D:
        raise UnknownInstrument(underlying)


def test_paper_broker_under_faults_never_duplicates_orders_or_fills(tmp_path: Path) -> None:
    """Submit through heavy faults, learning each order's fate by asking (reconciliation) and retrying
    while the venue has not seen it: every order ends up at the venue exactly once, filled once."""
    paper = PaperBroker(tmp_path / "paper.db", Quotes(), lambda: T0, PaperConfig())
    faulty = FaultInjectingBroker(paper, rate=0.5, seed=42, kinds=("timeout_before", "timeout_after",
                                                                    "connection_error"))
    passes = [gate(f"f{i}", qty=1 + i % 3) for i in range(40)]
    for gp in passes:
        for _attempt in range(100):
            try:
                faulty.submit(gp)
                break
            except BrokerUnavailable:
                try:
                    if faulty.order(gp.client_order_id) is not None:
                        break  # the venue has it: the lost answer was an "after" fault
                except BrokerUnavailable:
                    pass
        else:
            pytest.fail("never got through")
    assert faulty.injected[("submit", "timeout_after")] > 3  # answers really were lost after forwarding
    with faulty.paused():
        orders = [faulty.order(gp.client_order_id) for gp in passes]
        assert all(o is not None and o.status is BrokerOrderStatus.filled for o in orders)
        fills = faulty.fills()
    assert Counter(f.client_order_id for f in fills) == Counter({gp.client_order_id: 1 for gp in passes})
    assert sum(f.quantity for f in fills) == sum(gp.quantity for gp in passes) == 79
    # 79 contracts at 2.13, $1 + $0.10 each (no order reaches the $10 cap)
    assert paper.account().cash == D("100000") - D("79") * (D("213") + D("1.10"))
    assert paper.check_books() == []
    paper.close()
