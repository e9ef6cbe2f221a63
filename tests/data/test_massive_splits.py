"""Issue 13 item 1 (a, b): splits inside the window, against the local fake Massive serving the recorded
``v3/reference/splits`` (AMZN 20:1 executed 2022-06-06) and grouped days whose AMZN prices are adjusted
once the split has happened, like the real service (``adjusted=true``)."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import delete
from sqlmodel import Session

from engine.data import calendar
from engine.models import BarDay
from tests.conftest import shared_data
from tests.data.fake_massive import NEW_YORK, FakeMassive
from tests.data.test_massive import bar_days, market_for

NY = ZoneInfo("America/New_York")
BEFORE = datetime(2022, 6, 3, 20, tzinfo=NY)  # AMZN splits 20:1 on 2022-06-06
AFTER = datetime(2022, 6, 8, 20, tzinfo=NY)
SPLIT_DAY = date(2022, 6, 6)


class SplitMarket:
    """Grouped days for AMZN (400 before the split, 20 after) and MSFT (300): once ``after_split`` is set,
    the server answers pre-split days adjusted (AMZN 20), as Massive does after an execution date."""

    def __init__(self) -> None:
        self.after_split = False

    def close(self, ticker: str, day: date) -> float:
        if ticker == "MSFT":
            return 300.0
        return 20.0 if day >= SPLIT_DAY or self.after_split else 400.0

    def body(self, day: date) -> bytes:
        results = [{"T": t, "v": 1000, "vw": self.close(t, day), "o": self.close(t, day), "c": self.close(t, day),
                    "h": self.close(t, day), "l": self.close(t, day), "t": 0, "n": 10} for t in ("AMZN", "MSFT")]
        return json.dumps({"queryCount": 2, "resultsCount": 2, "adjusted": True, "results": results,
                           "status": "OK", "request_id": "x", "count": 2}).encode()

    def aggs(self, ticker: str, start: date, end: date) -> list[dict]:
        out = []
        for d in calendar.sessions(start, end):
            day = d.astype(object)
            t = int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)
            c = self.close(ticker, day)
            out.append({"v": 1000, "vw": c, "o": c, "c": c, "h": c, "l": c, "t": t, "n": 10})
        return out


def test_a_split_refetch_writes_only_sessions_already_stored(tmp_path: Path, migrated_sqlite) -> None:
    split_market = SplitMarket()
    with FakeMassive(shared_data("polygon"), grouped=split_market) as fake:
        fake.aggs = split_market.aggs
        first = market_for(fake, tmp_path, db=migrated_sqlite, now=BEFORE)
        first.backfill(days=3, end=date(2022, 5, 20))  # 05-18..05-20
        first.backfill(days=3, end=date(2022, 6, 3))  # 06-01..06-03: 05-23..05-31 (6 sessions) missing
        missing = calendar.sessions(date(2022, 5, 23), date(2022, 5, 31))
        assert len(missing) == 6
        split_market.after_split = True
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=AFTER)
        report = market.check_splits(since=date(2022, 5, 1))
        assert report.symbols_refetched == ["AMZN"]
        stored = market.store.stored_dates()  # type: ignore[union-attr]
        assert not np.isin(missing, stored).any()  # the refetch did not invent stored sessions
        # So a backfill of the whole window still fetches the six missing sessions for every symbol.
        before = len(fake.grouped_dates())
        fill = market.backfill(days=len(calendar.sessions(date(2022, 5, 18), date(2022, 6, 3))),
                               end=date(2022, 6, 3))
        assert len(fake.grouped_dates()) - before == 6 and fill.sessions_requested == 6
        panel = market.store.load(dtype=np.float64)  # type: ignore[union-attr]
    assert panel.n_days == 12 and np.isfinite(panel.close).all()
    assert set(panel.frame("AMZN")["close"]) == {20.0}  # adjusted everywhere


def test_a_backfill_killed_before_a_split_and_resumed_after_it_stores_adjusted_prices(
    tmp_path: Path, migrated_sqlite
) -> None:
    split_market = SplitMarket()
    with FakeMassive(shared_data("polygon"), grouped=split_market) as fake:
        fake.aggs = split_market.aggs
        market_for(fake, tmp_path, db=migrated_sqlite, now=BEFORE).backfill(days=5, end=date(2022, 5, 31))
        # Killed before the store write: the days are in the response cache only.
        shutil.rmtree(tmp_path / "bars")
        with Session(migrated_sqlite) as session:
            session.exec(delete(BarDay))  # type: ignore[call-overload]
            session.commit()
        split_market.after_split = True
        resumed = market_for(fake, tmp_path, db=migrated_sqlite, now=AFTER)
        fill = resumed.backfill(days=5, end=date(2022, 5, 31))
        assert fill.sessions_from_cache == 5  # pre-split bytes, but stamped with their pre-split fetch time
        assert all(v == 2 for v in bar_days(migrated_sqlite).values())
        resumed.update()  # 06-01..06-08, invalidating first, then the split check
        panel = resumed.store.load(dtype=np.float64)  # type: ignore[union-attr]
        amzn = panel.frame("AMZN")["close"]
    assert set(amzn) == {20.0}, amzn.to_dict()  # no 400 left: the pre-split days were refetched adjusted
    assert set(panel.frame("MSFT")["close"]) == {300.0}


def test_update_after_a_split_evicts_pre_split_cache_days_before_filling(tmp_path: Path, migrated_sqlite) -> None:
    split_market = SplitMarket()
    with FakeMassive(shared_data("polygon"), grouped=split_market) as fake:
        fake.aggs = split_market.aggs
        early = market_for(fake, tmp_path, db=migrated_sqlite, now=BEFORE)
        early.backfill(days=3, end=date(2022, 5, 27))
        # Cache 05-31..06-02 without storing them (a run killed before its flush).
        for d in (date(2022, 5, 31), date(2022, 6, 1), date(2022, 6, 2)):
            early._day(d)
        split_market.after_split = True
        report = market_for(fake, tmp_path, db=migrated_sqlite, now=AFTER).update()
    assert report.sessions_from_cache == 0  # the three pre-split cached days were evicted first
    assert fake.grouped_dates().count("2022-06-01") == 2
