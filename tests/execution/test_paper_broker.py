"""The paper broker against a hand-set quote source: every expected number below is computed by hand.

Slippage rule (defaults): fill = mid + 0.25 x (natural - mid), rounded up to the cent (net debit
convention: a credit is negative, so "up" always means worse for us).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.config import RiskSettings
from engine.execution.brokers.paper import PaperBroker, PaperConfig
from engine.execution.brokers.quotes import InstrumentQuote, SimQuoteSource, UnknownInstrument, parse_option_symbol
from engine.execution.ports import (
    AssetType,
    Broker,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    Side,
)
from engine.risk import GatePass, Intent, PortfolioRisk, ProposedOrder, evaluate

ROOT = Path(__file__).resolve().parents[2]
NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=NY)  # a Monday session, market open
EXP = date(2026, 3, 20)  # a Friday session


def occ(und: str, exp: date, right: str, strike: str) -> str:
    return f"{und:<6}{exp:%y%m%d}{right}{int(D(strike) * 1000):08d}"


C100, C105, C110, C120 = (occ("XYZ", EXP, "C", k) for k in ("100", "105", "110", "120"))
P90, P95 = occ("ABC", EXP, "P", "90"), occ("ABC", EXP, "P", "95")


class FakeQuotes:
    """Hand-set quotes; anything not set does not exist."""

    def __init__(self) -> None:
        self.book: dict[str, InstrumentQuote] = {}
        self.settle: dict[tuple[str, date], D] = {}

    def set(self, instrument: str, bid: str, ask: str, volume: int = 1000) -> None:
        self.book[instrument] = InstrumentQuote(D(bid), D(ask), volume, 5000, None)

    def quote(self, instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        try:
            return self.book[instrument]
        except KeyError:
            raise UnknownInstrument(instrument) from None

    def settlement_price(self, underlying: str, day: date) -> D:
        return self.settle[(underlying, day)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def opt(instrument: str, side: Side, ratio: int = 1) -> Leg:
    spec = parse_option_symbol(instrument)
    assert spec is not None
    return Leg(instrument, side, ratio, AssetType.option, spec.underlying, spec.right, spec.strike, spec.expiry)


def stock(symbol: str, side: Side) -> Leg:
    return Leg(symbol, side, 1, AssetType.stock, symbol)


def gate(cid: str, legs: list[Leg], qty: int, limit: str, intent: Intent = Intent.open,
         held: int | None = None, tif: str = "day") -> GatePass:
    """A real pass from the real gate (huge equity so the gate never stands in the way)."""
    order = ProposedOrder(client_order_id=cid, underlying=legs[0].underlying, sector="Information Technology",
                          intent=intent, legs=tuple(legs), quantity=qty, limit_price=D(limit),
                          max_loss_per_unit=D("1"), buying_power_per_unit=D("1"), position_quantity=held,
                          time_in_force=tif)
    big = D("1000000000")
    decision = evaluate(order, PortfolioRisk(big, big, big, 0, D("0")), RiskSettings())
    assert decision.approved, decision.summary()
    assert decision.gate_pass is not None
    return decision.gate_pass


@pytest.fixture
def quotes() -> FakeQuotes:
    q = FakeQuotes()
    q.set(C100, "2.00", "2.20")  # mid 2.10, half spread 0.10
    q.set(C105, "1.00", "1.10")  # mid 1.05, half 0.05
    q.set(C110, "0.50", "0.60")
    q.set(C120, "0.10", "0.20")
    q.set(P95, "1.50", "1.60")  # mid 1.55, half 0.05
    q.set(P90, "0.60", "0.70")  # mid 0.65, half 0.05
    q.set("XYZ", "109.98", "110.02")
    q.set("ABC", "91.98", "92.02")
    return q


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def make(tmp_path: Path, quotes: FakeQuotes, clock: Clock, **cfg: object) -> PaperBroker:
    return PaperBroker(tmp_path / "paper.db", quotes, clock, PaperConfig(**cfg))  # type: ignore[arg-type]


@pytest.fixture
def broker(tmp_path: Path, quotes: FakeQuotes, clock: Clock) -> Iterator[PaperBroker]:
    b = make(tmp_path, quotes, clock)
    yield b
    assert b.check_books() == []
    b.close()


def test_is_a_broker_and_starts_with_its_cash(broker: PaperBroker) -> None:
    assert isinstance(broker, Broker)
    acct = broker.account()
    assert (acct.cash, acct.buying_power, acct.equity) == (D("100000"), D("100000"), D("100000"))
    assert broker.positions() == [] and broker.fills() == [] and broker.events() == []


def test_buy_fills_at_mid_plus_slippage_then_sell_to_close(broker: PaperBroker, quotes: FakeQuotes) -> None:
    # C100 2.00/2.20: mid 2.10 + 0.25 x 0.10 = 2.125 -> 2.13 (up to the cent)
    order = broker.submit(gate("buy-1", [opt(C100, Side.buy)], 3, "2.20"))
    assert (order.status, order.filled_quantity, order.avg_fill_price) == (BrokerOrderStatus.filled, 3, D("2.13"))
    [fill] = broker.fills("buy-1")
    assert (fill.side, fill.quantity, fill.price) == (Side.buy, 3, D("2.13"))
    assert (fill.commission, fill.fees) == (D("3.00"), D("0.30"))  # $1/contract to open, $0.10/contract fees
    # cash: 100000 - 2.13 x 100 x 3 (639.00) - 3.00 - 0.30 = 99357.70
    acct = broker.account()
    assert acct.cash == D("99357.70") and acct.buying_power == D("99357.70")
    assert acct.equity == D("99987.70")  # + 3 x 100 x mid 2.10 = 630.00
    [pos] = broker.positions()
    assert (pos.instrument, pos.quantity, pos.avg_price, pos.underlying) == (C100, 3, D("2.13"), "XYZ")

    # the quote moves up: 2.50/2.70, mid 2.60. Selling: net -2.60 + 0.25 x (-2.50 + 2.60) = -2.575 -> -2.57
    quotes.set(C100, "2.50", "2.70")
    sold = broker.submit(gate("sell-1", [opt(C100, Side.sell)], 3, "-2.50", Intent.close, held=3))
    assert (sold.status, sold.avg_fill_price) == (BrokerOrderStatus.filled, D("-2.57"))
    [fill] = broker.fills("sell-1")
    assert (fill.price, fill.commission, fill.fees) == (D("2.57"), D("0.00"), D("0.30"))  # $0 to close
    # cash: 99357.70 + 2.57 x 300 (771.00) - 0.30 = 100128.40; realised 771 - 639 = 132
    assert broker.account().cash == D("100128.40")
    assert broker.realized_pnl() == D("132.00")
    assert broker.positions() == []


def test_fills_only_when_marketable_and_later_when_the_quote_moves(broker: PaperBroker, quotes: FakeQuotes,
                                                                   clock: Clock) -> None:
    order = broker.submit(gate("rest-1", [opt(C100, Side.buy)], 2, "2.10"))  # would fill at 2.13 > 2.10
    assert (order.status, order.filled_quantity, order.avg_fill_price) == (BrokerOrderStatus.working, 0, None)
    assert broker.process() == [] and broker.fills() == []
    assert broker.account().cash == D("100000")
    # 1.90/2.10: mid 2.00 + 0.025 = 2.025 -> 2.03 <= 2.10: fills now
    quotes.set(C100, "1.90", "2.10")
    clock.now = T0 + timedelta(minutes=5)
    [fill] = broker.process()
    assert (fill.price, fill.quantity, fill.at) == (D("2.03"), 2, clock.now)
    assert broker.order("rest-1").status is BrokerOrderStatus.filled  # type: ignore[union-attr]
    assert broker.process() == []  # nothing left to fill
    # 100000 - 406.00 - 2.00 - 0.20
    assert broker.account().cash == D("99591.80")


def test_partial_fills_by_volume(broker: PaperBroker, quotes: FakeQuotes) -> None:
    quotes.set(C100, "2.00", "2.20", volume=10)  # our fills today stay within 0.2 x 10 = 2 contracts
    order = broker.submit(gate("part-1", [opt(C100, Side.buy)], 5, "2.20"))
    assert (order.status, order.filled_quantity) == (BrokerOrderStatus.working, 2)
    broker.process()  # the day's volume has not grown: the 2 already taken use up the allowance
    assert broker.order("part-1").filled_quantity == 2  # type: ignore[union-attr]
    quotes.set(C100, "2.00", "2.20", volume=20)  # 0.2 x 20 = 4 in all today: 2 more
    broker.process()
    assert broker.order("part-1").filled_quantity == 4  # type: ignore[union-attr]
    quotes.set(C100, "2.00", "2.20", volume=25)  # 5 in all: the last one
    broker.process()
    done = broker.order("part-1")
    assert done is not None and (done.status, done.filled_quantity, done.avg_fill_price) == (
        BrokerOrderStatus.filled, 5, D("2.13"))
    fills = broker.fills("part-1")
    assert [f.quantity for f in fills] == [2, 2, 1]
    assert len({f.fill_id for f in fills}) == 3
    # 100000 - 5 x 213.00 - 5 x 1.00 - 5 x 0.10
    assert broker.account().cash == D("98929.50")
    quotes.set(C105, "1.00", "1.10", volume=0)  # no volume yet: still at least one contract per session
    assert broker.submit(gate("part-2", [opt(C105, Side.buy)], 3, "1.10")).filled_quantity == 1
    broker.process()
    assert broker.order("part-2").filled_quantity == 1  # type: ignore[union-attr]


def test_participation_is_cumulative_per_contract_per_session(broker: PaperBroker, quotes: FakeQuotes,
                                                               clock: Clock) -> None:
    # issue 11 #7: a 10-lot against 10 contracts of volume took 2 per attempt, so all 10 within 5 minutes.
    quotes.set(C100, "2.00", "2.20", volume=10)
    broker.submit(gate("ten", [opt(C100, Side.buy)], 10, "2.20"))
    for minute in range(1, 6):
        clock.now = T0 + timedelta(minutes=minute)
        broker.process()
    assert broker.order("ten").filled_quantity == 2  # type: ignore[union-attr]  # 20% of 10, for the whole day
    # another order on the same contract shares the allowance
    broker.submit(gate("other", [opt(C100, Side.buy)], 1, "2.20"))
    assert broker.order("other").filled_quantity == 0  # type: ignore[union-attr]
    # the next session starts afresh (its volume so far: 10 again -> 2 more)
    clock.now = T0 + timedelta(days=1)
    broker.submit(gate("ten-gtc", [opt(C100, Side.buy)], 3, "2.20", tif="gtc"))
    assert broker.order("ten-gtc").filled_quantity == 2  # type: ignore[union-attr]


def test_commission_cap_per_leg_holds_across_partial_fills(broker: PaperBroker, quotes: FakeQuotes) -> None:
    broker.submit(gate("cap-1", [opt(C100, Side.buy)], 15, "2.20"))
    [fill] = broker.fills("cap-1")
    assert (fill.commission, fill.fees) == (D("10.00"), D("1.50"))  # 15 x $1 capped at $10; fees uncapped
    quotes.set(C105, "1.00", "1.10", volume=40)  # 8 today
    broker.submit(gate("cap-2", [opt(C105, Side.buy)], 15, "1.10"))
    quotes.set(C105, "1.00", "1.10", volume=75)  # 15 today: the other 7
    broker.process()
    assert [(f.quantity, f.commission) for f in broker.fills("cap-2")] == [(8, D("8.00")), (7, D("2.00"))]


def test_debit_spread_fills_atomically(broker: PaperBroker) -> None:
    # long C100 (2.00/2.20), short C105 (1.00/1.10): mid 2.10 - 1.05 = 1.05; natural 2.20 - 1.00 = 1.20
    # fill 1.05 + 0.25 x 0.15 = 1.0875 -> 1.09. Legs: 2.10 + 0.025 = 2.125 -> 2.13 and 1.05 - 0.0125 = 1.0375
    # -> 1.03, net 1.10; the one cent residue comes off the wider leg: 2.12 - 1.03 = 1.09.
    order = broker.submit(gate("ds-1", [opt(C100, Side.buy), opt(C105, Side.sell)], 2, "1.15"))
    assert (order.status, order.filled_quantity, order.avg_fill_price) == (BrokerOrderStatus.filled, 2, D("1.09"))
    long_fill, short_fill = broker.fills("ds-1")
    assert (long_fill.instrument, long_fill.side, long_fill.quantity, long_fill.price) == (C100, Side.buy, 2, D("2.12"))
    assert (short_fill.instrument, short_fill.side, short_fill.quantity, short_fill.price) == (
        C105, Side.sell, 2, D("1.03"))
    assert long_fill.fill_id != short_fill.fill_id
    # 100000 - 1.09 x 100 x 2 (218.00) - commissions 2 + 2 - fees 0.20 + 0.20 = 99777.60
    acct = broker.account()
    assert acct.cash == D("99777.60")
    assert acct.buying_power == D("99777.60")  # a debit spread holds no margin
    assert {p.instrument: p.quantity for p in broker.positions()} == {C100: 2, C105: -2}


def test_debit_spread_partial_fills_keep_legs_together(broker: PaperBroker, quotes: FakeQuotes) -> None:
    quotes.set(C105, "1.00", "1.10", volume=15)  # the thinner leg caps today's fills at 3 spreads
    broker.submit(gate("ds-2", [opt(C100, Side.buy), opt(C105, Side.sell)], 5, "1.15"))
    quotes.set(C105, "1.00", "1.10", volume=25)  # 5 today: 2 more
    broker.process()
    fills = broker.fills("ds-2")
    assert [(f.instrument, f.quantity) for f in fills] == [(C100, 3), (C105, 3), (C100, 2), (C105, 2)]
    assert {p.instrument: p.quantity for p in broker.positions()} == {C100: 5, C105: -5}


def test_credit_spread_fills_and_holds_margin(broker: PaperBroker) -> None:
    # bull put: sell P95 (1.50/1.60), buy P90 (0.60/0.70). mid -1.55 + 0.65 = -0.90; natural -1.50 + 0.70
    # = -0.80; fill -0.90 + 0.25 x 0.10 = -0.875 -> -0.87 (a 0.87 credit). Legs: 1.5375 -> 1.53 (sold, down)
    # and 0.6625 -> 0.67 (bought, up): net -0.86; the residue goes to the first of the equally wide legs: 1.54.
    order = broker.submit(gate("cs-1", [opt(P95, Side.sell), opt(P90, Side.buy)], 2, "-0.80"))
    assert (order.status, order.avg_fill_price) == (BrokerOrderStatus.filled, D("-0.87"))
    assert [(f.side, f.price) for f in broker.fills("cs-1")] == [(Side.sell, D("1.54")), (Side.buy, D("0.67"))]
    # cash +0.87 x 100 x 2 = 174.00 - 4.00 - 0.40 = 100169.60; margin 5 x 100 x 2 = 1000.00
    acct = broker.account()
    assert acct.cash == D("100169.60")
    assert acct.buying_power == D("99169.60")  # = 100000 - ((5 - 0.87) x 200 + 4.40)
    # equity: cash + marks: -2 x 100 x 1.55 + 2 x 100 x 0.65 = -180.00
    assert acct.equity == D("99989.60")
    # closing the spread releases the margin
    order = broker.submit(gate("cs-close", [opt(P95, Side.buy), opt(P90, Side.sell)], 2, "1.00", Intent.close, 2))
    # mid 0.90, natural 1.60 - 0.60 = 1.00: 0.90 + 0.025 = 0.925 -> 0.93
    assert (order.status, order.avg_fill_price) == (BrokerOrderStatus.filled, D("0.93"))
    acct = broker.account()
    # 100169.60 - 186.00 - 0 commission - 0.40 fees
    assert acct.cash == acct.buying_power == D("99983.20")


def test_submit_is_idempotent(broker: PaperBroker) -> None:
    gp = gate("idem-1", [opt(C100, Side.buy)], 1, "2.20")
    first = broker.submit(gp)
    again = broker.submit(gp)
    same_id_other_order = broker.submit(gate("idem-1", [opt(C105, Side.buy)], 7, "1.10"))
    assert first == again == same_id_other_order
    assert len(broker.fills()) == 1
    assert broker.account().cash == D("99785.90")  # one fill only: 100000 - 213 - 1 - 0.10
    assert broker.order("never-sent") is None


def test_rejections_are_raised_and_recorded(tmp_path: Path, quotes: FakeQuotes, clock: Clock) -> None:
    broker = make(tmp_path, quotes, clock, starting_cash=D("1000"))
    cases = {
        "unknown": (gate("rj-unknown", [opt(occ("XYZ", EXP, "C", "101"), Side.buy)], 1, "5"), "unknown contract"),
        "not-occ": (gate("rj-occ", [Leg("NOPE", Side.buy)], 1, "5"), "unknown contract"),
        "expired": (gate("rj-expired", [opt(occ("XYZ", date(2026, 2, 20), "C", "100"), Side.buy)], 1, "5"),
                    "expired"),
        # 5 x 2.20 x 100 = 1100 + 5.50 > 1000
        "buying power": (gate("rj-bp", [opt(C100, Side.buy)], 5, "2.20"), "insufficient buying power"),
        # credit spread: (5 - 0.80) x 100 x 3 + 6.60 = 1266.60 > 1000
        "margin": (gate("rj-margin", [opt(P95, Side.sell), opt(P90, Side.buy)], 3, "-0.80"),
                   "insufficient buying power"),
        "naked": (gate("rj-naked", [opt(C105, Side.sell)], 1, "-0.90"), "naked"),
        "over-close": (gate("rj-close", [opt(C100, Side.sell)], 1, "-1", Intent.close, held=1), "cannot sell to close"),
        "short stock": (gate("rj-short", [stock("XYZ", Side.sell)], 10, "-100"), "short selling"),
        "tif": (gate("rj-tif", [opt(C100, Side.buy)], 1, "2.20", tif="fok"), "time in force"),
    }
    for name, (gp, words) in cases.items():
        with pytest.raises(BrokerRejected, match=words):
            broker.submit(gp)
        recorded = broker.order(gp.client_order_id)
        assert recorded is not None and recorded.status is BrokerOrderStatus.rejected, name
        assert words in recorded.reason and recorded.filled_quantity == 0
        assert broker.submit(gp) == recorded  # a repeat returns the rejected order, nothing new
    # 4 contracts fit: 4 x 220 + 4.40 = 884.40 <= 1000; a second one that needs more than what is left does not
    broker.submit(gate("ok-4", [opt(C100, Side.buy)], 4, "2.20"))
    assert broker.account().cash == D("1000") - D("852.00") - D("4.40")  # filled at 2.13, not the limit
    with pytest.raises(BrokerRejected, match="insufficient buying power"):
        broker.submit(gate("rj-bp2", [opt(C105, Side.buy)], 2, "1.10"))
    # over-close: 4 held, a working close for 3 leaves only 1 to close
    quotes.set(C100, "1.00", "1.10")
    broker.submit(gate("close-3", [opt(C100, Side.sell)], 3, "-5.00", Intent.close, held=4))
    with pytest.raises(BrokerRejected, match="cannot sell to close 2"):
        broker.submit(gate("close-2", [opt(C100, Side.sell)], 2, "-1.00", Intent.close, held=4))
    assert broker.fills() == broker.fills("ok-4")
    assert broker.check_books() == []
    broker.close()


def test_working_orders_hold_buying_power(tmp_path: Path, quotes: FakeQuotes, clock: Clock) -> None:
    broker = make(tmp_path, quotes, clock, starting_cash=D("1000"))
    broker.submit(gate("hold-1", [opt(C100, Side.buy)], 4, "2.00"))  # rests; holds 4 x 200 + 4.40 = 804.40
    broker.submit(gate("hold-2", [opt(C105, Side.buy)], 1, "1.00"))  # rests; holds 100 + 1.10: 905.50 in all
    with pytest.raises(BrokerRejected, match=r"available \$94\.50"):
        broker.submit(gate("hold-3", [opt(C105, Side.buy)], 1, "1.00"))  # needs 101.10 more
    broker.cancel("hold-1")
    broker.submit(gate("hold-4", [opt(C105, Side.buy)], 1, "1.00"))  # room again
    broker.close()


def test_no_fill_without_a_real_market_and_feed_failures_are_unavailable(broker: PaperBroker,
                                                                         quotes: FakeQuotes) -> None:
    quotes.set(C120, "0.00", "0.00")  # nobody offers it: even a generous limit does not buy at 0
    assert broker.submit(gate("zero-1", [opt(C120, Side.buy)], 1, "0.50")).status is BrokerOrderStatus.working
    assert broker.fills() == []

    def broken(instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        raise ConnectionError("feed down")

    quotes.quote = broken  # type: ignore[method-assign]
    with pytest.raises(BrokerUnavailable, match="feed down"):
        broker.submit(gate("feed-1", [opt(C100, Side.buy)], 1, "2.20"))
    assert broker.order("feed-1") is None  # nothing was written: the engine may safely retry
    with pytest.raises(BrokerRejected, match="its leg says stock"):
        broker.submit(gate("mismatch", [Leg(C100, Side.buy, 1, AssetType.stock, "XYZ")], 1, "2.20"))


def test_only_gate_passes_are_accepted(broker: PaperBroker) -> None:
    gp = gate("pass-1", [opt(C100, Side.buy)], 1, "2.20")
    forged = object.__new__(GatePass)
    for k in GatePass.__slots__[1:]:
        object.__setattr__(forged, k, getattr(gp, k))
    for bad in (object(), "pass-1", forged):
        with pytest.raises(PermissionError):
            broker.submit(bad)  # type: ignore[arg-type]
    with pytest.raises(PermissionError):
        GatePass(object(), None, T0)  # type: ignore[arg-type]
    assert broker.order("pass-1") is None and broker.fills() == []


def test_expiry_settlement(broker: PaperBroker, quotes: FakeQuotes, clock: Clock) -> None:
    broker.submit(gate("x-c100", [opt(C100, Side.buy)], 2, "2.20"))  # 2 x 213 + 2 + 0.20 = 428.20
    broker.submit(gate("x-c110", [opt(C110, Side.buy)], 1, "0.60"))  # 0.55 + 0.0125 -> 0.57: 57 + 1.10
    broker.submit(gate("x-c120", [opt(C120, Side.buy)], 1, "0.20"))  # 0.15 + 0.0125 -> 0.17: 17 + 1.10
    broker.submit(gate("x-put", [opt(P95, Side.sell), opt(P90, Side.buy)], 1, "-0.80"))  # +87 - 2 - 0.20
    cash = D("100000") - D("428.20") - D("58.10") - D("18.10") + D("84.80")
    assert broker.account().cash == cash
    quotes.settle[("XYZ", EXP)] = D("110.00")  # C100 ITM by 10; C110 exactly at the money: not exercised
    quotes.settle[("ABC", EXP)] = D("92.00")  # P95 ITM by 3 (assigned); P90 OTM
    clock.now = datetime(2026, 3, 20, 15, 0, tzinfo=NY)
    with pytest.raises(ValueError, match="before that session's close"):
        broker.settle_expiries(EXP)
    clock.now = datetime(2026, 3, 20, 17, 0, tzinfo=NY)
    events = broker.settle_expiries(EXP)
    got = {e.instrument: (e.kind, e.quantity, e.cash, e.stock_instrument, e.stock_quantity, e.stock_price)
           for e in events}
    assert got == {
        C100: ("exercised", -2, D("-20000.00"), "XYZ", 200, D("100")),  # 200 shares at 100
        C110: ("expired", -1, D("0.00"), None, 0, D("0")),
        C120: ("expired", -1, D("0.00"), None, 0, D("0")),
        P95: ("assigned", 1, D("-9500.00"), "ABC", 100, D("95")),  # 100 shares put to us at 95
        P90: ("expired", -1, D("0.00"), None, 0, D("0")),
    }
    assert len({e.event_id for e in events}) == 5
    assert broker.events() == events
    cash -= D("29500")
    assert broker.account().cash == cash
    assert {(p.instrument, p.quantity, p.avg_price, p.asset) for p in broker.positions()} == {
        ("XYZ", 200, D("100.00"), AssetType.stock), ("ABC", 100, D("95.00"), AssetType.stock)}
    assert broker.settle_expiries(EXP) == [] and len(broker.events()) == 5  # idempotent
    # the delivered shares are ordinary stock: sell them. 109.98/110.02: -110 + 0.25 x 0.02 -> -109.99
    clock.now = datetime(2026, 3, 23, 10, 0, tzinfo=NY)
    sold = broker.submit(gate("sell-xyz", [stock("XYZ", Side.sell)], 200, "-109.00", Intent.close, held=200))
    assert (sold.status, sold.avg_fill_price) == (BrokerOrderStatus.filled, D("-109.99"))
    [fill] = broker.fills("sell-xyz")
    assert (fill.price, fill.commission, fill.fees) == (D("109.99"), D("0"), D("0"))
    assert broker.account().cash == cash + D("21998.00")


def test_short_call_assigned_against_a_spread(broker: PaperBroker, quotes: FakeQuotes, clock: Clock) -> None:
    broker.submit(gate("cc", [opt(C100, Side.buy), opt(C105, Side.sell)], 1, "1.15"))
    cash = broker.account().cash
    quotes.settle[("XYZ", EXP)] = D("107.50")  # both ITM: +100 at 100 and -100 at 105 -> flat, +500 cash
    clock.now = datetime(2026, 3, 20, 16, 30, tzinfo=NY)
    events = broker.settle_expiries(EXP)
    assert sorted((e.kind, e.stock_quantity, e.cash) for e in events) == [
        ("assigned", -100, D("10500.00")), ("exercised", 100, D("-10000.00"))]
    assert broker.account().cash == cash + D("500")
    assert broker.positions() == []


def test_day_orders_expire_at_the_close_and_cancel(broker: PaperBroker, quotes: FakeQuotes, clock: Clock) -> None:
    broker.submit(gate("day-1", [opt(C100, Side.buy)], 1, "2.00"))
    broker.submit(gate("gtc-1", [opt(C100, Side.buy)], 1, "2.00", tif="gtc"))
    broker.submit(gate("cxl-1", [opt(C100, Side.buy)], 1, "2.00"))
    cancelled = broker.cancel("cxl-1")
    assert cancelled.status is BrokerOrderStatus.cancelled
    assert broker.cancel("cxl-1") == cancelled  # cancelling again changes nothing
    with pytest.raises(BrokerRejected, match="unknown order"):
        broker.cancel("nope")
    assert broker.expire_day_orders(datetime(2026, 3, 2, 15, 59, tzinfo=NY)) == []
    [expired] = broker.expire_day_orders(datetime(2026, 3, 2, 16, 0, tzinfo=NY))
    assert (expired.client_order_id, expired.status) == ("day-1", BrokerOrderStatus.expired)
    # after the close nothing fills even when marketable; the gtc order fills the next session
    quotes.set(C100, "1.80", "1.90")  # 1.85 + 0.0125 -> 1.87
    assert broker.process(datetime(2026, 3, 2, 17, 0, tzinfo=NY)) == []
    clock.now = datetime(2026, 3, 3, 9, 45, tzinfo=NY)
    [fill] = broker.process()
    assert (fill.client_order_id, fill.price) == ("gtc-1", D("1.87"))
    filled = broker.order("gtc-1")
    assert filled is not None and broker.cancel("gtc-1") == filled  # too late to cancel: unchanged
    assert broker.order("day-1").status is BrokerOrderStatus.expired  # type: ignore[union-attr]


def test_orders_before_the_open_rest_until_it(broker: PaperBroker, clock: Clock) -> None:
    clock.now = datetime(2026, 3, 2, 8, 0, tzinfo=NY)
    assert broker.submit(gate("pre-1", [opt(C100, Side.buy)], 1, "2.20")).status is BrokerOrderStatus.working
    assert broker.process() == []
    clock.now = datetime(2026, 3, 2, 9, 31, tzinfo=NY)
    assert [f.price for f in broker.process()] == [D("2.13")]
    ioc = broker.submit(gate("ioc-1", [opt(C100, Side.buy)], 1, "2.00", tif="ioc"))
    assert ioc.status is BrokerOrderStatus.cancelled and ioc.filled_quantity == 0


def test_books_survive_reopening(tmp_path: Path, quotes: FakeQuotes, clock: Clock) -> None:
    first = make(tmp_path, quotes, clock)
    first.submit(gate("re-1", [opt(C100, Side.buy)], 2, "2.20"))
    first.close()
    again = make(tmp_path, quotes, clock, starting_cash=D("5"))  # the venue's books win over a new config
    assert again.account().cash == D("100000") - D("426.00") - D("2.20")
    assert [p.quantity for p in again.positions()] == [2]
    assert again.check_books() == []
    again.close()


# --------------------------------------------------------------------------- crash safety

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from datetime import date, datetime
    from decimal import Decimal as D
    from zoneinfo import ZoneInfo
    from engine.config import RiskSettings
    from engine.execution.brokers.paper import PaperBroker, PaperConfig
    from engine.execution.brokers.quotes import InstrumentQuote, UnknownInstrument
    from engine.execution.ports import AssetType, Leg, Side
    from engine.risk import Intent, PortfolioRisk, ProposedOrder, evaluate

    db, mode, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    C100 = "XYZ   260320C00100000"
    C105 = "XYZ   260320C00105000"

    class Quotes:
        def quote(self, instrument, at, *, held=False):
            book = {C100: ("2.00", "2.20"), C105: ("1.00", "1.10")}
            if instrument not in book:
                raise UnknownInstrument(instrument)
            bid, ask = book[instrument]
            return InstrumentQuote(D(bid), D(ask), 25, 1000, None)
        def settlement_price(self, underlying, day):
            raise UnknownInstrument(underlying)

    now = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    broker = PaperBroker(db, Quotes(), lambda: now, PaperConfig())
    big = D("1000000000")

    def gate(cid, legs, qty, limit, intent, held=None):
        order = ProposedOrder(cid, "XYZ", "Tech", intent, tuple(legs), qty, D(limit), D("1"), D("1"),
                              position_quantity=held)
        return evaluate(order, PortfolioRisk(big, big, big, 0, D("0")), RiskSettings()).gate_pass

    def leg(instrument, side):
        return Leg(instrument, side, 1, AssetType.option, "XYZ")

    if mode == "mid-transaction":
        # die inside submit's transaction: after the fills are written, before the books are saved
        real = PaperBroker._save
        def dying_save(conn, books, now):
            if books.positions:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(conn, books, now)
        PaperBroker._save = staticmethod(dying_save)
        print("ready", flush=True)
        broker.submit(gate("doomed", [leg(C100, Side.buy), leg(C105, Side.sell)], 3, "1.20", Intent.open))
        print("survived", flush=True)
    else:
        i = 0
        while True:
            held = {p.instrument: p.quantity for p in broker.positions()}
            cid = f"{tag}-{i}"
            if held.get(C100, 0) >= 8:
                gp = gate(cid, [leg(C100, Side.sell), leg(C105, Side.buy)], 3, "-0.50", Intent.close, 8)
            else:
                gp = gate(cid, [leg(C100, Side.buy), leg(C105, Side.sell)], 10, "1.20", Intent.open)
            broker.submit(gp)
            broker.process()
            print(cid, flush=True)
            i += 1
""")


