"""The ATR Matrix scan runs on bars backfilled from Massive (local fake server), reading only the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from engine.bench.data import GroupedDayGenerator
from engine.config import load_settings
from engine.data.barstore import BarStore
from engine.data.cache import DataCache
from engine.data.massive import MassiveMarketData, default_retry
from engine.data.ratelimit import Backoff, RateLimiter
from engine.db import get_engine, migrate
from engine.scanning import run_scan
from tests.data.fake_massive import API_KEY, FakeMassive
from tests.data.test_massive import NOW


def test_scan_runs_on_massive_bars(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, data_source="massive")
    migrate(settings.db_url)
    db = get_engine(settings.db_url)
    # a few tickers missing on a few days (as in real grouped data for thin names), most complete
    generator = GroupedDayGenerator(n_symbols=300, seed=5, missing=0.0002)
    with FakeMassive(grouped=generator) as fake:
        market = MassiveMarketData(
            API_KEY, base=fake.base, store=BarStore(settings.bar_store_dir, "massive"), db=db,
            cache=DataCache(tmp_path / "cache"), limiter=RateLimiter.unlimited(), backoff=Backoff(delays=(0.01,)),
            retry=default_retry(total=2, backoff_factor=0.01, backoff_max=0.02), now=lambda: NOW)
        report = market.backfill(days=270, end=date(2024, 3, 1))
        assert report.requests == 270
        requests_before_scan = len(fake.seen)
        outcome = run_scan(settings, db)
        assert len(fake.seen) == requests_before_scan  # the scan reads the bar store only
    run = outcome.run
    assert run.data_source == "massive" and run.data_date == date(2024, 3, 1)
    frame = outcome.results
    assert frame is not None and len(frame) == run.n_scanned >= 250
    scored = frame[frame["excluded_reason"].isna()]
    assert len(scored) > 200 and scored["score"].between(0, 1).all()
    gaps = frame[frame["excluded_reason"].fillna("").str.startswith("gap on")]
    assert len(gaps) == run.n_excluded  # the only defect in this data: days a ticker did not trade
    assert run.n_excluded == len(frame) - len(scored)
    # the same data date and parameters come from the stored run the second time
    again = run_scan(settings, db)
    assert again.cache_hit and again.run.id == run.id and again.run.cache_hits == 1
