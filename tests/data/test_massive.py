"""MassiveMarketData on the real ``massive`` client against a local fake server (tests/data/fake_massive.py)
serving the recorded Polygon/Massive responses and generated ones in the same shapes. No network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlmodel import Session, select

from engine.bench.data import GroupedDayGenerator
from engine.data.barstore import BarStore
from engine.data.cache import DataCache
from engine.data.massive import (
    MassiveKeyMissing,
    MassiveMarketData,
    default_retry,
    last_completed_session,
)
from engine.data.ratelimit import (
    Backoff,
    DataSourceAuthError,
    DataSourceError,
    DataSourceUnavailable,
    RateLimiter,
)
from engine.models import BarDay, DataRun
from tests.conftest import ROOT, shared_data
from tests.data.fake_massive import (
    API_KEY,
    FakeMassive,
    Reply,
    daily_aggs,
    malformed,
    rate_limited,
    server_error,
    slow,
)

NY = ZoneInfo("America/New_York")
NOW = datetime(2024, 3, 8, 20, 0, tzinfo=NY)  # a Friday evening: 2024-03-08 is complete and settled later
END = date(2024, 3, 1)


@pytest.fixture
def recorded() -> Path:
    return shared_data("polygon")


@pytest.fixture
def small_market() -> GroupedDayGenerator:
    return GroupedDayGenerator(n_symbols=300, seed=3)


def market_for(
    fake: FakeMassive,
    root: Path,
    db: Any = None,
    now: datetime = NOW,
    cache: bool = True,
    key: str = API_KEY,
    **kw: Any,
) -> MassiveMarketData:
    options: dict[str, Any] = {
        "base": fake.base,
        "store": BarStore(root / "bars", "massive"),
        "db": db,
        "cache": DataCache(root / "cache") if cache else None,
        "limiter": RateLimiter.unlimited(),
        "backoff": Backoff(delays=(0.01, 0.01)),
        "retry": default_retry(total=3, backoff_factor=0.01, backoff_max=0.05),
        "read_timeout": 2.0,
        "now": lambda: now,
    }
    options.update(kw)
    return MassiveMarketData(key, **options)


def bar_days(db: Any) -> dict[date, int]:
    with Session(db) as session:
        return {b.trade_date: b.symbols for b in session.exec(select(BarDay)).all()}


def data_runs(db: Any) -> list[DataRun]:
    with Session(db) as session:
        return list(session.exec(select(DataRun).order_by(DataRun.id)).all())  # type: ignore[arg-type]


def stored_rows(store: BarStore) -> pd.DataFrame:
    files = sorted(store.dir.glob("????-??.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


# --- reference data and pagination ------------------------------------------------------------------


def test_universe_follows_next_url_through_both_recorded_pages(recorded: Path, tmp_path: Path) -> None:
    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path)
        frame = market.universe()
        assert list(frame["symbol"]) == ["A", "AA", "AAA", "AAAU"]  # page 1 + page 2 (next_url)
        assert list(frame.columns) == [
            "symbol", "name", "sector", "type", "exchange", "currency", "active", "list_date", "tradable"
        ]
        assert frame.loc[frame.symbol == "AAA", "type"].item() == "ETF"
        assert frame["tradable"].all() and (frame["currency"] == "USD").all()
        pages = [s for s in fake.seen if s.path == "/v3/reference/tickers"]
        assert len(pages) == 2
        assert pages[0].params["market"] == "stocks" and pages[0].params["active"] == "true"
        assert set(pages[1].params) == {"cursor"}  # the next_url's own query, nothing added
        # Reference data is cached: the second call makes no request.
        assert market.universe().equals(frame)
        assert fake.count("/v3/reference/tickers") == 2


def test_universe_marks_warrants_rights_units_preferreds_and_otc_untradable(tmp_path: Path, migrated_sqlite) -> None:
    rows = [
        {"ticker": t, "name": t, "market": m, "type": k, "active": True, "currency_name": "usd",
         "primary_exchange": "XNAS", **({"list_date": "2001-02-03"} if t == "CSX" else {})}
        for t, k, m in [
            ("CSX", "CS", "stocks"), ("SPYX", "ETF", "stocks"), ("ADRX", "ADRC", "stocks"),
            ("WRNTW", "WARRANT", "stocks"), ("RGHTR", "RIGHT", "stocks"), ("UNITU", "UNIT", "stocks"),
            ("PFDP", "PFD", "stocks"), ("OTCX", "CS", "otc"), ("NOTYPE", None, "stocks"),
        ]
    ]
    with FakeMassive() as fake:
        fake.routes["/v3/reference/tickers"] = Reply(200, {"results": rows, "status": "OK", "count": len(rows)})
        frame = market_for(fake, tmp_path, cache=False).universe()
    tradable = dict(zip(frame.symbol, frame.tradable, strict=True))
    assert tradable == {"CSX": True, "SPYX": True, "ADRX": True, "WRNTW": False, "RGHTR": False,
                        "UNITU": False, "PFDP": False, "OTCX": False, "NOTYPE": False}
    assert frame.loc[frame.symbol == "CSX", "list_date"].item() == pd.Timestamp("2001-02-03")
    from engine.data.universe import sync_universe, tradable_symbols
    from engine.db import session_scope

    with session_scope(migrated_sqlite) as session:
        sync_universe(session, frame, "massive")
    with session_scope(migrated_sqlite) as session:
        assert tradable_symbols(session) == ["ADRX", "CSX", "SPYX"]


def test_recorded_grouped_day_is_parsed_into_the_store(recorded: Path, tmp_path: Path, migrated_sqlite) -> None:
    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=datetime(2005, 4, 20, 12, tzinfo=NY))
        report = market.backfill(days=1, end=date(2005, 4, 4))
        assert fake.seen[0].params["adjusted"] == "true" and fake.seen[0].params["include_otc"] == "false"
    assert report.sessions_requested == 1 and report.days_stored == 1
    panel = market.store.load(dtype=np.float64)  # type: ignore[union-attr]
    assert list(panel.symbols) == ["GIK"] and panel.dates.tolist() == [date(2005, 4, 4)]
    assert (panel.open[0, 0], panel.high[0, 0], panel.low[0, 0], panel.close[0, 0]) == (9.99, 10.02, 9.9, 10.02)
    assert panel.volume[0, 0] == 895345
    assert bar_days(migrated_sqlite) == {date(2005, 4, 4): 1}


def test_full_market_days_are_stored_once_and_never_requested_again(tmp_path: Path, migrated_sqlite) -> None:
    days = 12
    generator = GroupedDayGenerator(n_symbols=32_345, seed=11)
    with FakeMassive(grouped=generator) as fake:
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        ticks: list[tuple[int, int]] = []
        first = market.backfill(days=days, end=END, progress=lambda done, total: ticks.append((done, total)))
        assert len(fake.grouped_dates()) == days and len(set(fake.grouped_dates())) == days
        assert ticks[0] == (0, days) and ticks[-1] == (days, days)
        expected_bars = sum(int(generator.arrays(date.fromisoformat(d))["present"].sum()) for d in fake.grouped_dates())
        rows = stored_rows(market.store)  # type: ignore[arg-type]
        assert len(rows) == expected_bars == first.bars_stored
        assert not rows.duplicated(["date", "symbol"]).any()
        assert rows["symbol"].nunique() > 32_000

        # A second run, a fresh process' worth of state: every session is in the store, nothing is asked.
        again = market_for(fake, tmp_path, db=migrated_sqlite)
        second = again.backfill(days=days, end=END)
        assert len(fake.seen) == days and second.requests == 0
        assert second.sessions_in_store == days and second.hit_rate is None and second.avoided_rate == 1.0
        panel = again.daily_bars(date(2024, 2, 14), END)  # already stored: read, no request
        assert len(fake.seen) == days and panel.n_days == days and panel.n_symbols > 32_000

    runs = data_runs(migrated_sqlite)
    assert [(r.kind, r.outcome, r.requests, r.days_stored) for r in runs] == [
        ("backfill", "ok", days, days), ("backfill", "ok", 0, 0),
    ]
    # The second run's sessions came from the bar store: requests avoided, not response-cache hits.
    assert runs[0].cache_misses == days and runs[1].cache_hits == 0 and runs[1].cache_misses == 0
    assert runs[1].detail["requests_avoided"]["avoided_by_bar_store"] == days
    assert len(bar_days(migrated_sqlite)) == days


def test_a_backfill_interrupted_by_failures_keeps_its_days_and_resumes(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fail_grouped_after = 7  # from the 8th day on the server answers 500 to everything
        market = market_for(fake, tmp_path, db=migrated_sqlite, flush_days=3)
        with pytest.raises(DataSourceUnavailable, match="server kept failing"):
            market.backfill(days=20, end=END)
        stored = market.store.stored_dates()  # type: ignore[union-attr]
        assert len(stored) == 7 and len(bar_days(migrated_sqlite)) == 7
        assert data_runs(migrated_sqlite)[-1].outcome == "error"
        assert "server kept failing" in data_runs(migrated_sqlite)[-1].detail["error"]

        fake.fail_grouped_after = None
        report = market_for(fake, tmp_path, db=migrated_sqlite).backfill(days=20, end=END)
    assert report.sessions_in_store == 7 and report.sessions_requested == 13
    ok = fake.grouped_dates(status=200)
    assert len(ok) == 20 and len(set(ok)) == 20  # every session fetched successfully exactly once
    assert len(market.store.stored_dates()) == 20 and len(bar_days(migrated_sqlite)) == 20  # type: ignore[union-attr]


def test_parallel_fetching_writes_days_in_order_and_resumes_from_the_cache(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    from engine.data import calendar

    with FakeMassive(grouped=small_market) as fake:
        fake.fail_grouped_after = 9
        market = market_for(fake, tmp_path, db=migrated_sqlite, workers=3)
        with pytest.raises(DataSourceUnavailable):
            market.backfill(days=20, end=END)
        stored = list(market.store.stored_dates())  # type: ignore[union-attr]
        assert 0 < len(stored) <= 9 and stored == list(calendar.sessions_back(END, 20)[: len(stored)])
        fake.fail_grouped_after = None
        report = market_for(fake, tmp_path, db=migrated_sqlite, workers=3).backfill(days=20, end=END)
    ok = fake.grouped_dates(status=200)
    # Days fetched ahead of the failure were cached: nothing was fetched successfully twice.
    assert len(ok) == len(set(ok)) == 20 and report.sessions_from_cache == 9 - len(stored)
    assert len(market.store.stored_dates()) == 20 and len(bar_days(migrated_sqlite)) == 20  # type: ignore[union-attr]


KILLED_BACKFILL = """
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo
from engine.data.barstore import BarStore
from engine.data.cache import DataCache
from engine.data.massive import MassiveMarketData
from engine.data.ratelimit import RateLimiter
from engine.db import make_engine

