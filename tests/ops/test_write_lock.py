"""Issue 12 item 2: the write lock is taken only for writes, and never across a slow market-data or broker call.

Each slow call (Massive waiting on its rate limiter, a tastytrade/IBKR round trip) is made by a wrapper that,
while the call is in flight, has "the console" set the kill switch from another thread and times the commit.
SQLite writers queue on one lock (engine transactions begin BEGIN IMMEDIATE, with a 30 s busy timeout), so a
job holding a write transaction around the call makes the console wait until the job commits."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from engine import auth, pipeline
from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import EngineContext, build_context
from engine.db import read_scope, session_scope
from engine.execution import service
from engine.execution.ports import BrokerPreview, Side
from engine.models import JobRun, Order, OrderEvent, Position
from engine.operator import kill_switch_on, set_kill_switch
from engine.risk import Intent
from tests.execution.test_settlement import C100, Books, books, leg, trade  # noqa: F401

SLOW_SECONDS = 2.0  # how long a slow call waits for the console's write before it gives up and answers
FAST = 1.0  # the issue's bound on a console write
SATURDAY_EVENING = datetime(2026, 3, 7, 17, 0, tzinfo=ZoneInfo("America/New_York"))  # no bars to refresh


def _timed_kill_switch(engine: Engine, on: bool = True) -> float:
    """What the console's kill-switch button does (app.actions.set_kill_switch), timed."""
    started = time.monotonic()
    with session_scope(engine) as s:
        set_kill_switch(s, on, "operator", datetime.now(UTC))
    return time.monotonic() - started


class Slow:
    """Wraps a market-data source or a broker. Each call named in ``names`` stays in flight until the console,
    on another thread, has committed the kill switch (or SLOW_SECONDS passed); ``waits`` records per call how
    long that commit took, None when it could not commit while the call was in flight."""

    def __init__(self, inner: Any, db: Engine, names: set[str], waits: list[tuple[str, float | None]]) -> None:
        self._inner, self._db, self._names, self.waits = inner, db, names, waits
        self._consoles: list[threading.Thread] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._names:
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            took: list[float] = []

            def console() -> None:
                # "database is locked" after the busy timeout is recorded as None below
                with contextlib.suppress(Exception):
                    took.append(_timed_kill_switch(self._db))

            t = threading.Thread(target=console, daemon=True)
            t.start()
            self._consoles.append(t)
            t.join(SLOW_SECONDS)
            self.waits.append((name, took[0] if took else None))
            return attr(*args, **kwargs)

        return slow

    def finish(self) -> None:
        for t in self._consoles:
            t.join(60)


def _assert_console_never_waited(waits: list[tuple[str, float | None]], expected: set[str]) -> None:
    assert expected <= {name for name, _ in waits}, f"the slow calls {expected} were not made: {waits}"
    blocked = [(name, took) for name, took in waits if took is None or took >= FAST]
    assert not blocked, f"the kill switch waited for a job's write transaction during {blocked} (all: {waits})"


def test_a_long_read_does_not_hold_the_write_lock(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    reading, done = threading.Event(), threading.Event()

    def slow_reader() -> None:
        with read_scope(migrated_sqlite) as s:
            s.exec(select(JobRun)).all()
            reading.set()
            done.wait(10)  # e.g. a report built while a chain request waits on the rate limiter

    t = threading.Thread(target=slow_reader)
    t.start()
    try:
        assert reading.wait(10)
        assert _timed_kill_switch(migrated_sqlite) < FAST
    finally:
        done.set()
        t.join()
    with read_scope(migrated_sqlite) as s:
        assert kill_switch_on(s)
        s.add(JobRun(job_id="x", trigger="t"))
        with pytest.raises(RuntimeError, match="read-only"):
            s.flush()


# --- the pre-market: chains and IV history for the candidates ----------------------------------------------


@pytest.fixture
def trading_ctx(tmp_path) -> EngineContext:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=300, scan_top_n=2)
    initialise(settings, sessions=300, progress=False)
    return build_context(settings, clock=ReplayClock(datetime(2026, 11, 2, 8, 30, tzinfo=NEW_YORK)))


