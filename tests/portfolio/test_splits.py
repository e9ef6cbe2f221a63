"""Issue 13 item 1(c): open positions adjusted on a split's ex-date before management runs. Splits come
from the local fake Massive's ``v3/reference/splits`` (recorded shape); the adjusted contract of a 3:2
split is found in its chain by ``shares_per_contract``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from engine.config import DataSource, load_settings
from engine.data import calendar
from engine.models import NotificationOutbox, Position
from engine.pipeline import StepReport, _daily_levels
from engine.portfolio import manager
from engine.portfolio.splits import apply_splits
from tests.data.fake_massive import FakeMassive, Reply, option_result
from tests.data.test_massive import market_for
from tests.data.test_massive_refresh import _write_lock_probe

EX_DATE = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
NY = ZoneInfo("America/New_York")  # 08:30 New York: the pre-market of the ex-date
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
        locked, fake.on_request = _write_lock_probe(migrated_sqlite)
        _run(fake, tmp_path, migrated_sqlite)
        chain_requests = [s for s in fake.seen if s.path == "/v3/snapshot/options/XYZ"]
    # The adjusted contracts are looked up before the write (no lock held while the network answers),
    # each by its expiry, strike and right: one page, not the whole chain.
    assert locked == []
    assert [(r.params["strike_price.gte"], r.params["expiration_date.lte"], r.params["contract_type"])
            for r in chain_requests] == [("160.0", "2026-04-17", "call"), ("170.0", "2026-04-17", "call")]
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
    assert pos.quantity == 3 and pos.entry_price == Decimal("4.2000")  # same contracts, same premium
    assert [leg["instrument"] for leg in pos.legs] == ["XYZ1  260417C00160000", "XYZ1  260417C00170000"]
    assert [leg["deliverable"] for leg in pos.legs] == [150, 150]
    assert pos.stop == 154.0 / 1.5 and pos.targets == [t / 1.5 for t in (166.0, 170.0, 174.0, 178.0)]


# --- the ex-date's management reads split-adjusted bars (audit of issue 13 item 1c) ----------------------

BEFORE = datetime(2026, 2, 27, 21, 0, tzinfo=NY)  # the nightly before the ex-date: bars fetched pre-split


def _pre_split_close(i: int) -> float:
    return 130.0 + 0.5 * i  # AAPL's unadjusted closes, session i of the 70 before the ex-date: 130 .. 164.5


class SplitDays:
    """Grouped days as fetched before the split: unadjusted AAPL (h/l = close +- 2) and MSFT."""

    def __init__(self, sessions: list[date]) -> None:
        self.index = {d: i for i, d in enumerate(sessions)}

    def body(self, day: date) -> bytes:
        c = _pre_split_close(self.index[day])
        rows = [{"T": "AAPL", "v": 5e6, "vw": c, "o": c, "c": c, "h": c + 2, "l": c - 2, "t": 0, "n": 9},
                {"T": "MSFT", "v": 5e6, "vw": 400.0, "o": 400.0, "c": 400.0, "h": 401.0, "l": 399.0, "t": 0, "n": 9}]
        return json.dumps({"queryCount": 2, "resultsCount": 2, "adjusted": True, "results": rows, "status": "OK",
                           "request_id": "x", "count": 2}).encode()


def _adjusted_aggs(sessions: list[date]):  # type: ignore[no-untyped-def]
    """``list_aggs`` after the 2:1 split: every earlier session at half the price (Massive adjusts)."""
    def aggs(ticker: str, start: date, end: date) -> list[dict]:
        out = []
        for i, d in enumerate(sessions):
            if ticker == "AAPL" and start <= d <= end:
                c = _pre_split_close(i) / 2
                t = int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp() * 1000)
                out.append({"v": 1e7, "vw": c, "o": c, "c": c, "h": c + 1, "l": c - 1, "t": t, "n": 9})
        return out
    return aggs


def _past_target_1() -> Position:
    # Pre-split: entry 160, ATR 4, target 1 (164) hit, stop at break-even 160, highest close 164.
    return Position(
        strategy="atr_matrix", symbol="AAPL", structure="long_call", quantity=3, initial_quantity=4,
        legs=[{"instrument": "AAPL  260417C00160000", "side": "buy", "ratio": 1, "asset": "option",
               "underlying": "AAPL", "right": "C", "strike": "160", "expiry": EXPIRY.isoformat()}],
        entry_price=Decimal("6.0000"), underlying_entry=160.0, entry_atr=4.0, stop=160.0,
        targets=[164.0, 168.0, 172.0, 176.0], targets_hit=1, highest_close=164.0, max_loss=Decimal("1800"),
        initial_risk=Decimal("2400"), mark=Decimal("7.0000"), opened_at=datetime(2026, 2, 10, 15, tzinfo=UTC))


def _split_setup(fake: FakeMassive, tmp_path: Path, db) -> tuple[SimpleNamespace, list[date]]:  # type: ignore[no-untyped-def]
    sessions = [d.astype(object) for d in calendar.sessions_back(date(2026, 2, 27), 70)]
    fake.grouped = SplitDays(sessions)  # type: ignore[assignment]
    fake.aggs = _adjusted_aggs(sessions)
    market_for(fake, tmp_path, db=db, now=BEFORE).backfill(days=70, end=date(2026, 2, 27))
    with Session(db) as session:
        session.add(_past_target_1())
        session.commit()
    fake.routes["/v3/reference/splits"] = _splits("AAPL", 1, 2)
    settings = load_settings(data_dir=tmp_path).model_copy(update={"data_source": DataSource.massive})
    ctx = SimpleNamespace(market=market_for(fake, tmp_path, db=db, now=NOW), settings=settings, db=db, now=NOW)
    return ctx, sessions


def test_the_ex_dates_management_reads_split_adjusted_bars_and_keeps_the_trailing_stop(
    tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive() as fake:
        ctx, _ = _split_setup(fake, tmp_path, migrated_sqlite)
        report = StepReport("run_premarket", NOW)
        apply_splits(ctx, report)
        daily = _daily_levels(ctx, ["AAPL"], EX_DATE)["AAPL"]  # type: ignore[arg-type]
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
    assert (pos.stop, pos.underlying_entry, pos.entry_atr, pos.highest_close) == (80.0, 80.0, 2.0, 82.0)
    # Hand values from the adjusted series: last close 164.5 / 2; SMA50 of sessions 20..69 = (130 + 0.5 *
    # 44.5) / 2; every true range is 2 (h - l), the 0.25 steps between closes stay inside it.
    assert daily["close"] == 82.25 and daily["sma50"] == pytest.approx(76.125) and daily["atr"] == pytest.approx(2.0)
    settings = ctx.settings
    view = manager.PositionView(quantity=pos.quantity, initial_quantity=pos.initial_quantity,
                                entry_price=pos.entry_price, underlying_entry=pos.underlying_entry,
                                entry_atr=pos.entry_atr, stop=pos.stop, targets=tuple(pos.targets),
                                targets_hit=pos.targets_hit, highest_close=pos.highest_close, expiry=EXPIRY)
    mkt = manager.MarketView(today=EX_DATE, price=83.0, close=daily["close"], sma50=daily["sma50"],
                             atr=daily["atr"], mark=pos.mark)
    actions = manager.decide(view, mkt, settings.strategy, settings.exits.premium_stop_pct, settings.exits.close_at_dte)
    # With the unadjusted close (164.5) the stop trailed to 164.5 - 3 x 2 = 158.5 above the price: all closed.
    assert not any(a.kind == "close_all" for a in actions), actions
    assert all(a.new_stop is None or a.new_stop < 83.0 for a in actions), actions


def test_when_the_split_cannot_be_applied_the_symbol_is_not_managed_and_the_operator_is_alerted(
    tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive() as fake:
        ctx, _ = _split_setup(fake, tmp_path, migrated_sqlite)
        fake.fault("/v2/aggs/ticker/AAPL/", *[Reply(500, {"status": "ERROR"})] * 40)
        report = StepReport("run_premarket", NOW)
        assert apply_splits(ctx, report) == 0
        levels = _daily_levels(ctx, ["AAPL", "MSFT"], EX_DATE)  # type: ignore[arg-type]
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
        alerts = session.exec(select(NotificationOutbox)).all()
    assert pos.stop == 160.0 and pos.quantity == 3  # left as it was
    assert "AAPL" not in levels and "MSFT" in levels  # no management on unadjusted bars for AAPL
    assert any("AAPL" in line and "not managed" in line for line in report.lines), report.lines
    assert [a.channel for a in alerts] == ["system_status"]
    # Once the symbol is no longer held, the hold goes: a later position in it is managed again.
    with Session(migrated_sqlite) as session:
        pos = session.exec(select(Position)).one()
        pos.status = "closed"
        session.add(pos)
        session.commit()
    with FakeMassive() as fake:
        fake.routes["/v3/reference/splits"] = _splits("AAPL", 1, 2)
        apply_splits(SimpleNamespace(**{**ctx.__dict__, "market": market_for(fake, tmp_path, db=migrated_sqlite,
                                                                              now=NOW)}), StepReport("x", NOW))
    assert "AAPL" in _daily_levels(ctx, ["AAPL"], EX_DATE)  # type: ignore[arg-type]
