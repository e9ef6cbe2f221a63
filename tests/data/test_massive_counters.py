"""Issue 13 item 8: honest counters. The response cache's hit rate counts diskcache lookups only; the
sessions the bar store answers are requests avoided, counted apart, against the requests that would have
been needed. Checked against the requests the local fake server actually saw."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import Session

from engine.bench.data import GroupedDayGenerator
from engine.models import BarDay
from tests.data.fake_massive import FakeMassive
from tests.data.test_massive import END, data_runs, market_for


def test_bar_store_answers_are_not_cache_hits_and_avoided_requests_are_counted_per_source(
    tmp_path: Path, migrated_sqlite
) -> None:
    with FakeMassive(grouped=GroupedDayGenerator(80, seed=2)) as fake:
        market_for(fake, tmp_path, db=migrated_sqlite).backfill(days=6, end=END)
        assert len(fake.grouped_dates()) == 6
        # Second run: everything in the bar store. No cache lookup happened, so no cache hit rate.
        market_for(fake, tmp_path, db=migrated_sqlite).backfill(days=6, end=END)
        # Third run: the store is gone, the response cache answers.
        shutil.rmtree(tmp_path / "bars")
        with Session(migrated_sqlite) as session:
            session.exec(delete(BarDay))  # type: ignore[call-overload]
            session.commit()
        market_for(fake, tmp_path, db=migrated_sqlite).backfill(days=6, end=END)
        assert len(fake.grouped_dates()) == 6  # the server saw no request after the first run
    first, second, third = (r for r in data_runs(migrated_sqlite) if r.kind == "backfill")
    assert (first.requests, first.cache_hits, first.cache_misses) == (6, 0, 6)
    assert (second.requests, second.cache_hits, second.cache_misses) == (0, 0, 0)
    assert second.detail["hit_rate"] is None and second.detail["avoided_rate"] == 1.0
    assert second.detail["requests_avoided"] == {
        "requests_needed": 6, "avoided_by_bar_store": 6, "avoided_by_response_cache": 0, "requests_made": 0,
        "avoided_rate": 1.0,
    }
    assert (third.requests, third.cache_hits, third.cache_misses) == (0, 6, 0)
    assert third.detail["requests_avoided"]["avoided_by_response_cache"] == 6 and third.detail["hit_rate"] == 1.0
    assert first.detail["requests_avoided"]["avoided_rate"] == 0.0