@pytest.mark.slow
def test_kill_switch_commits_fast_while_the_premarket_waits_on_chains(trading_ctx: EngineContext) -> None:
    waits: list[tuple[str, float | None]] = []
    market = Slow(trading_ctx.market, trading_ctx.db, {"quotes", "option_chain", "option_quotes", "atm_iv_series"},
                  waits)
    trading_ctx.market = market  # type: ignore[assignment]
    try:
        pipeline.run_premarket(trading_ctx)
    finally:
        market.finish()
    _assert_console_never_waited(waits, {"option_chain", "atm_iv_series"})


# --- held positions: manage_positions and the post-market ---------------------------------------------------


class ChainMarket:
    """A market-data source with the held call's chain row and the underlying's quote."""

    name = "chain"

    def quotes(self, symbols: list[str], at: datetime) -> pd.DataFrame:
        n = len(symbols)
        return pd.DataFrame({"symbol": symbols, "last": [105.0] * n, "bid": [104.98] * n, "ask": [105.02] * n})

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        return pd.DataFrame([{"occ_symbol": C100, "bid": 5.0, "ask": 5.2, "delta": 0.6, "gamma": 0.0,
                              "theta": 0.0, "vega": 0.0, "underlying_price": 105.0}])


@pytest.fixture
def held(books: Books) -> Iterator[Books]:  # noqa: F811
    trade(books, "lc", (leg(C100, Side.buy),), 1, "5.20")
    yield books


def _ctx(b: Books, market: Any, broker: Any, at: datetime | None = None) -> EngineContext:
    return EngineContext(b.settings, b.db, market, broker, ReplayClock(at or b.clock.now))


def test_kill_switch_commits_fast_while_positions_are_managed(held: Books) -> None:
    waits: list[tuple[str, float | None]] = []
    market = Slow(ChainMarket(), held.db, {"quotes", "option_chain"}, waits)
    try:
        pipeline.manage_positions(_ctx(held, market, held.broker))
    finally:
        market.finish()
    _assert_console_never_waited(waits, {"quotes", "option_chain"})
    with read_scope(held.db) as s:
        pos = s.exec(select(Position)).one()
        assert pos.mark == Decimal("5.1000")  # (5.00 + 5.20) / 2: the mark was written after the fetch


def test_kill_switch_commits_fast_while_the_postmarket_marks_and_reads_the_account(held: Books) -> None:
    waits: list[tuple[str, float | None]] = []
    market = Slow(ChainMarket(), held.db, {"quotes", "option_chain"}, waits)
    broker = Slow(held.broker, held.db, {"account"}, waits)
    held.clock.now = SATURDAY_EVENING
    try:
        report = pipeline.run_postmarket(_ctx(held, market, broker, SATURDAY_EVENING))
    finally:
        market.finish()
        broker.finish()
    _assert_console_never_waited(waits, {"quotes", "option_chain", "account"})
    with read_scope(held.db) as s:
        pos = s.exec(select(Position)).one()
        assert pos.mark == Decimal("5.1000")
    # bought 1 x C100 at 5.13 (mid 5.10 + 0.25 x (5.20 - 5.10) = 5.125, up to the cent): cash
    # 100000 - 513 - 1.00 commission - 0.10 fee = 99485.90; marked at the mid 5.10: positions 510.00,
    # equity 99995.90
    assert "equity $99,995.90 = cash $99,485.90 + positions $510.00" in report.lines[-1]


# --- sending an order: the gate reads the broker's account and its dry run ----------------------------------


