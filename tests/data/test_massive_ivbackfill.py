"""Audit of issue 13 item 7: ATM IV backfilled from historical option aggregates on the local fake Massive.
Option closes are Black-Scholes prices at 25% vol (r = q = 0, scipy), so every backfilled day inverts to
0.25; requests stay within the budget."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from engine.data import calendar
from engine.data.massive_ivbackfill import iv_backfill
from engine.data.massive_parse import aggs_to_table
from engine.models import IvHistory
from tests.data.fake_massive import FakeMassive, Reply, daily_aggs
from tests.data.test_massive import market_for
from tests.data.test_massive_chains import bsm

NY = ZoneInfo("America/New_York")
NOW = datetime(2024, 3, 11, 8, 0, tzinfo=NY)  # last completed session: 03-08
FIRST, LAST = date(2024, 2, 26), date(2024, 3, 8)  # 10 sessions
FRIDAYS = [date(2024, 3, 1) + timedelta(days=7 * i) for i in range(16)]
STRIKES = [90.0 + 2.5 * i for i in range(17)]  # 90 .. 130


def _contracts() -> Reply:
    rows = [{"ticker": f"O:AAA{e:%y%m%d}C{round(k * 1000):08d}", "contract_type": "call",
             "exercise_style": "american", "expiration_date": e.isoformat(), "shares_per_contract": 100,
             "strike_price": k, "underlying_ticker": "AAA"} for e in FRIDAYS for k in STRIKES]
    return Reply(200, {"results": rows, "status": "OK", "request_id": "x"})


def test_iv_backfill_inverts_option_closes_to_the_days_atm_iv(tmp_path: Path, migrated_sqlite) -> None:
    stock = daily_aggs("AAA", FIRST, LAST, price=105.0)  # closes 105.00, 105.25, ...
    spot = {d.astype(object): b["c"] for d, b in zip(calendar.sessions(FIRST, LAST), stock, strict=True)}

    def aggs(ticker: str, start: date, end: date) -> list[dict]:
        if not ticker.startswith("O:"):
            return []
        expiry = datetime.strptime(ticker[5:11], "%y%m%d").date()
        strike = int(ticker[12:]) / 1000
        out = []
        for d, s in spot.items():
            if start <= d <= end:
                price, _ = bsm(s, strike, (expiry - d).days, "C", iv=0.25)
                t = int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp() * 1000)
                out.append({"v": 10, "vw": price, "o": price, "c": price, "h": price, "l": price, "t": t, "n": 1})
        return out

    with FakeMassive() as fake:
        fake.routes["/v3/reference/options/contracts"] = _contracts()
        fake.aggs = aggs
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=NOW)
        market.store.write(aggs_to_table(stock, "AAA"))  # type: ignore[union-attr]
        report = iv_backfill(market, ["AAA"], days=10, max_requests=100, r=0.0)
        again = iv_backfill(market, ["AAA"], days=10, max_requests=100, r=0.0)
        paths = [s.path for s in fake.seen]
    with Session(migrated_sqlite) as session:
        rows = session.exec(select(IvHistory).order_by(IvHistory.trade_date)).all()
    assert [r.trade_date for r in rows] == list(spot)
    assert all(r.atm_iv == pytest.approx(0.25, abs=1e-4) for r in rows), [r.atm_iv for r in rows]
    assert report.sessions_recorded == 10 and report.requests == len(paths) - again.requests
    # one listing, the dividends, and one aggregate request per contract (not one per contract and day)
    assert paths.count("/v3/reference/options/contracts") == 1
    assert report.requests < 2 + 10 * 4 and again.requests == 0 and again.sessions_recorded == 0


def test_iv_backfill_stops_at_its_request_budget(tmp_path: Path, migrated_sqlite) -> None:
    stock = daily_aggs("AAA", FIRST, LAST, price=105.0)
    with FakeMassive() as fake:
        fake.routes["/v3/reference/options/contracts"] = _contracts()
        fake.aggs = lambda ticker, start, end: []
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=NOW)
        market.store.write(aggs_to_table(stock, "AAA"))  # type: ignore[union-attr]
        report = iv_backfill(market, ["AAA", "BBB"], days=10, max_requests=3, r=0.0)
    assert report.requests == 3 and report.out_of_budget and report.sessions_recorded == 0
    with pytest.raises(ValueError, match=r"days must be 1\.\.504, got 0"):
        iv_backfill(market, ["AAA"], days=0, max_requests=3, r=0.0)
