"""Columnar store of daily bars: Parquet files, one per (source, month), loaded as a dense Panel.

Why monthly files: a full-market day is ~32k rows, so one file per day means hundreds of tiny files to
open for a year's panel; one file per month keeps a 300-day load to ~15 reads while a nightly update
rewrites only the current month (~700k rows, tens of milliseconds). Every write goes to a temporary file
that is renamed over the old one, so a crash mid-write leaves the previous month intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.data.panel import FIELDS, Panel

SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("symbol", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


class BarStore:
    def __init__(self, root: Path, source: str) -> None:
        self.dir = Path(root) / source
        self.dir.mkdir(parents=True, exist_ok=True)
        self.source = source

    # --- writing ---------------------------------------------------------------------------------

    def write(self, bars: pd.DataFrame | pa.Table) -> int:
        """Upsert bars (columns date, symbol, open, high, low, close, volume); a (date, symbol) already
        stored is replaced. Returns the number of rows written."""
        table = _as_table(bars)
        if table.num_rows == 0:
            return 0
        months = pc.strftime(pc.cast(table["date"], pa.timestamp("s")), format="%Y-%m")
        for month in pc.unique(months).to_pylist():
            part = table.filter(pc.equal(months, month))
            self._merge_month(month, part)
        return table.num_rows

    def _merge_month(self, month: str, new: pa.Table) -> None:
        path = self._month_path(month)
        if path.exists():
            old = pq.read_table(path, schema=SCHEMA)
            # Keep old rows whose (date, symbol) the new rows do not replace.
            new_keys = pa.Table.from_arrays([new["date"], new["symbol"]], names=["date", "symbol"])
            old = old.join(new_keys.append_column("_new", pa.array(np.ones(new.num_rows, bool))),
                           keys=["date", "symbol"], join_type="left outer")
            old = old.filter(pc.is_null(old["_new"])).drop_columns(["_new"]).select(COLUMNS)
            new = pa.concat_tables([old.cast(SCHEMA), new])
        new = new.sort_by([("date", "ascending"), ("symbol", "ascending")])
        _atomic_write(new, path)

    def delete_symbols(self, symbols: Iterable[str]) -> int:
        """Remove every bar of ``symbols`` (e.g. before refetching a symbol's history after a split)."""
        drop = pa.array(sorted(set(symbols)), pa.string())
        removed = 0
        for path in self._month_files():
            table = pq.read_table(path, schema=SCHEMA)
            keep = pc.invert(pc.is_in(table["symbol"], value_set=drop))
            kept = table.filter(keep)
            if kept.num_rows != table.num_rows:
                removed += table.num_rows - kept.num_rows
                _atomic_write(kept, path)
        return removed

    # --- reading ---------------------------------------------------------------------------------

    def stored_dates(self, start: date | None = None, end: date | None = None) -> np.ndarray:
        """The distinct trading dates stored, ascending, as datetime64[D]."""
        files = self._month_files(start, end)
        if not files:
            return np.array([], dtype="datetime64[D]")
        parts = [pq.read_table(p, columns=["date"])["date"] for p in files]
        dates = np.unique(np.concatenate([c.to_numpy().astype("datetime64[D]") for c in parts]))
        return _clip(dates, start, end)

    def load(
        self,
        start: date | None = None,
        end: date | None = None,
        symbols: Sequence[str] | None = None,
        dtype: type | np.dtype = np.float32,
    ) -> Panel:
        """A dense (days x symbols) panel of the stored bars in [start, end] (inclusive)."""
        files = self._month_files(start, end)
        if not files:
            empty = np.empty((0, 0), dtype=dtype)
            return Panel(np.array([], "datetime64[D]"), np.array([], object), *(empty,) * len(FIELDS))
        filters = []
        if start is not None:
            filters.append(("date", ">=", start))
        if end is not None:
            filters.append(("date", "<=", end))
        if symbols is not None:
            filters.append(("symbol", "in", list(symbols)))
        tables = [
            pq.read_table(f, filters=filters or None, read_dictionary=["symbol"], use_threads=True)
            for f in files
        ]
        table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
        return _to_panel(table, dtype, list(symbols) if symbols is not None else None)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._month_files())

    def _month_path(self, month: str) -> Path:
        return self.dir / f"{month}.parquet"

    def _month_files(self, start: date | None = None, end: date | None = None) -> list[Path]:
        lo = f"{start:%Y-%m}" if start else "0000-00"
        hi = f"{end:%Y-%m}" if end else "9999-99"
        return sorted(p for p in self.dir.glob("????-??.parquet") if lo <= p.stem <= hi)


