from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine.config import load_settings
from engine.data.importer import import_bars
from engine.data.sources import bar_store, get_market_data
from tests.conftest import shared_data


def test_imported_csv_bars_are_a_data_source(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, data_source="csv")
    import_bars(shared_data("stocks", "sample_daily_2013_2018.csv"), bar_store(settings))
    market = get_market_data(settings)
    assert market.name == "csv"
    assert sorted(market.universe()["symbol"]) == ["AAPL", "AMD", "AMZN", "BA", "CAT", "JPM", "KO", "MSFT", "NFLX",
                                                   "NVDA", "XOM"]
    quote = market.quotes(["KO"], datetime(2018, 2, 8, 15, tzinfo=UTC)).iloc[0]
    assert quote["last"] == 44.56  # KO's last close in the file, 2018-02-07
    assert market.option_chain("KO", datetime(2018, 2, 8, 15, tzinfo=UTC)).empty
