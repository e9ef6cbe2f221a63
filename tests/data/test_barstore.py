from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data.barstore import BarStore, panel_to_table


def _bars(days: list[str], symbols: list[str], base: float = 10.0) -> pd.DataFrame:
    rows = []
    for i, d in enumerate(days):
        for j, s in enumerate(symbols):
            c = base + i + j / 100
            rows.append({"date": d, "symbol": s, "open": c - 0.1, "high": c + 0.5, "low": c - 0.5,
                         "close": c, "volume": 1000.0 * (i + 1)})
    return pd.DataFrame(rows)


def test_round_trip_gives_a_dense_panel_with_nan_for_missing_bars(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "csv")
    store.write(_bars(["2026-01-29", "2026-01-30", "2026-02-02"], ["AAA", "BBB"]))
    store.write(_bars(["2026-02-02"], ["CCC"], base=50.0))  # CCC starts late
    panel = store.load(dtype=np.float64)
    assert list(panel.symbols) == ["AAA", "BBB", "CCC"]
    assert panel.dates.tolist() == [date(2026, 1, 29), date(2026, 1, 30), date(2026, 2, 2)]
    # BBB on 2026-01-30: base 10 + day index 1 + 1/100 = 11.01
    assert panel.close[1, 1] == pytest.approx(11.01, abs=0)
    assert panel.high[1, 1] == pytest.approx(11.51, rel=1e-15)
    assert np.isnan(panel.close[:2, 2]).all() and panel.close[2, 2] == 50.0
    assert panel.volume[2, 0] == 3000.0
    assert panel.close.dtype == np.float64 and store.load().close.dtype == np.float32


def test_upsert_replaces_a_day_and_keeps_the_rest(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    store.write(_bars(["2026-03-02", "2026-03-03"], ["AAA", "BBB"]))
    fix = _bars(["2026-03-03"], ["AAA"], base=99.0)
    store.write(fix)
    panel = store.load(dtype=np.float64)
    assert panel.close[1, 0] == 99.0  # replaced
    assert panel.close[1, 1] == pytest.approx(11.01)  # BBB untouched
    assert panel.close[0, 0] == 10.0
    assert len(store.stored_dates()) == 2


def test_load_filters_by_date_range_and_symbols_in_the_order_asked(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    store.write(_bars(["2025-12-30", "2025-12-31", "2026-01-02", "2026-01-05"], ["AAA", "BBB", "CCC"]))
    panel = store.load(date(2025, 12, 31), date(2026, 1, 2), symbols=["CCC", "AAA"])
    assert panel.dates.tolist() == [date(2025, 12, 31), date(2026, 1, 2)]
    assert list(panel.symbols) == ["CCC", "AAA"]
    assert panel.close[0, 0] == pytest.approx(11.02)  # CCC (j=2) on day index 1
    assert list(store.stored_dates(date(2026, 1, 1))) == [np.datetime64("2026-01-02"), np.datetime64("2026-01-05")]


def test_duplicate_rows_in_one_write_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    bars = _bars(["2026-03-02"], ["AAA"])
    with pytest.raises(ValueError, match="more than once"):
        store.write(pd.concat([bars, bars]))
    assert store.load().n_symbols == 0


def test_panel_to_table_round_trip(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    store.write(_bars(["2026-03-02", "2026-03-03", "2026-03-04"], ["AAA", "BBB"]))
    first = store.load(dtype=np.float64)
    other = BarStore(tmp_path, "copy")
    other.write(panel_to_table(first))
    second = other.load(dtype=np.float64)
    for field in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


def test_delete_symbols(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    store.write(_bars(["2026-03-02", "2026-04-01"], ["AAA", "BBB"]))
    assert store.delete_symbols(["AAA"]) == 2
    assert list(store.load().symbols) == ["BBB"]


def test_symbols_without_bars_in_the_range_are_not_columns(tmp_path: Path) -> None:
    store = BarStore(tmp_path, "sim")
    store.write(_bars(["2026-03-02"], ["OLD"]))
    store.write(_bars(["2026-03-03"], ["NEW"]))
    panel = store.load(date(2026, 3, 3), date(2026, 3, 3))
    assert list(panel.symbols) == ["NEW"]
