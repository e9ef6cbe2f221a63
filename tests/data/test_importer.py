from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from engine.data.barstore import BarStore
from engine.data.importer import import_bars
from tests.conftest import shared_data


def test_imports_the_real_sample_file(tmp_path: Path) -> None:
    path = shared_data("stocks", "sample_daily_2013_2018.csv")
    store = BarStore(tmp_path, "csv")
    report = import_bars(path, store)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert report.rows_rejected == 0, report.errors[:5]
    assert report.rows_imported == len(rows)
    assert report.symbols == {r["Name"] for r in rows}
    panel = store.load(dtype=np.float64)
    # Spot-check one bar against the file itself (read by the csv module, not by our code).
    row = next(r for r in rows if r["Name"] == "NFLX" and r["date"] == "2016-06-01")
    i = int(np.flatnonzero(panel.dates == np.datetime64("2016-06-01"))[0])
    j = int(np.flatnonzero(panel.symbols == "NFLX")[0])
    assert panel.close[i, j] == float(row["close"])
    assert panel.volume[i, j] == float(row["volume"])


def test_broken_rows_are_rejected_with_file_line_and_field_and_the_rest_imported(tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    src.write_text(
        "date,open,high,low,close,volume,ticker\n"
        "2026-01-05,10,11,9,10.5,1000,AAA\n"  # line 2 ok
        "2026-01-06,10,11,9,abc,1000,AAA\n"  # line 3 close not a number
        "2026-13-07,10,11,9,10.5,1000,AAA\n"  # line 4 bad date
        "2026-01-08,-1,11,9,10.5,1000,AAA\n"  # line 5 negative open
        "2026-01-09,10,11,9,10.5,-5,AAA\n"  # line 6 negative volume
        "2026-01-05,10,11,9,10.6,1000,AAA\n"  # line 7 duplicate of line 2
        "2026-01-12,10,11,9,,1000,AAA\n"  # line 8 empty close
        "2026-01-13,20,21,19,20.5,500,BBB\n"  # line 9 ok
    )
    store = BarStore(tmp_path / "store", "csv")
    report = import_bars(src, store)
    assert report.rows_imported == 2
    assert report.rows_rejected == 6
    text = "\n".join(report.errors)
    assert f"{src}:3: field 'close' = 'abc'" in text
    assert f"{src}:4: field 'date' = '2026-13-07'" in text
    assert f"{src}:5: field 'open' = '-1'" in text
    assert f"{src}:6: field 'volume' = '-5'" in text
    assert f"{src}:7: field 'date'" in text and "duplicate" in text
    assert f"{src}:8: field 'close' = ''" in text
    panel = store.load(dtype=np.float64)
    assert sorted(panel.symbols) == ["AAA", "BBB"]
    assert np.nansum(panel.close) == pytest.approx(10.5 + 20.5)


def test_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    src = tmp_path / "nohigh.csv"
    src.write_text("date,open,low,close,volume,symbol\n2026-01-05,10,9,10.5,1000,AAA\n")
    report = import_bars(src, BarStore(tmp_path / "s", "csv"))
    assert report.rows_imported == 0
    assert report.errors and str(src) in report.errors[0] and "'high'" in report.errors[0]


def test_a_second_import_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("date,open,high,low,close,volume\n2026-01-05,10,11,9,10.5,1000\n")
    store = BarStore(tmp_path / "s", "csv")
    import_bars(src, store, symbol="zzz")
    import_bars(src, store, symbol="zzz")
    panel = store.load()
    assert panel.close.shape == (1, 1) and list(panel.symbols) == ["ZZZ"]


def test_parquet_files_import(tmp_path: Path) -> None:
    import pandas as pd

    src = tmp_path / "b.parquet"
    pd.DataFrame({"date": ["2026-01-05"], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5],
                  "volume": [10], "symbol": ["PQ"]}).to_parquet(src)
    report = import_bars(src, BarStore(tmp_path / "s", "csv"))
    assert report.rows_imported == 1 and report.symbols == {"PQ"}
