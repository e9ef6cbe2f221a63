"""Issue 13 item 1(c): open positions adjusted on a split's ex-date before management runs. Splits come
from the local fake Massive's ``v3/reference/splits`` (recorded shape); the adjusted contract of a 3:2
split is found in its chain by ``shares_per_contract``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from sqlmodel import Session, select

from engine.config import load_settings
from engine.models import Position
from engine.pipeline import StepReport
from engine.portfolio import manager
from engine.portfolio.splits import apply_splits
from tests.data.fake_massive import FakeMassive, Reply, option_result
from tests.data.test_massive import market_for

EX_DATE = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)  # 08:30 New York: the pre-market of the ex-date
EXPIRY = date(2026, 4, 17)


def _splits(ticker: str, split_from: int, split_to: int) -> Reply:
    return Reply(200, {"results": [{"execution_date": EX_DATE.isoformat(), "split_from": split_from,
                                    "split_to": split_to, "ticker": ticker}], "status": "OK", "request_id": "x"})


def _spread(symbol: str) -> Position:
    return Position(
        strategy="atr_matrix", symbol=symbol, structure="call_debit_spread", quantity=3, initial_quantity=4,
        legs=[{"instrument": f"{symbol:<6}260417C00160000", "side": "buy", "ratio": 1, "asset": "option",
               "underlying": symbol, "right": "C", "strike": "160", "expiry": EXPIRY.isoformat()},
              {"instrument": f"{symbol:<6}260417C00170000", "side": "sell", "ratio": 1, "asset": "option",
               "underlying": symbol, "right": "C", "strike": "170", "expiry": EXPIRY.isoformat()}],
        entry_price=Decimal("4.2000"), underlying_entry=162.0, entry_atr=4.0, stop=154.0,
        targets=[166.0, 170.0, 174.0, 178.0], targets_hit=0, highest_close=164.0, max_loss=Decimal("1260"),
        initial_risk=Decimal("1680"), mark=Decimal("4.6000"), opened_at=datetime(2026, 2, 20, 15, tzinfo=UTC))


def _run(fake: FakeMassive, tmp_path: Path, db) -> StepReport:  # type: ignore[no-untyped-def]
    ctx = SimpleNamespace(market=market_for(fake, tmp_path), settings=load_settings(data_dir=tmp_path), db=db,
                          now=NOW)
    report = StepReport("run_premarket", NOW)
    apply_splits(ctx, report)
    return report


def test_a_2_for_1_split_doubles_contracts_halves_strikes_and_levels_and_does_not_stop_out(
    tmp_path: Path, migrated_sqlite
) -> None:
    with Session(migrated_sqlite) as session:
        session.add(_spread("AAPL"))
        session.commit()
    with FakeMassive() as fake:
        fake.routes["/v3/reference/splits"] = _splits("AAPL", 1, 2)
        report = _run(fake, tmp_path, migrated_sqlite)
        again = _run(fake, tmp_path, migrated_sqlite)  # applied once
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
    assert report.counts == {"split_adjusted_positions": 1} and again.counts == {}
    assert (pos.quantity, pos.initial_quantity) == (6, 8)
    assert [leg["instrument"] for leg in pos.legs] == ["AAPL  260417C00080000", "AAPL  260417C00085000"]
    assert [leg["strike"] for leg in pos.legs] == ["80", "85"]
    assert pos.stop == 77.0 and pos.targets == [83.0, 85.0, 87.0, 89.0]
    assert (pos.underlying_entry, pos.entry_atr, pos.highest_close) == (81.0, 2.0, 82.0)
    assert pos.entry_price == Decimal("2.1000") and pos.mark == Decimal("2.3000")
    assert pos.max_loss == Decimal("1260") and pos.initial_risk == Decimal("1680")  # dollars unchanged
    # The day's management at the post-split price (82) sees no stop hit and no premium stop.
    view = manager.PositionView(quantity=pos.quantity, initial_quantity=pos.initial_quantity,
                                entry_price=pos.entry_price, underlying_entry=pos.underlying_entry,
                                entry_atr=pos.entry_atr, stop=pos.stop, targets=tuple(pos.targets),
                                targets_hit=0, highest_close=pos.highest_close, expiry=EXPIRY)
    mkt = manager.MarketView(today=EX_DATE, price=82.0, close=82.0, sma50=79.0, atr=2.0, mark=pos.mark)
    settings = load_settings(data_dir=tmp_path)
    actions = manager.decide(view, mkt, settings.strategy, settings.exits.premium_stop_pct, settings.exits.close_at_dte)
    assert not any(a.kind == "close_all" for a in actions), actions


def test_a_3_for_2_split_keeps_contracts_and_moves_to_the_adjusted_150_share_contract(
    tmp_path: Path, migrated_sqlite
) -> None:
    with Session(migrated_sqlite) as session:
        session.add(_spread("XYZ"))
        session.commit()
    quoted = NOW - timedelta(minutes=5)
    with FakeMassive() as fake:
        fake.routes["/v3/reference/splits"] = _splits("XYZ", 2, 3)
        fake.chains["XYZ"] = [
            option_result("XYZ", EXPIRY, "C", k, bid=3.0, ask=3.2, delta=0.5, spot=108.0, quoted=quoted,
                          shares_per_contract=150, root="XYZ1") for k in (160.0, 170.0)
        ] + [option_result("XYZ", EXPIRY, "C", 160.0, bid=1.0, ask=1.2, delta=0.2, spot=108.0, quoted=quoted)]
        _run(fake, tmp_path, migrated_sqlite)
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
    assert pos.quantity == 3 and pos.entry_price == Decimal("4.2000")  # same contracts, same premium
    assert [leg["instrument"] for leg in pos.legs] == ["XYZ1  260417C00160000", "XYZ1  260417C00170000"]
    assert [leg["deliverable"] for leg in pos.legs] == [150, 150]
    assert pos.stop == 154.0 / 1.5 and pos.targets == [t / 1.5 for t in (166.0, 170.0, 174.0, 178.0)]
