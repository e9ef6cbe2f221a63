"""Issue 12 item 3: the CSV source's intraday quote never looks ahead to the day's close."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine.clock import NEW_YORK
from engine.config import load_settings
from engine.data.importer import import_bars
from engine.data.sources import bar_store, get_market_data
from tests.conftest import shared_data

# KO in the recorded file: 2018-02-06 close 44.67; 2018-02-07 open 44.58, close 44.56.


def test_intraday_quotes_use_the_open_until_the_close_is_known(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, data_source="csv")
    import_bars(shared_data("stocks", "sample_daily_2013_2018.csv"), bar_store(settings))
    market = get_market_data(settings)

    def quote(h: int, m: int):  # type: ignore[no-untyped-def]
        return market.quotes(["KO"], datetime(2018, 2, 7, h, m, tzinfo=NEW_YORK)).iloc[0]

    morning = quote(9, 35)
    assert morning["last"] == 44.58  # the open, not the 44.56 close that was not known at 09:35
    assert morning["bid"] < 44.58 < morning["ask"]
    assert round(morning["ask"] - morning["bid"], 4) == round(44.58 * 0.001, 4)
    assert quote(8, 30)["last"] == 44.67  # before the open: the previous close
    assert quote(16, 30)["last"] == 44.56  # after the close