def _child(db: Path, mode: str, tag: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(db), mode, tag], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _assert_consistent(db: Path, quotes: FakeQuotes, clock: Clock) -> PaperBroker:
    broker = PaperBroker(db, quotes, clock, PaperConfig())
    assert broker.check_books() == []
    # recompute the cash from the public fills alone: starting cash minus every fill's cash flow
    flows = sum((-(1 if f.side is Side.buy else -1) * f.price * f.quantity * 100 - f.commission - f.fees
                 for f in broker.fills()), D("0"))
    assert broker.account().cash == D("100000") + flows
    for order in broker.orders():
        legs = [f for f in broker.fills(order.client_order_id)]
        assert sum(f.quantity for f in legs) == 2 * order.filled_quantity  # both legs, always together
    return broker


def test_sigkill_inside_a_transaction_leaves_no_trace(tmp_path: Path, quotes: FakeQuotes, clock: Clock) -> None:
    db = tmp_path / "crash.db"
    proc = _child(db, "mid-transaction", "t")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert "ready" in out and "survived" not in out
    broker = _assert_consistent(db, quotes, clock)
    assert broker.order("doomed") is None and broker.fills() == []
    assert broker.account().cash == D("100000")
    broker.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_keeps_the_books_consistent(tmp_path: Path, quotes: FakeQuotes,
                                                              clock: Clock) -> None:
    db = tmp_path / "crash.db"
    total = 0
    for round_no, delay in enumerate((0.05, 0.013, 0.031, 0.007)):
        proc = _child(db, "loop", f"r{round_no}")
        assert proc.stdout is not None
        for _ in range(8):  # let it get going, then kill it at an arbitrary moment
            if not proc.stdout.readline():
                pytest.fail(proc.stderr.read() if proc.stderr else "child died")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        broker = _assert_consistent(db, quotes, clock)
        assert len(broker.orders()) > total
        total = len(broker.orders())
        broker.close()


