"""Issue 13 item 5: the post-market's grouped bars (30 minutes after the close) are provisional; Massive
revises volume, VWAP and trade counts later. The next pre-market re-fetches the session once it has
settled, replaces it and records it final. Local fake server."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session, select

from engine.models import BarDay
from tests.data.fake_massive import FakeMassive
from tests.data.test_massive import market_for

NY = ZoneInfo("America/New_York")
DAY = date(2024, 3, 1)


class Revising:
    """One ticker whose reported volume grows once the provider has settled the day."""

    def __init__(self) -> None:
        self.volume = 1_000.0

    def body(self, day: date) -> bytes:
        row = {"T": "AAA", "v": self.volume, "vw": 10.0, "o": 10.0, "c": 10.0, "h": 10.0, "l": 10.0, "t": 0, "n": 5}
        return json.dumps({"queryCount": 1, "resultsCount": 1, "adjusted": True, "results": [row], "status": "OK",
                           "request_id": "x", "count": 1}).encode()


def _final(db) -> dict[date, bool]:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        return {b.trade_date: b.final for b in session.exec(select(BarDay)).all()}


def test_a_session_stored_after_the_close_is_refetched_once_settled_and_marked_final(
    tmp_path: Path, migrated_sqlite
) -> None:
    source = Revising()
    with FakeMassive(grouped=source) as fake:
        post_market = market_for(fake, tmp_path, db=migrated_sqlite, now=datetime(2024, 3, 1, 16, 30, tzinfo=NY))
        post_market.daily_bars(DAY, DAY)
        assert _final(migrated_sqlite) == {DAY: False}
        source.volume = 1_750.0  # the provider's revision after the close
        early = market_for(fake, tmp_path, db=migrated_sqlite, now=datetime(2024, 3, 2, 3, 0, tzinfo=NY))
        assert early.settle_sessions() == 0 and len(fake.grouped_dates()) == 1  # not settled yet
        pre_market = market_for(fake, tmp_path, db=migrated_sqlite, now=datetime(2024, 3, 4, 8, 30, tzinfo=NY))
        assert pre_market.settle_sessions() == 1
        assert pre_market.settle_sessions() == 0  # once
        volume = pre_market.store.load(DAY, DAY, ["AAA"], dtype=np.float64).volume[0, 0]  # type: ignore[union-attr]
    assert volume == 1_750.0 and _final(migrated_sqlite) == {DAY: True}
    assert fake.grouped_dates() == ["2024-03-01", "2024-03-01"]


def test_a_backfill_of_settled_days_needs_no_settling(tmp_path: Path, migrated_sqlite) -> None:
    with FakeMassive(grouped=Revising()) as fake:
        market = market_for(fake, tmp_path, db=migrated_sqlite, now=datetime(2024, 3, 8, 20, tzinfo=NY))
        market.backfill(days=3, end=DAY)
        assert all(_final(migrated_sqlite).values()) and market.settle_sessions() == 0
        assert len(fake.grouped_dates()) == 3
