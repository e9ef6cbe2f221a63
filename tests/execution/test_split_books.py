"""A split inside the window (the local fake Massive lists it): on its ex-date the engine's positions and the
paper broker's own books are adjusted by the same rule (``portfolio.splits.adjust_leg``), so both still
agree on quantity, basis and equity, and an adjusted contract then settles with its deliverable.

Numbers by hand. The spread of ``test_settlement``: buy C100 / sell C110 x2 fills at 4.09 net (C100 5.12
after the residue, C110 1.03), commissions 4 x 1.00, fees 4 x 0.10. 100 XYZ bought at 105.01.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

from sqlmodel import Session, select

from engine.execution.ports import AssetType, Leg, Side
from engine.execution.reconcile import engine_cash, reconcile
from engine.models import Position
from engine.pipeline import StepReport
from engine.portfolio.marks import GREEKS, LegQuote, apply_mark, positions_value
from engine.portfolio.splits import apply_splits
from tests.data.fake_massive import FakeMassive, option_result
from tests.data.test_massive import market_for
from tests.execution import test_settlement
from tests.execution.test_settlement import (
    C100,
    C110,
    EXP,
    NY,
    START,
    Books,
    assert_cash_agrees,
    leg,
    occ,
    order,
    positions,
    settle,
    stock,
)
from tests.portfolio.test_splits import _splits

books = test_settlement.books  # the engine + paper broker fixture, shared

FRIDAY = datetime(2026, 2, 27, 10, 0, tzinfo=NY)  # positions opened before the split
PREMARKET = datetime(2026, 3, 2, 8, 30, tzinfo=NY)  # the ex-date (2026-03-02) pre-market


def _open_spread_and_shares(b: Books) -> None:
    b.clock.now = FRIDAY
    assert order(b, "ds", "call_debit_spread", (leg(C100, Side.buy), leg(C110, Side.sell)), 2, "4.20",
                 "1000").status == "filled"
    assert order(b, "stk", "stock", (stock("XYZ", Side.buy),), 100, "105.02", "10").status == "filled"
    assert_cash_agrees(b, "88676.60")  # 100000 - 818 - 4.40 - 10501


def _split(b: Books, tmp_path: Path, fake: FakeMassive) -> StepReport:
    b.clock.now = PREMARKET
    ctx = SimpleNamespace(market=market_for(fake, tmp_path), settings=b.settings, db=b.db, now=PREMARKET,
                          broker=b.broker)
    report = StepReport("run_premarket", PREMARKET)
    apply_splits(ctx, report)
    return report


def _equities(b: Books, quotes: dict[str, tuple[str, str]]) -> tuple[D, D]:
    """(engine equity, broker equity) with every leg marked at the mids of ``quotes``."""
    for name, (bid, ask) in quotes.items():
        b.quotes.set(name, bid, ask)
    with Session(b.db) as s:
        for pos in s.exec(select(Position).where(Position.status == "open")).all():
            legs = [Leg.from_dict(d) for d in pos.legs]
            apply_mark(pos, legs, {x.instrument: LegQuote(D(quotes[x.instrument][0]), D(quotes[x.instrument][1]),
                                                          dict.fromkeys(GREEKS, 0.0), 52.5) for x in legs})
            s.add(pos)
        s.commit()
        return engine_cash(s, START) + positions_value(s), b.broker.account().equity


def test_a_2_for_1_split_adjusts_the_engine_and_the_paper_broker_alike(books: Books, tmp_path: Path) -> None:
    _open_spread_and_shares(books)
    with FakeMassive() as fake:
        fake.routes["/v3/reference/splits"] = _splits("XYZ", 1, 2)
        report = _split(books, tmp_path, fake)
        again = _split(books, tmp_path, fake)  # applied once, on both sides
    assert report.counts == {"split_adjusted_positions": 2} and again.counts == {}
    c50, c55 = occ("XYZ", "C", "50"), occ("XYZ", "C", "55")
    spread, shares = positions(books)
    assert (spread.quantity, spread.entry_price) == (4, D("2.0450"))  # 4.09 / 2
    assert (shares.quantity, shares.entry_price) == (200, D("52.5050"))  # 105.01 / 2
    # the broker: each holding doubled at half the price, its cost (basis) unchanged
    held = {(p.instrument, p.quantity, p.avg_price) for p in books.broker.positions()}
    assert held == {(c50, 4, D("2.56")), (c55, -4, D("0.515")), ("XYZ", 200, D("52.505"))}  # 1024/400, 206/400
    assert books.broker.check_books() == []
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []
    # equity: cash 88676.60 + spread (2.70 - 0.55) x 100 x 4 = 860 + shares 52.50 x 200 = 10500 -> 100036.60
    engine, broker = _equities(books, {c50: ("2.60", "2.80"), c55: ("0.50", "0.60"), "XYZ": ("52.49", "52.51")})
    assert engine == broker == D("100036.60")


def test_a_3_for_2_split_moves_both_books_to_the_adjusted_contract_which_settles_with_150_shares(
    books: Books, tmp_path: Path
) -> None:
    _open_spread_and_shares(books)
    a100, a110 = occ("XYZ1", "C", "100"), occ("XYZ1", "C", "110")
    with FakeMassive() as fake:
        fake.routes["/v3/reference/splits"] = _splits("XYZ", 2, 3)
        quoted = PREMARKET - timedelta(minutes=5)
        fake.chains["XYZ"] = [option_result("XYZ", EXP, "C", k, bid=3.0, ask=3.2, delta=0.5, spot=70.0, quoted=quoted,
                                            shares_per_contract=150, root="XYZ1") for k in (100.0, 110.0)]
        _split(books, tmp_path, fake)
    spread, shares = positions(books)
    assert spread.quantity == 2 and spread.entry_price == D("4.09")  # same contracts, same premium
    assert [(d["instrument"], d["deliverable"]) for d in spread.legs] == [(a100, 150), (a110, 150)]
    assert shares.quantity == 150  # 100 x 1.5
    held = {(p.instrument, p.quantity, p.avg_price, p.deliverable) for p in books.broker.positions()}
    assert held == {(a100, 2, D("5.12"), 150), (a110, -2, D("1.03"), 150), ("XYZ", 150, D("70.0067"), 100)}
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []
    # settles at 80 (120 before the split): both calls in the money (1.5 x 80 = 120 > 110): +300 shares for
    # 2 x 100 x 100 = 20,000 and -300 for 2 x 110 x 100 = 22,000 -> flat, +2,000, as before the split
    assert settle(books, "XYZ", "80") == []
    spread = positions(books)[0]
    assert spread.status == "closed" and spread.realized_pnl == D("1177.60")  # 2000 - 818 - 4.40
    assert_cash_agrees(books, "90676.60")  # 88676.60 + 2000
    assert {(p.instrument, p.quantity) for p in books.broker.positions()} == {("XYZ", 150)}
    assert reconcile(books.db, books.broker, START, books.clock.now).differences == []


def test_the_paper_books_of_an_older_version_gain_the_deliverable_column(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from engine.execution.brokers.paper import PaperBroker

    path = tmp_path / "old.db"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as conn:  # version 1's positions table, one standard contract held
        conn.execute(sa.text("CREATE TABLE paper_positions (instrument VARCHAR PRIMARY KEY, asset VARCHAR NOT NULL, "
                             "underlying VARCHAR NOT NULL, right VARCHAR, strike VARCHAR, expiry VARCHAR, quantity "
                             "INTEGER NOT NULL, cost VARCHAR NOT NULL, realized_pnl VARCHAR NOT NULL, updated_at "
                             "VARCHAR NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO paper_positions VALUES ('{C100}', 'option', 'XYZ', 'C', '100', "
                             "'2026-03-20', 1, '512', '0', '2026-03-02T10:00:00-05:00')"))
    old.dispose()
    broker = PaperBroker(path, test_settlement.Quotes(), lambda: FRIDAY)
    try:
        [p] = broker.positions()
        assert (p.instrument, p.quantity, p.deliverable, p.asset) == (C100, 1, 100, AssetType.option)
    finally:
        broker.close()


def test_a_covered_calls_shares_follow_a_3_for_2_split_with_its_call() -> None:
    from datetime import date

    from engine.portfolio.splits import SplitEvent, adjust_position

    call = Leg(C110, Side.sell, 1, AssetType.option, "XYZ", "C", D("110"), EXP)
    pos = Position(strategy="t", symbol="XYZ", structure="covered_call", quantity=2, initial_quantity=2,
                   legs=[Leg("XYZ", Side.buy, 100, AssetType.stock, "XYZ").to_dict(), call.to_dict()],
                   entry_price=D("99.93"), stop=0.0, targets=[], opened_at=FRIDAY)
    adjust_position(pos, SplitEvent("XYZ", date(2026, 3, 2), 1.5), contracts={C110: occ("XYZ1", "C", "110")})
    shares, adjusted_call = (Leg.from_dict(d) for d in pos.legs)
    # each unit's 100 shares became 150; its call now delivers 150 for 110 x 100: the unit is still covered,
    # and no dollar moved (same units, same net price per unit)
    assert (shares.ratio, adjusted_call.deliverable, adjusted_call.instrument) == (150, 150, occ("XYZ1", "C", "110"))
    assert (pos.quantity, pos.entry_price) == (2, D("99.93"))
