"""Full exits over working scale-outs, protective exits in manual mode, multi-leg fills per leg (issue 11 #5, #14,
#6), against the paper broker with hand-set quotes; every expected number is worked out in the comments."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

from sqlmodel import Session, select

from engine import pipeline, queries
from engine.clock import ReplayClock
from engine.config import ApprovalMode
from engine.context import EngineContext
from engine.db import session_scope
from engine.execution import orders as om
from engine.execution import service
from engine.execution.orders import OrderStatus
from engine.execution.ports import BrokerFill, BrokerOrder, BrokerOrderStatus, Side
from engine.models import Order, Position
from engine.portfolio.marks import LegQuote
from engine.risk import Intent
from tests.execution.test_settlement import C100, C110, NY, Books, books, leg, trade  # noqa: F401

GREEKS = {"delta": 0.6, "gamma": 0.0, "theta": 0.0, "vega": 0.0}
DAILY = {"close": 100.0, "sma50": 90.0, "atr": 4.0}


def _ctx(b: Books, settings=None) -> EngineContext:  # type: ignore[no-untyped-def]
    return EngineContext(settings or b.settings, b.db, None, b.broker, ReplayClock(b.clock.now))  # type: ignore[arg-type]


def _four_calls_at_target_one(b: Books) -> int:
    pid = trade(b, "lc", (leg(C100, Side.buy),), 4, "5.20")  # 4 x 5.13
    with session_scope(b.db) as s:
        p = s.get(Position, pid)
        assert p is not None
        p.stop, p.targets, p.targets_hit, p.underlying_entry, p.entry_atr = 94.0, [118.0, 122.0, 126.0, 130.0], 1, \
            100.0, 4.0
        p.highest_close = 100.0
        s.add(p)
    return pid


def _fetched(price: float) -> pipeline._Fetched:
    return pipeline._Fetched({C100: LegQuote(D("5.00"), D("5.20"), GREEKS, price)}, price)


def test_a_stop_out_cancels_the_working_scale_out_and_closes_everything(books: Books) -> None:  # noqa: F811
    pid = _four_calls_at_target_one(books)
    report = pipeline.StepReport("manage", books.clock.now)
    ctx = _ctx(books)
    # target 1 reached: 4 contracts -> plan 1/1/1/1, the scale-out sells 1 at (mid + natural) / 2:
    # closing mid -5.10, natural -5.00 -> limit -5.05: receive at least 5.05. The venue's market has moved to
    # 4.00/4.20 meanwhile (it would pay -4.10 + 0.025 -> -4.07 > -5.05): the order rests at the broker
    pipeline._manage_one(ctx, pid, _fetched(118.5), DAILY, books.clock.now, report)
    books.quotes.set(C100, "4.00", "4.20")
    service.submit_approved(books.db, books.settings, books.broker, books.clock.now)
    books.quotes.set(C100, "5.00", "5.20")
    with Session(books.db) as s:
        [scale_out] = s.exec(select(Order).where(Order.intent == "close")).all()
        assert (scale_out.quantity, scale_out.status, scale_out.limit_price) == (1, "submitted", D("-5.05"))
    # then the underlying falls through the stop (93 <= 94): the scale-out is cancelled, one exit sells all 4
    pipeline._manage_one(ctx, pid, _fetched(93.0), DAILY, books.clock.now, report)
    with Session(books.db) as s:
        orders = {o.decision_key: o for o in s.exec(select(Order).where(Order.intent == "close")).all()}
    assert orders[f"position:{pid}:t1"].status == "cancelled"
    full = orders[f"position:{pid}:all"]
    assert full.quantity == 4 and full.status == "approved" and "stop_hit" in full.reason
    service.submit_approved(books.db, books.settings, books.broker, books.clock.now)
    with Session(books.db) as s:
        pos = s.get(Position, pid)
        assert pos is not None and pos.status == "closed" and pos.quantity == 0
        # sold 4 at -5.10 + 0.25 x 0.10 -> -5.075 rounded up -> -5.07: (5.07 - 5.13) x 400 = -24, minus
        # fees: opening 4 x 1.00 + 4 x 0.10, closing 4 x 0.10 -> -28.80
        assert pos.realized_pnl == D("-28.80")
    assert books.broker.positions() == []


def test_protective_exits_go_by_rule_in_manual_mode_and_entries_still_wait(books: Books) -> None:  # noqa: F811
    pid = _four_calls_at_target_one(books)
    manual = books.settings.model_copy(update={"approval_mode": ApprovalMode.manual})
    ctx = _ctx(books, manual)
    report = pipeline.StepReport("manage", books.clock.now)
    pipeline._manage_one(ctx, pid, _fetched(118.5), DAILY, books.clock.now, report)  # scale-out: waits
    pipeline._manage_one(ctx, pid, _fetched(93.0), DAILY, books.clock.now, report)  # stop: goes by rule
    with Session(books.db) as s:
        orders = {o.decision_key: o for o in s.exec(select(Order).where(Order.intent == "close")).all()}
        full = orders[f"position:{pid}:all"]
        full_id = full.id
        assert full.status == "approved"
        assert om.history(s, full)[-1].actor == "rule"
        assert orders[f"position:{pid}:t1"].status == "cancelled"  # it was waiting; the full exit replaces it
    frame = queries.orders_frame(books.db)
    assert frame.loc[frame["id"] == full_id, "approved_by"].item() == "executed by rule"
    # an entry in manual mode still waits for the operator
    spec = service.OrderSpec("test", "entry", "XYZ", "Tech", "long_call", Intent.open, (leg(C100, Side.buy),), 1,
                             D("5.20"), D("520"), D("520"))
    with session_scope(books.db) as s:
        assert service.propose(s, spec, manual, books.clock.now).status == "proposed"


def test_exit_approvals_are_an_opt_in(books: Books) -> None:  # noqa: F811
    pid = _four_calls_at_target_one(books)
    opted = books.settings.model_copy(update={"approval_mode": ApprovalMode.manual, "approve_exits": True})
    pipeline._manage_one(_ctx(books, opted), pid, _fetched(93.0), DAILY, books.clock.now,
                         pipeline.StepReport("manage", books.clock.now))
    with Session(books.db) as s:
        [full] = s.exec(select(Order).where(Order.intent == "close")).all()
        assert full.status == "proposed"


def test_multi_leg_fills_count_whole_units_over_every_leg(books: Books) -> None:  # noqa: F811
    legs = (leg(C100, Side.buy), leg(C110, Side.sell))
    spec = service.OrderSpec("test", "ds", "XYZ", "Tech", "call_debit_spread", Intent.open, legs, 3, D("4.20"),
                             D("420"), D("420"))
    now = books.clock.now
    with session_scope(books.db) as s:
        order = service.propose(s, spec, books.settings, now)
        om.transition(s, order, OrderStatus.submitting, "sending", now=now)
        oid, cid = order.id, order.client_order_id
    at = datetime(2026, 3, 2, 10, 1, tzinfo=NY)
    long3 = BrokerFill("f1", cid, C100, Side.buy, 3, D("5.12"), D("3.00"), D("0.30"), at)
    short2 = BrokerFill("f2", cid, C110, Side.sell, 2, D("1.03"), D("2.00"), D("0.20"), at)
    working = BrokerOrder(cid, "B1", BrokerOrderStatus.working, 3, 2, None)
    with session_scope(books.db) as s:
        order = s.get(Order, oid)
        service.apply_broker_state(s, order, working, [long3, short2], now)
    with Session(books.db) as s:
        order = s.get(Order, oid)
        pos = s.get(Position, order.position_id)
        # min(3 / 1, 2 / 1) = 2 units at 5.12 - 1.03 = 4.09; all fees paid so far: 3.30 + 2.20 = 5.50
        assert (order.filled_quantity, order.status) == (2, "partially_filled")
        assert (pos.quantity, pos.entry_price, pos.realized_pnl) == (2, D("4.09"), D("-5.50"))
    text = queries.orders_frame(books.db).set_index("id").loc[oid, "legs_filled"]
    assert text == "+260320C00100000 3/3, -260320C00110000 2/3 (legs uneven: a partly filled combo)"
    short1 = BrokerFill("f3", cid, C110, Side.sell, 1, D("1.05"), D("1.00"), D("0.10"), at)
    done = BrokerOrder(cid, "B1", BrokerOrderStatus.filled, 3, 3, None)
    with session_scope(books.db) as s:
        order = s.get(Order, oid)
        service.apply_broker_state(s, order, done, [long3, short2, short1], now)
    with Session(books.db) as s:
        order = s.get(Order, oid)
        pos = s.get(Position, order.position_id)
        # the third unit: 5.12 - 1.05 = 4.07; entry (2 x 4.09 + 4.07) / 3 = 12.25 / 3
        assert (order.filled_quantity, order.status, pos.quantity) == (3, "filled", 3)
        assert pos.entry_price.quantize(D("0.000001")) == D("4.083333")
        assert pos.realized_pnl == D("-6.60")