def _as_table(bars: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(bars, pd.DataFrame):
        missing = [c for c in COLUMNS if c not in bars.columns]
        if missing:
            raise ValueError(f"bars are missing columns {missing}")
        df = bars.loc[:, list(COLUMNS)].copy()
        df["date"] = pd.to_datetime(df["date"]).dt.date
        table = pa.Table.from_pandas(df, preserve_index=False)
    else:
        table = bars.select(COLUMNS)
    table = table.cast(SCHEMA)
    keys = pa.Table.from_arrays([table["date"], table["symbol"]], names=["d", "s"])
    if keys.group_by(["d", "s"]).aggregate([]).num_rows != table.num_rows:
        raise ValueError("bars contain the same (date, symbol) more than once")
    return table


def _to_panel(table: pa.Table, dtype: type | np.dtype, symbol_order: list[str] | None) -> Panel:
    dates_col = table["date"].to_numpy().astype("datetime64[D]")
    sym_dict = table["symbol"].chunk(0) if table["symbol"].num_chunks == 1 else table["symbol"].combine_chunks()
    if not pa.types.is_dictionary(sym_dict.type):
        sym_dict = pc.dictionary_encode(sym_dict)
    codes = sym_dict.indices.to_numpy(zero_copy_only=False)
    names = np.asarray(sym_dict.dictionary.to_pylist(), dtype=object)
    if symbol_order is None:
        # Only symbols with a bar in range become columns (the dictionary may hold others), sorted.
        present = np.unique(codes)
        order = present[np.argsort(names[present], kind="stable")]
        symbols = names[order]
        col_of_code = np.full(len(names), -1, np.int64)
        col_of_code[order] = np.arange(len(order))
    else:
        symbols = np.asarray(symbol_order, dtype=object)
        position = {s: i for i, s in enumerate(symbol_order)}
        # The dictionary may name symbols the filter removed; their codes never occur in the rows.
        col_of_code = np.fromiter((position.get(s, -1) for s in names), np.int64, count=len(names))
    dates, row = np.unique(dates_col, return_inverse=True)
    col = col_of_code[codes]
    shape = (len(dates), len(symbols))
    arrays = []
    for field in FIELDS:
        dense = np.full(shape, np.nan, dtype=dtype)
        dense[row, col] = table[field].to_numpy()
        arrays.append(dense)
    return Panel(dates, symbols, *arrays)


def _clip(dates: np.ndarray, start: date | None, end: date | None) -> np.ndarray:
    if start is not None:
        dates = dates[dates >= np.datetime64(start, "D")]
    if end is not None:
        dates = dates[dates <= np.datetime64(end, "D")]
    return dates


def _atomic_write(table: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=["symbol"])
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def panel_to_table(panel: Panel) -> pa.Table:
    """Long (date, symbol, fields...) rows for every cell of ``panel`` that has a bar."""
    has_bar = ~np.isnan(panel.close)
    rows, cols = np.nonzero(has_bar)
    return pa.table(
        {
            "date": pa.array(panel.dates[rows].astype("datetime64[D]"), pa.date32()),
            "symbol": pa.array(panel.symbols[cols].astype(str), pa.string()),
            **{f: pa.array(getattr(panel, f)[rows, cols].astype(np.float64)) for f in FIELDS},
        },
        schema=SCHEMA,
    )