base, root, url, key = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
now = datetime(2024, 3, 8, 20, tzinfo=ZoneInfo("America/New_York"))
market = MassiveMarketData(
    key, base=base, store=BarStore(root / "bars", "massive"), db=make_engine(url),
    cache=DataCache(root / "cache"), limiter=RateLimiter.unlimited(), now=lambda: now, flush_days=4,
)
market.backfill(days=24, end=date(2024, 3, 1))
"""


def test_a_backfill_killed_with_sigkill_resumes_and_completes(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite, sqlite_url: str
) -> None:
    with FakeMassive(grouped=small_market, grouped_delay=0.05) as fake:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-c", KILLED_BACKFILL, fake.base, str(tmp_path), sqlite_url, API_KEY]
        proc = subprocess.Popen(argv, env=env)
        try:
            deadline = time.monotonic() + 30
            while len(fake.grouped_dates()) < 10 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        first_run = fake.grouped_dates()
        assert 10 <= len(first_run) < 24
        stored_before = len(BarStore(tmp_path / "bars", "massive").stored_dates())
        assert 0 < stored_before < 24  # some days reached the store, the rest of the run did not happen

        fake.grouped_delay = 0.0
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        report = market.backfill(days=24, end=END)
    second_run = fake.grouped_dates()[len(first_run):]
    # Days the killed run fetched come from the store or the response cache; at most the day whose
    # response was in flight at the kill is asked again.
    assert len(set(second_run) & set(first_run)) <= 1
    assert sorted(set(first_run) | set(second_run)) == [str(d) for d in market.store.stored_dates()]  # type: ignore[union-attr]
    assert len(market.store.stored_dates()) == 24 and len(bar_days(migrated_sqlite)) == 24  # type: ignore[union-attr]
    assert report.sessions_in_store == stored_before
    assert not stored_rows(market.store).duplicated(["date", "symbol"]).any()  # type: ignore[arg-type]
    assert [r.outcome for r in data_runs(migrated_sqlite)] == ["running", "ok"]  # the killed run left its trace


# --- faults ---------------------------------------------------------------------------------------------


def _one_day(fake: FakeMassive, tmp_path: Path, db: Any = None, **kw: Any) -> tuple[MassiveMarketData, Any]:
    market = market_for(fake, tmp_path, db=db, **kw)
    return market, market.backfill(days=1, end=END)


def test_429_with_retry_after_is_waited_out(small_market: GroupedDayGenerator, tmp_path: Path) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", rate_limited(retry_after=1))
        t0 = time.monotonic()
        market, report = _one_day(fake, tmp_path)
        assert time.monotonic() - t0 >= 0.95  # urllib3 honoured Retry-After
    assert [s.status for s in fake.seen] == [429, 200]
    assert report.days_stored == 1 and market.requests_made == 2


def test_429_without_retry_after_and_500_are_retried(small_market: GroupedDayGenerator, tmp_path: Path) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", rate_limited(), server_error(), Reply(503, b"unavailable"))
        _, report = _one_day(fake, tmp_path)
    assert [s.status for s in fake.seen] == [429, 500, 503, 200] and report.days_stored == 1


def test_a_rate_limit_that_outlasts_every_retry_gives_a_clear_error(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", *[rate_limited()] * 50)
        with pytest.raises(DataSourceUnavailable) as err:
            _one_day(fake, tmp_path, db=migrated_sqlite)
        # 1 + 3 attempts; the outer backoff does not run the spent attempts again (issue 13 item 3).
        assert fake.count() == 4
    assert "grouped daily bars 2024-03-01" in str(err.value) and "429" in str(err.value)
    assert bar_days(migrated_sqlite) == {}


def test_a_timeout_is_retried(small_market: GroupedDayGenerator, tmp_path: Path) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", slow(1.5))
        _, report = _one_day(fake, tmp_path, read_timeout=0.3)
    assert report.days_stored == 1 and fake.count() == 2


def test_timeouts_that_never_end_say_so(small_market: GroupedDayGenerator, tmp_path: Path) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", *[slow(0.5)] * 20)
        with pytest.raises(DataSourceUnavailable, match="timed out"):
            _one_day(fake, tmp_path, read_timeout=0.1, retry=default_retry(total=1, backoff_factor=0),
                     backoff=Backoff.none())


def test_malformed_json_is_retried_and_never_taken_for_an_empty_day(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", malformed())
        _, report = _one_day(fake, tmp_path, db=migrated_sqlite)
        assert report.days_stored == 1 and fake.count() == 2

    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-02-29", *[malformed()] * 5)
        market = market_for(fake, tmp_path / "b", db=None)
        with pytest.raises(DataSourceUnavailable, match="not valid JSON"):
            market.backfill(days=1, end=date(2024, 2, 29))
        assert len(market.store.stored_dates()) == 0  # type: ignore[union-attr]


def test_an_empty_session_is_recorded_once_and_holidays_are_never_asked(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.empty_days = {"2024-02-20"}  # a session the provider has nothing for (settled: weeks ago)
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        report = market.backfill(days=10, end=END)  # 2024-02-16 .. 03-01, around Presidents' Day
        assert "2024-02-19" not in fake.grouped_dates()  # an NYSE holiday is never requested
        assert report.empty_sessions_recorded == 1 and report.days_stored == 9
        assert bar_days(migrated_sqlite)[date(2024, 2, 20)] == 0
        again = market_for(fake, tmp_path, db=migrated_sqlite).backfill(days=10, end=END)
        assert again.requests == 0 and len(fake.seen) == 10


def test_an_empty_answer_for_a_fresh_session_is_asked_again(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    evening = datetime(2024, 3, 1, 17, 0, tzinfo=NY)  # after the close: 03-01 is due but may be unpublished
    assert last_completed_session(evening) == END
    with FakeMassive(grouped=small_market) as fake:
        fake.empty_days = {"2024-03-01"}
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=evening, cache=False)
        report = market.backfill(days=2, end=END)
        assert report.not_yet_published == ["2024-03-01"] and report.empty_sessions_recorded == 0
        assert date(2024, 3, 1) not in bar_days(migrated_sqlite)
        fake.empty_days = set()
        market_for(fake, tmp_path, db=migrated_sqlite, now=evening, cache=False).update(splits=False)
    assert fake.grouped_dates() == ["2024-02-29", "2024-03-01", "2024-03-01"]
    assert bar_days(migrated_sqlite)[date(2024, 3, 1)] > 0


def test_update_fetches_only_the_sessions_after_the_newest_stored(
    recorded: Path, small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(recorded, grouped=small_market) as fake:
        friday = datetime(2024, 2, 23, 20, tzinfo=NY)
        market_for(fake, tmp_path, db=migrated_sqlite, now=friday).backfill(days=5)
        assert fake.grouped_dates() == ["2024-02-16", "2024-02-20", "2024-02-21", "2024-02-22", "2024-02-23"]
        report = market_for(fake, tmp_path, db=migrated_sqlite).update()  # NOW = 2024-03-08 evening
        later = fake.grouped_dates()[5:]
        assert later == [str(d) for d in pd.bdate_range("2024-02-26", "2024-03-08").date]
        assert report.sessions_requested == 10 and fake.count("/v3/reference/splits") == 1
        # Nothing new: no grouped request (the split check still runs).
        market_for(fake, tmp_path, db=migrated_sqlite).update(splits=False)
        assert len(fake.grouped_dates()) == 15


def test_daily_bars_fetch_what_the_store_lacks_then_read_it(
    small_market: GroupedDayGenerator, tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=small_market) as fake:
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        panel = market.daily_bars(date(2024, 2, 26), date(2024, 3, 20), symbols=["A", "B", "ZZZ"])
        # Sessions up to the last completed one (2024-03-08) are fetched; none after, none twice.
        assert fake.grouped_dates() == [str(d) for d in pd.bdate_range("2024-02-26", "2024-03-08").date]
        assert panel.n_days == 10 and list(panel.symbols) == ["A", "B", "ZZZ"] and np.isnan(panel.close[:, 2]).all()
        market.daily_bars(date(2024, 2, 26), date(2024, 3, 8))
        assert len(fake.seen) == 10


def test_repair_fills_a_symbols_holes_from_list_aggs(recorded: Path, small_market: GroupedDayGenerator,
                                                    tmp_path: Path) -> None:
    with FakeMassive(recorded, grouped=small_market) as fake:
        market = market_for(fake, tmp_path, now=datetime(2005, 4, 20, 12, tzinfo=NY))
        market.backfill(days=2, end=date(2005, 4, 4))  # 04-01 generated, 04-04 the recorded file (GIK only)
        assert "AAPL" not in set(market.store.load().symbols)  # type: ignore[union-attr]
        written = market.repair(None, "AAPL", date(2005, 4, 1), date(2005, 4, 4))
        aggs = [s for s in fake.seen if s.path.startswith("/v2/aggs/ticker/AAPL")]
    assert written == 2 and aggs[0].params["adjusted"] == "true" and aggs[0].params["sort"] == "asc"
    frame = market.store.load(symbols=["AAPL"], dtype=np.float64).frame("AAPL")  # type: ignore[union-attr]
    assert frame["close"].tolist() == [1.4604, 1.4675] and frame.index.date.tolist() == [date(2005, 4, 1),
                                                                                          date(2005, 4, 4)]


class _Tickers:
    """A grouped-day source for a few named tickers."""

    def __init__(self, tickers: list[str], price: float = 400.0) -> None:
        self.tickers, self.price = tickers, price

    def body(self, day: date) -> bytes:
        import json

        results = [{"T": t, "v": 1000 + i, "vw": self.price, "o": self.price, "c": self.price + i,
                    "h": self.price + 5, "l": self.price - 5, "t": 0, "n": 10} for i, t in enumerate(self.tickers)]
        return json.dumps({"queryCount": len(results), "resultsCount": len(results), "adjusted": True,
                           "results": results, "status": "OK", "request_id": "x", "count": len(results)}).encode()


def test_a_split_after_bars_were_stored_refetches_that_symbols_history(
    recorded: Path, tmp_path: Path, migrated_sqlite
) -> None:
    before = datetime(2022, 6, 3, 20, tzinfo=NY)  # AMZN splits 20:1 on 2022-06-06, GOOGL on 07-18
    after = datetime(2022, 7, 20, 20, tzinfo=NY)
    with FakeMassive(recorded, grouped=_Tickers(["AMZN", "GOOGL", "MSFT"])) as fake:
        fake.aggs = lambda ticker, start, end: daily_aggs(ticker, start, end, price=100.0)
        market_for(fake, tmp_path, db=migrated_sqlite, now=before).backfill(days=5)
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=after)
        report = market.check_splits(since=date(2022, 5, 1))
        refetches = sorted({s.path.split("/")[4] for s in fake.seen if s.path.startswith("/v2/aggs/ticker/")})
        assert report.symbols_refetched == refetches == ["AMZN", "GOOGL"]  # not MSFT, not symbols we never stored
        # The settled days (fetched 06-03, days 05-27 and 05-31) were cached before the splits: evicted.
        assert report.cache_days_evicted == 2
        panel = market.store.load(dtype=np.float64)  # type: ignore[union-attr]
        closes = dict(zip(panel.symbols, panel.close[0], strict=True))
        assert closes == {"AMZN": 100.0, "GOOGL": 100.0, "MSFT": 402.0}  # refetched (adjusted) vs untouched
        # Each split is acted on once.
        market.check_splits(since=date(2022, 5, 1))
        assert sum(s.path.startswith("/v2/aggs/ticker/") for s in fake.seen) == 2


# --- intraday and options --------------------------------------------------------------------------------


def test_quotes_come_from_one_whole_market_snapshot(recorded: Path, tmp_path: Path) -> None:
    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path)
        quotes = market.quotes(["BCAT", "NOPE"], datetime.now(NY))
        many = market.quotes([f"S{i}" for i in range(150)] + ["BCAT"], datetime.now(NY))
        snapshots = [s for s in fake.seen if s.path == "/v2/snapshot/locale/us/markets/stocks/tickers"]
    assert list(quotes.columns) == ["symbol", "bid", "ask", "last", "time"]
    bcat = quotes.iloc[0]
    assert (bcat.bid, bcat.ask, bcat.last) == (20.5, 20.6, 20.506)
    assert bcat.time.tzinfo is not None and bcat.time.year == 2020
    assert quotes.iloc[1][["bid", "ask", "last"]].isna().all()
    assert len(snapshots) == 2 and snapshots[0].params["tickers"] == "BCAT,NOPE"
    assert "tickers" not in snapshots[1].params and many.iloc[-1].bid == 20.5
    with pytest.raises(ValueError, match="timezone-aware"):
        market.quotes(["BCAT"], datetime(2024, 1, 2, 10))


def test_the_options_snapshot_parses_into_the_normalised_chain(recorded: Path, tmp_path: Path) -> None:
    from engine.options.chain import CHAIN_COLUMNS

    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path)
        chain = market.option_chain("AAPL", datetime.now(NY), expiry_from=date(2023, 6, 1),
                                    expiry_to=date(2023, 7, 31), strike_min=100, strike_max=200)
        enriched = market.option_chain("AAPL", datetime.now(NY), r=0.04)
        params = fake.seen[0].params
    assert params["expiration_date.gte"] == "2023-06-01" and params["expiration_date.lte"] == "2023-07-31"
    assert params["strike_price.gte"] == "100" and params["strike_price.lte"] == "200"
    assert tuple(chain.columns) == CHAIN_COLUMNS and len(chain) == 1
    row = chain.iloc[0]
    assert (row.underlying, row.expiry, row.strike, row.right) == ("AAPL", date(2023, 6, 16), 150.0, "C")
    assert row.delta == pytest.approx(0.6436614934293701) and row.iv == pytest.approx(0.3570277203465058)
    assert row.open_interest == 8133 and (row.bid, row.ask) == (28.9, 29.25) and row.source == "massive"
    # Ours beside the provider's.
    assert {"calc_iv", "calc_delta", "quote_flag"} <= set(enriched.columns)
    assert 0.5 < enriched.iloc[0].calc_delta < 0.8 and enriched.iloc[0].delta == row.delta


# --- keys -----------------------------------------------------------------------------------------------------


def test_a_bad_key_gives_a_clear_message_without_the_key(recorded: Path, tmp_path: Path) -> None:
    secret = "sk-wrong-but-secret-value"
    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path, key=secret)
        with pytest.raises(DataSourceAuthError) as err:
            market.universe()
        assert fake.count() == 1  # never retried
        message = str(err.value)
        assert "bad or unauthorised API key" in message and "HTTP 401" in message
        assert "QM_MASSIVE_API_KEY" in message and secret not in message and secret not in repr(market)

        fake.forbidden = {"/v3/snapshot/options"}
        with pytest.raises(DataSourceAuthError, match=r"HTTP 403.*not entitled"):
            market_for(fake, tmp_path).option_chain("AAPL", datetime.now(NY))
    # The key travels in the Authorization header, never in a URL.
    assert all(secret not in s.path and API_KEY not in str(s.params) for s in fake.seen)


def test_from_settings_needs_the_key_and_uses_the_configured_server(
    recorded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.config import load_settings
    from engine.data.sources import get_market_data

    with pytest.raises(MassiveKeyMissing, match="QM_MASSIVE_API_KEY"):
        MassiveMarketData.from_settings(load_settings(data_source="massive"))
    with pytest.raises(MassiveKeyMissing, match="QM_MASSIVE_API_KEY"):
        get_market_data(load_settings(data_source="massive", massive_api_key="  "))
    with FakeMassive(recorded) as fake:
        monkeypatch.setenv("QM_DATA_SOURCE", "massive")
        monkeypatch.setenv("QM_MASSIVE_API_KEY", API_KEY)
        monkeypatch.setenv("QM_MASSIVE_BASE_URL", fake.base)
        market = get_market_data(load_settings())
        assert isinstance(market, MassiveMarketData) and market.limiter.limit == 5  # the free plan
        assert market.workers == 1 and API_KEY not in repr(market)
        assert len(market.universe()) == 4


def test_requests_wait_for_the_rate_limiter(recorded: Path, tmp_path: Path) -> None:
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(2, 60.0, clock=lambda: clock[0], sleep=sleep)
    with FakeMassive(recorded) as fake:
        market = market_for(fake, tmp_path, cache=False, limiter=limiter)
        market.universe()  # two pages: two requests, within the limit
        assert sleeps == []
        market.quotes(["BCAT"], datetime.now(NY))  # the third request waits for the window
    assert sleeps == [60.0] and Counter(s.status for s in fake.seen) == {200: 3}


def test_error_messages_name_the_request(small_market: GroupedDayGenerator, tmp_path: Path) -> None:
    with FakeMassive(grouped=small_market) as fake:
        fake.fault("2024-03-01", Reply(400, {"status": "ERROR", "error": "Date is not a valid date"}))
        with pytest.raises(DataSourceError, match=r"grouped daily bars 2024-03-01: HTTP 400: Date is not"):
            _one_day(fake, tmp_path)
