"""Issue 13 items 6 and 7 (reference data) against the local fake Massive: dividend yield from the
recorded ``v3/reference/dividends`` results."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import shared_data
from tests.data.fake_massive import FakeMassive
from tests.data.test_massive import market_for

NY = ZoneInfo("America/New_York")


class OneTicker:
    def __init__(self, ticker: str, close: float) -> None:
        self.ticker, self.close = ticker, close

    def body(self, day: date) -> bytes:
        row = {"T": self.ticker, "v": 1000, "vw": self.close, "o": self.close, "c": self.close, "h": self.close,
               "l": self.close, "t": 0, "n": 10}
        return json.dumps({"queryCount": 1, "resultsCount": 1, "adjusted": True, "results": [row], "status": "OK",
                           "request_id": "x", "count": 1}).encode()


def test_dividend_yield_is_the_trailing_years_cash_over_the_last_close_continuously_compounded(
    tmp_path: Path,
) -> None:
    recorded = json.loads((shared_data("polygon") / "v3/reference/dividends.json").read_text())["results"]
    now = datetime(2025, 7, 3, 20, tzinfo=NY)
    with FakeMassive(grouped=OneTicker("CSSEN", 25.0)) as fake:
        fake.dividends = recorded
        market = market_for(fake, tmp_path, now=now)
        market.backfill(days=2, end=date(2025, 6, 30))
        q = market.dividend_yield("CSSEN", date(2025, 6, 30))
        again = market.dividend_yield("CSSEN", date(2025, 6, 30))
        requests = fake.count("/v3/reference/dividends")
        none = market.dividend_yield("NODIV", date(2025, 6, 30))
    # Ex-dates within 2024-06-30..2025-06-30: 2024-09-12, 2024-12-12, 2025-03-13, 2025-06-12 (2024-06-13 is
    # 382 days back): 4 x 0.59375 = 2.375 a share over the 25.00 close.
    assert q == pytest.approx(math.log(1 + 2.375 / 25.0), rel=1e-12) and again == q
    assert requests == 1  # cached
    assert none == 0.0
