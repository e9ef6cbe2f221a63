"""Expiry, exercise and assignment of whole positions (issue 11 item 1), engine books against the paper broker.

Every number is computed by hand in the comments. Paper defaults: fill = mid + 0.25 x (natural - mid) rounded
up to the cent; $1.00 commission per option contract opened, $0 to close, $0.10 fee per contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from engine.config import Settings, load_settings
from engine.db import make_engine, session_scope
from engine.execution import service
from engine.execution.brokers.paper import PaperBroker
from engine.execution.brokers.quotes import InstrumentQuote, UnknownInstrument, parse_option_symbol
from engine.execution.ports import AssetType, Leg, Side
from engine.execution.reconcile import engine_cash, reconcile
from engine.models import Position
from engine.risk import Intent

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=NY)
EXP = date(2026, 3, 20)
AFTER_EXPIRY = datetime(2026, 3, 20, 17, 0, tzinfo=NY)
START = D("100000")


def occ(und: str, right: str, strike: str) -> str:
    return f"{und:<6}{EXP:%y%m%d}{right}{int(D(strike) * 1000):08d}"


C100, C110 = occ("XYZ", "C", "100"), occ("XYZ", "C", "110")
P100, P95 = occ("ABC", "P", "100"), occ("ABC", "P", "95")


class Quotes:
    def __init__(self) -> None:
        self.book: dict[str, InstrumentQuote] = {}
        self.settle: dict[tuple[str, date], D] = {}

    def set(self, instrument: str, bid: str, ask: str) -> None:
        self.book[instrument] = InstrumentQuote(D(bid), D(ask), 10_000, 5000, None)

    def quote(self, instrument: str, at: datetime, *, held: bool = False) -> InstrumentQuote:
        try:
            return self.book[instrument]
        except KeyError:
            raise UnknownInstrument(instrument) from None

    def settlement_price(self, underlying: str, day: date) -> D:
        return self.settle[(underlying, day)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Books:
    db: Engine
    broker: PaperBroker
    quotes: Quotes
    clock: Clock
    settings: Settings


@pytest.fixture
def books(tmp_path: Path) -> Iterator[Books]:
    db = make_engine(f"sqlite:///{tmp_path / 'engine.db'}")
    SQLModel.metadata.create_all(db)
    quotes, clock = Quotes(), Clock()
    quotes.set(C100, "5.00", "5.20")  # mid 5.10, half spread 0.10
    quotes.set(C110, "1.00", "1.10")  # mid 1.05, half spread 0.05
    quotes.set(P100, "4.00", "4.20")
    quotes.set(P95, "1.50", "1.60")
    quotes.set("XYZ", "104.98", "105.02")
    quotes.set("ABC", "96.98", "97.02")
    broker = PaperBroker(tmp_path / "paper.db", quotes, clock)
    settings = load_settings(data_dir=tmp_path / "var", risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100,
                                                              "max_heat_pct": 100, "max_sector_exposure_pct": 100})
    yield Books(db, broker, quotes, clock, settings)
    assert broker.check_books() == []
    broker.close()


def leg(instrument: str, side: Side) -> Leg:
    spec = parse_option_symbol(instrument)
    assert spec is not None
    return Leg(instrument, side, 1, AssetType.option, spec.underlying, spec.right, spec.strike, spec.expiry)


def trade(b: Books, key: str, legs: tuple[Leg, ...], qty: int, limit: str, intent: Intent = Intent.open,
          position_id: int | None = None, max_loss: str = "1000") -> int:
    spec = service.OrderSpec("test", key, legs[0].underlying, "Tech", "s", intent, legs, qty, D(limit), D(max_loss),
                             D(max_loss), position_id=position_id)
    with session_scope(b.db) as s:
        oid = service.propose(s, spec, b.settings, b.clock.now).id
    order = service.submit_one(b.db, b.settings, b.broker, oid, b.clock.now)
    assert order.status == "filled", order.status
    assert order.position_id is not None
    return order.position_id


def settle(b: Books, underlying: str, price: str) -> list[dict[str, object]]:
    b.quotes.settle[(underlying, EXP)] = D(price)
    b.clock.now = AFTER_EXPIRY
    b.broker.settle_expiries(EXP)
    run = reconcile(b.db, b.broker, START, b.clock.now)
    return list(run.differences)


def positions(b: Books) -> list[Position]:
    with Session(b.db) as s:
        return list(s.exec(select(Position).order_by(Position.id)).all())


def assert_cash_agrees(b: Books, expected: str) -> None:
    with Session(b.db) as s:
        assert engine_cash(s, START) == D(expected)
    assert b.broker.account().cash == D(expected)


def test_call_debit_spread_both_legs_in_the_money_realizes_payoff_minus_debit(books: Books) -> None:
    # buy C100 / sell C110 x2: mid 5.10 - 1.05 = 4.05, natural 5.20 - 1.00 = 4.20, fill 4.05 + 0.0375 -> 4.09
    pid = trade(books, "ds", (leg(C100, Side.buy), leg(C110, Side.sell)), 2, "4.20")
    # cash 100000 - 2 x 409 - commissions 4 x 1.00 - fees 4 x 0.10 = 99177.60
    assert_cash_agrees(books, "99177.60")
    # settles at 120: +200 shares at 100 (-20000) and -200 at 110 (+22000): flat, +2000
    assert settle(books, "XYZ", "120") == []
    [pos] = positions(books)
    assert pos.id == pid and pos.status == "closed" and pos.quantity == 0 and pos.max_loss == 0
    assert pos.realized_pnl == D("1177.60")  # payoff 2000 - debit 818 - fees 4.40
    assert_cash_agrees(books, "101177.60")
    assert books.broker.positions() == []


def test_debit_spread_only_long_leg_in_the_money_becomes_long_stock_with_premium_in_its_basis(books: Books) -> None:
    pid = trade(books, "ds", (leg(C100, Side.buy), leg(C110, Side.sell)), 2, "4.20")
    with session_scope(books.db) as s:
        p = s.get(Position, pid)
        assert p is not None
        p.stop = 95.0
        s.add(p)
    # settles at 105: C100 exercised (+200 shares, -20000), C110 expires
    assert settle(books, "XYZ", "105") == []
    option, stock = positions(books)
    assert option.status == "closed" and option.realized_pnl == D("-4.40")  # only the fees so far
    assert (stock.status, stock.structure, stock.quantity) == ("open", "stock", 200)
    assert Leg.from_dict(stock.legs[0]) == Leg("XYZ", Side.buy, 1, AssetType.stock, "XYZ")
    assert stock.entry_price == D("104.09")  # (818 + 20000) / 200 = strike 100 + debit 4.09
    assert stock.max_loss == D("1818.00")  # (104.09 - stop 95) x 200
    assert_cash_agrees(books, "79177.60")
    assert {(p.instrument, p.quantity) for p in books.broker.positions()} == {("XYZ", 200)}
    # sell the shares: bid 104.98 / ask 105.02 -> -105.00 + 0.25 x 0.02 -> -104.99, proceeds 20998
    books.clock.now = datetime(2026, 3, 23, 10, 0, tzinfo=NY)
    trade(books, "sell", (Leg("XYZ", Side.sell, 1, AssetType.stock, "XYZ"),), 200, "-104.00", Intent.close,
          position_id=stock.id, max_loss="0")
    _, stock = positions(books)
    assert stock.status == "closed" and stock.realized_pnl == D("180.00")  # (104.99 - 104.09) x 200
    assert_cash_agrees(books, "100175.60")  # 100000 - 4.40 + 180.00
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []


def test_bull_put_spread_short_leg_assigned_becomes_stock_at_strike_minus_credit(books: Books) -> None:
    # sell P100 / buy P95: mid -4.10 + 1.55 = -2.55, natural -4.00 + 1.60 = -2.40, fill -2.5125 -> -2.51
    trade(books, "bps", (leg(P100, Side.sell), leg(P95, Side.buy)), 1, "-2.40", max_loss="249")
    assert_cash_agrees(books, "100248.80")  # + 251 - 2 x 1.00 - 2 x 0.10
    # settles at 97: P100 assigned (+100 shares at 100, -10000), P95 expires
    assert settle(books, "ABC", "97") == []
    option, stock = positions(books)
    assert option.status == "closed" and option.realized_pnl == D("-2.20")
    assert (stock.quantity, stock.entry_price) == (100, D("97.49"))  # 100 - 2.51 credit
    assert Leg.from_dict(stock.legs[0]).side is Side.buy
    assert stock.max_loss == D("9749.00")  # no stop on this position: the whole basis is at risk
    assert_cash_agrees(books, "90248.80")
    assert {(p.instrument, p.quantity) for p in books.broker.positions()} == {("ABC", 100)}


def test_bull_put_spread_short_put_assigned_and_long_put_exercised_is_max_loss(books: Books) -> None:
    trade(books, "bps", (leg(P100, Side.sell), leg(P95, Side.buy)), 1, "-2.40", max_loss="249")
    # settles at 90: +100 at 100 (-10000) and -100 at 95 (+9500): flat, -500
    assert settle(books, "ABC", "90") == []
    [pos] = positions(books)
    assert pos.status == "closed" and pos.realized_pnl == D("-251.20")  # credit 251 - payoff 500 - fees 2.20
    assert_cash_agrees(books, "99748.80")
    assert books.broker.positions() == []


def test_long_call_exercised_becomes_stock_with_the_premium_in_its_basis(books: Books) -> None:
    # buy C100 x1: 5.10 + 0.025 -> 5.13; cash -513 - 1.00 - 0.10
    trade(books, "lc", (leg(C100, Side.buy),), 1, "5.20")
    assert_cash_agrees(books, "99485.90")
    assert settle(books, "XYZ", "112") == []
    option, stock = positions(books)
    assert option.status == "closed" and option.realized_pnl == D("-1.10")
    assert (stock.quantity, stock.entry_price, stock.status) == (100, D("105.13"), "open")
    assert_cash_agrees(books, "89485.90")
    # the broker holds exactly the delivered shares at the strike, and nothing of the call
    assert [(p.instrument, p.quantity, p.avg_price) for p in books.broker.positions()] == [("XYZ", 100, D("100"))]


def test_out_of_the_money_expiry_loses_the_premium(books: Books) -> None:
    trade(books, "lc", (leg(C100, Side.buy),), 1, "5.20")
    assert settle(books, "XYZ", "99") == []
    [pos] = positions(books)
    assert pos.status == "closed" and pos.realized_pnl == D("-514.10")
    assert_cash_agrees(books, "99485.90")


def test_offsetting_engine_positions_are_a_reconciliation_difference(books: Books) -> None:
    with session_scope(books.db) as s:
        for side in (Side.buy, Side.sell):
            stock_leg = Leg("XYZ", side, 1, AssetType.stock, "XYZ")
            s.add(Position(strategy="t", symbol="XYZ", structure="stock", legs=[stock_leg.to_dict()], quantity=100,
                           initial_quantity=100, entry_price=D("100") * stock_leg.sign, status="open", opened_at=T0))
    diffs = reconcile(books.db, books.broker, START, T0).differences
    assert [d["kind"] for d in diffs] == ["offsetting_positions"]


def _signal(b: Books, direction: str) -> int:
    from engine.models import Signal

    with session_scope(b.db) as s:
        sig = Signal(strategy="test", symbol="XYZ", data_date=date(2026, 2, 27), direction=direction,
                     zone="extended" if direction == "neutral" else "entry", entry_price=105.0, atr=3.0,
                     stop=0.0 if direction == "neutral" else 100.5,
                     targets=[] if direction == "neutral" else [120.0, 123.0, 126.0, 129.0])
        s.add(sig)
        s.flush()
        assert sig.id is not None
        return sig.id


def test_an_iron_condor_position_gets_no_atr_stop_or_targets(books: Books) -> None:
    # even a signal that carries long levels (an older row) must not put them on a neutral condor
    sid = _signal(books, "long")
    legs = (leg(C100, Side.sell), leg(C110, Side.buy))  # the call side of a condor is enough for the levels
    spec = service.OrderSpec("test", "ic", "XYZ", "Tech", "iron_condor", Intent.open, legs, 1, D("-3.80"),
                             D("1000"), D("1000"), signal_id=sid)
    with session_scope(books.db) as s:
        oid = service.propose(s, spec, books.settings, books.clock.now).id
    order = service.submit_one(books.db, books.settings, books.broker, oid, books.clock.now)
    assert order.status == "filled"
    [pos] = positions(books)
    assert pos.structure == "iron_condor" and pos.stop == 0.0 and pos.targets == []
    assert (pos.entry_atr, pos.underlying_entry) == (3.0, 105.0)  # kept for reference


def test_a_long_entry_still_gets_the_signals_levels(books: Books) -> None:
    sid = _signal(books, "long")
    spec = service.OrderSpec("test", "lc", "XYZ", "Tech", "long_call", Intent.open, (leg(C100, Side.buy),), 1,
                             D("5.20"), D("520"), D("520"), signal_id=sid)
    with session_scope(books.db) as s:
        oid = service.propose(s, spec, books.settings, books.clock.now).id
    assert service.submit_one(books.db, books.settings, books.broker, oid, books.clock.now).status == "filled"
    [pos] = positions(books)
    assert (pos.stop, pos.targets) == (100.5, [120.0, 123.0, 126.0, 129.0])


def stock(symbol: str, side: Side) -> Leg:
    return Leg(symbol, side, 1, AssetType.stock, symbol)


def order(b: Books, key: str, structure: str, legs: tuple[Leg, ...], qty: int, limit: str, max_loss: str,
          intent: Intent = Intent.open, position_id: int | None = None, signal_id: int | None = None):  # type: ignore[no-untyped-def]
    spec = service.OrderSpec("test", key, legs[0].underlying, "Tech", structure, intent, legs, qty, D(limit),
                             D(max_loss), D(max_loss), position_id=position_id, signal_id=signal_id)
    with session_scope(b.db) as s:
        oid = service.propose(s, spec, b.settings, b.clock.now).id
    return service.submit_one(b.db, b.settings, b.broker, oid, b.clock.now)


def test_covered_call_structure_assigned_nets_its_own_shares(books: Books) -> None:
    # one unit = buy 100 XYZ + sell 1 C100. mid 105.00 - 5.10 = 99.90, natural 105.02 - 5.00 = 100.02,
    # fill ceil(99.90 + 0.25 x 0.12) = 99.93: stock 105.005 -> 105.01, call 5.075 -> 5.07, net 99.94; the
    # -0.01 residue goes to the wider quote (the call): 5.08. Cash -10501 + 508 - 1.00 - 0.10 = -9994.10.
    legs = (Leg("XYZ", Side.buy, 100, AssetType.stock, "XYZ"), leg(C100, Side.sell))
    filled = order(books, "cc", "covered_call", legs, 1, "100.02", "9993")
    assert filled.status == "filled" and filled.avg_fill_price == D("99.93")
    assert_cash_agrees(books, "90005.90")
    # settles at 112: C100 assigned, -100 shares at 100 (+10000) against the position's own 100 shares
    assert settle(books, "XYZ", "112") == []
    [pos] = positions(books)
    # P&L = 10000 - 9993 - fees 1.10 = 5.90 (stock 105.01 -> 100: -501; call premium kept: +508)
    assert pos.status == "closed" and pos.quantity == 0 and pos.realized_pnl == D("5.90")
    assert_cash_agrees(books, "100005.90")
    assert books.broker.positions() == []


def _held_stock(b: Books) -> int:
    # buy 100 XYZ: mid 105.00, fill ceil(105.00 + 0.25 x 0.02) = 105.01 -> cash -10501
    filled = order(b, "stk", "stock", (stock("XYZ", Side.buy),), 100, "105.02", "10")  # risk per share
    assert filled.status == "filled" and filled.position_id is not None
    return filled.position_id


def test_covered_call_written_on_held_shares_is_accepted_and_an_uncovered_one_refused(books: Books) -> None:
    _held_stock(books)
    # sell 1 C110 against the 100 shares: mid -1.05, natural -1.00, fill ceil(-1.0375) = -1.03; +103 - 1.10
    call = order(books, "cc", "covered_call", (leg(C110, Side.sell),), 1, "-1.00", "0")
    assert call.status == "filled"
    assert_cash_agrees(books, "89600.90")  # 100000 - 10501 + 101.90
    # a second call has no shares left to cover it: the venue refuses a naked short call
    again = order(books, "cc2", "covered_call", (leg(C110, Side.sell),), 1, "-1.00", "0")
    assert again.status == "rejected"
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []


def test_covered_call_on_held_shares_assigned_calls_the_shares_away(books: Books) -> None:
    stock_id = _held_stock(books)
    call_id = order(books, "cc", "covered_call", (leg(C110, Side.sell),), 1, "-1.00", "0").position_id
    # settles at 112: C110 assigned, -100 shares at 110 (+11000) net against the held 100 shares
    assert settle(books, "XYZ", "112") == []
    by_id = {p.id: p for p in positions(books)}
    assert len(by_id) == 2  # no short stock position appears next to the long one
    held, call = by_id[stock_id], by_id[call_id]
    # the shares are sold at 110 + the 1.03 premium = 111.03: (111.03 - 105.01) x 100 = 602.00
    assert (held.status, held.quantity, held.realized_pnl, held.max_loss) == ("closed", 0, D("602.00"), D("0"))
    assert (call.status, call.quantity, call.realized_pnl) == ("closed", 0, D("-1.10"))  # its fees
    assert_cash_agrees(books, "100600.90")  # 100000 + 602.00 - 1.10
    assert books.broker.positions() == []


def test_condor_short_call_assigned_is_short_stock_with_a_stop_based_risk(books: Books) -> None:
    sid = _signal(books, "neutral")  # ATR 3.00
    # the condor's call side: sell C100 / buy C110, fill -4.01 (see above); cash +401 - 2.20 = +398.80
    assert order(books, "ic", "iron_condor", (leg(C100, Side.sell), leg(C110, Side.buy)), 1, "-3.80", "599",
                 signal_id=sid).status == "filled"
    assert_cash_agrees(books, "100398.80")
    # settles at 105: C100 assigned (-100 shares at 100, +10000), C110 expires
    assert settle(books, "XYZ", "105") == []
    _, short = positions(books)
    assert (short.structure, short.quantity, short.status) == ("stock", 100, "open")
    assert Leg.from_dict(short.legs[0]).side is Side.sell
    assert short.entry_price == D("-104.01")  # proceeds 100 + the 4.01 credit per share
    # mirrored stop: 104.01 + 1.5 x 3.00 = 108.51 (within 10% = 114.41): risk 4.50 x 100, not the notional
    assert short.stop == pytest.approx(108.51) and short.targets == []
    assert short.max_loss == D("450.00") and short.initial_risk == D("450.00")
    assert {(p.instrument, p.quantity) for p in books.broker.positions()} == {("XYZ", -100)}
    # bought back by rule: ask side 105.00 + 0.25 x 0.02 -> 105.01; P&L 10401 - 10501 = -100.00
    books.clock.now = datetime(2026, 3, 23, 10, 0, tzinfo=NY)
    assert order(books, "cover", "stock", (stock("XYZ", Side.buy),), 100, "106.00", "0", Intent.close,
                 position_id=short.id).status == "filled"
    _, short = positions(books)
    assert short.status == "closed" and short.realized_pnl == D("-100.00")
    assert_cash_agrees(books, "99897.80")  # credit 401 - assignment 500 - buy-back slippage 1 - fees 2.20
    assert books.broker.positions() == []