class Previewing:
    """A broker with a dry run (tastytrade, IBKR) in front of the paper broker."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.previews = 0

    def preview(self, order: Any) -> BrokerPreview:
        self.previews += 1
        return BrokerPreview(buying_power_effect=Decimal("600"), fees=Decimal("1.10"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _approved_entry(b: Books) -> int:
    spec = service.OrderSpec("test", "entry", "XYZ", "Tech", "long_call", Intent.open, (leg(C100, Side.buy),), 1,
                             Decimal("5.20"), Decimal("520"), Decimal("520"))
    with session_scope(b.db) as s:
        order = service.propose(s, spec, b.settings, b.clock.now)
        assert order.status == "approved"
        return int(order.id)  # type: ignore[arg-type]


@pytest.mark.parametrize("slow_call", ["account", "preview"])
def test_kill_switch_commits_fast_while_the_gate_waits_on_the_broker(books: Books, slow_call: str) -> None:  # noqa: F811
    order_id = _approved_entry(books)
    waits: list[tuple[str, float | None]] = []
    broker = Slow(Previewing(books.broker), books.db, {slow_call}, waits)
    try:
        order = service.submit_one(books.db, books.settings, broker, order_id, books.clock.now)
    finally:
        broker.finish()
    _assert_console_never_waited(waits, {slow_call})
    # The kill switch went on while the gate waited on the broker: the gate decides on the switch as it is
    # when the decision is written, so the entry is refused and never sent.
    assert order.status == "rejected"
    assert [c["rule"] for c in order.risk_decision["checks"] if not c["passed"]] == ["kill_switch"]
    assert books.broker.order(order.client_order_id) is None


def test_an_order_changed_while_the_gate_waits_is_not_sent_on_the_old_preview(books: Books) -> None:  # noqa: F811
    order_id = _approved_entry(books)

    class OverrideDuringPreview(Previewing):
        def preview(self, order: Any) -> BrokerPreview:
            with session_scope(books.db) as s:  # the operator halves the size meanwhile
                row = s.get(Order, order_id)
                assert row is not None
                service.override(s, row, "operator", "smaller", books.clock.now, quantity=1,
                                 limit_price=Decimal("5.10"))
            return super().preview(order)

    order = service.submit_one(books.db, books.settings, OverrideDuringPreview(books.broker), order_id,
                               books.clock.now)
    assert order.status == "approved"  # left for the next cycle, which previews what will be sent
    assert books.broker.order(order.client_order_id) is None
    order = service.submit_one(books.db, books.settings, Previewing(books.broker), order_id, books.clock.now)
    assert order.status in ("submitted", "filled")
    assert order.limit_price == Decimal("5.10")


def test_an_unavailable_broker_leaves_the_order_approved_and_writes_nothing(books: Books) -> None:  # noqa: F811
    from engine.execution.ports import BrokerUnavailable

    order_id = _approved_entry(books)

    class Down(Previewing):
        def account(self) -> Any:
            raise BrokerUnavailable("connection reset")

    with read_scope(books.db) as s:
        events = len(s.exec(select(OrderEvent).where(OrderEvent.order_id == order_id)).all())
    order = service.submit_one(books.db, books.settings, Down(books.broker), order_id, books.clock.now)
    assert order.status == "approved"
    with read_scope(books.db) as s:
        assert len(s.exec(select(OrderEvent).where(OrderEvent.order_id == order_id)).all()) == events


# --- the console's login check on every reload ---------------------------------------------------------------


def test_a_console_reload_checks_its_login_without_the_write_lock(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    auth.set_password(migrated_sqlite, "correct horse battery")
    token = auth.issue_token(migrated_sqlite, hours=8)
    holding, release = threading.Event(), threading.Event()

    def job_writing() -> None:  # e.g. the scheduler applying fills: holds the write lock for a while
        with session_scope(migrated_sqlite) as s:
            set_kill_switch(s, False, "engine", datetime.now(UTC))
            s.flush()
            holding.set()
            release.wait(3 * FAST)

    t = threading.Thread(target=job_writing)
    t.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        assert auth.ensure_password(migrated_sqlite, "correct horse battery")  # app.gate on every reload
        assert auth.verify_token(migrated_sqlite, token)
        assert auth.issue_token(migrated_sqlite, hours=8) is not None
        took = time.monotonic() - started
    finally:
        release.set()
        t.join()
    assert took < FAST, f"a reload waited {took:.1f} s for a job's write transaction"
    # a changed configured password is still stored (a short write), and voids the old token
    assert auth.ensure_password(migrated_sqlite, "another horse battery")
    assert auth.check_login(migrated_sqlite, "another horse battery").ok
    assert not auth.verify_token(migrated_sqlite, token)