# --------------------------------------------------------------------------- the real simulated market


def test_sim_quote_source_on_the_sim_market(tmp_path: Path) -> None:
    from engine.data.sim import SimMarket

    market = SimMarket(seed=7, n_symbols=40)
    source = SimQuoteSource(market, cache_size=4)
    chain = market.option_chain("SPY", T0)
    spot = float(chain["underlying_price"].iloc[0])
    pick = chain[(chain["right"] == "C") & (chain["dte"] > 20) & (chain["volume"] > 20)]
    row = pick.iloc[(pick["strike"] - spot).abs().argsort().iloc[0]]
    q = source.quote(row["occ_symbol"], T0.replace(second=30))  # same minute: from the cached chain
    assert (q.bid, q.ask) == (D(str(row["bid"])), D(str(row["ask"])))
    assert q.volume == row["volume"] and q.underlying_price == D(str(row["underlying_price"]))
    assert source.misses == 1 and source.hits == 0
    source.quote(row["occ_symbol"], T0)
    assert source.hits == 1
    stock_q = source.quote("SPY", T0)
    assert stock_q.bid < stock_q.ask
    with pytest.raises(UnknownInstrument):
        source.quote(occ("SPY", row["expiry"], "C", "5000"), T0)
    with pytest.raises(UnknownInstrument):
        source.quote("NOSUCH", T0)
    assert source.settlement_price("SPY", date(2026, 3, 2)) == D(str(market.bar("SPY", date(2026, 3, 2))["close"]))
    far = occ("SPY", row["expiry"], "C", "200")  # far below today's strike range: not listed for new orders
    with pytest.raises(UnknownInstrument):
        source.quote(far, T0)
    assert source.quote(far, T0, held=True).bid > 0  # but a holder still gets a quote

    broker = PaperBroker(tmp_path / "sim.db", source, lambda: T0, PaperConfig())
    spec = parse_option_symbol(row["occ_symbol"])
    assert spec is not None
    leg = Leg(row["occ_symbol"], Side.buy, 1, AssetType.option, "SPY", spec.right, spec.strike, spec.expiry)
    order = broker.submit(gate("sim-1", [leg], 2, str(q.ask)))
    expected = (q.mid + D("0.25") * q.half_spread).quantize(D("0.01"), rounding="ROUND_CEILING")
    assert order.filled_quantity >= 1 and order.avg_fill_price == expected
    n = order.filled_quantity
    assert broker.account().cash == D("100000") - expected * 100 * n - D("1.00") * n - D("0.10") * n
    with pytest.raises(BrokerRejected, match="unknown contract"):
        broker.submit(gate("sim-2", [Leg(occ("SPY", row["expiry"], "C", "5000"), Side.buy, underlying="SPY")],
                           1, "1.00"))
    assert broker.check_books() == []
    broker.close()
