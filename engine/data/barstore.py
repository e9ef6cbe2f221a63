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
        months = table["date"].to_numpy().astype("datetime64[M]")
        for month in np.unique(months):
            part = table.filter(pa.array(months == month)) if len(np.unique(months)) > 1 else table
            self._merge_month(str(month), part)
        return table.num_rows

    def write_panel(self, panel: Panel) -> int:
        """Write every bar of a dense panel, one month at a time (keeps memory to one month's rows)."""
        months = panel.dates.astype("datetime64[M]")
        written = 0
        for month in np.unique(months):
            rows = np.flatnonzero(months == month)
            part = Panel(panel.dates[rows], panel.symbols, *(getattr(panel, f)[rows] for f in FIELDS))
            written += self.write(panel_to_table(part))
        return written

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
        return _to_panel(tables, dtype, list(symbols) if symbols is not None else None)

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
    table = table.cast(SCHEMA).sort_by([("date", "ascending"), ("symbol", "ascending")])
    d = table["date"].to_numpy()
    sym = table["symbol"].to_numpy(zero_copy_only=False)
    if len(d) > 1 and np.any((d[1:] == d[:-1]) & (sym[1:] == sym[:-1])):
        raise ValueError("bars contain the same (date, symbol) more than once")
    return table


def _to_panel(tables: list[pa.Table], dtype: type | np.dtype, symbol_order: list[str] | None) -> Panel:
    """Scatter long (date, symbol) rows into dense (days x symbols) arrays, one file at a time.

    Each file keeps its own symbol dictionary; mapping each dictionary to the global columns with a
    hash lookup is far cheaper than unifying dictionaries across files first."""
    chunks = []  # (dates as int days, dictionary values, codes) per record batch
    for table in tables:
        for batch in table.combine_chunks().to_batches():
            col = batch.column(batch.schema.get_field_index("symbol"))
            if not pa.types.is_dictionary(col.type):
                col = pc.dictionary_encode(col)
            chunks.append((batch, col.dictionary, col.indices.to_numpy(zero_copy_only=False)))
    if symbol_order is None:
        # bincount instead of unique: codes are small dense ints, no hashing needed
        present = [d.take(pa.array(np.flatnonzero(np.bincount(c, minlength=len(d))))) for _, d, c in chunks if len(c)]
        names = pc.unique(pa.concat_arrays(present)) if present else pa.array([], pa.string())
        symbols = np.sort(np.asarray(names.to_pylist(), dtype=object))
    else:
        symbols = np.asarray(symbol_order, dtype=object)
    value_set = pa.array(list(symbols), pa.string())
    # date32 is days since the epoch: compare as int32, convert the few distinct dates at the end
    day_parts = [pc.cast(b.column(b.schema.get_field_index("date")), pa.int32()).to_numpy(zero_copy_only=False)
                 for b, _, _ in chunks]
    day_numbers = _sorted_unique(day_parts)
    dates = day_numbers.astype("datetime64[D]")
    shape = (len(dates), len(symbols))
    present_cells = np.zeros(shape[0] * shape[1], dtype=bool)
    # np.empty + one scatter touches each page once; np.full would write every cell twice.
    arrays = {f: np.empty(shape, dtype=dtype) for f in FIELDS}
    flat_views = {f: a.reshape(-1) for f, a in arrays.items()}
    for (batch, dictionary, codes), days in zip(chunks, day_parts, strict=True):
        if not len(codes):
            continue
        col_of_code = pc.index_in(dictionary, value_set=value_set).to_numpy(zero_copy_only=False)
        cols = col_of_code[codes]
        keep = ~np.isnan(cols) if cols.dtype.kind == "f" else None
        rows = _rows_of(day_numbers, days)
        flat = rows.astype(np.int64) * len(symbols)
        if keep is not None:  # symbols outside symbol_order (dictionary entries filtered away)
            flat, cols = flat[keep], cols[keep]
        flat += cols.astype(np.int64)
        present_cells[flat] = True
        for f in FIELDS:
            values = batch.column(batch.schema.get_field_index(f)).to_numpy(zero_copy_only=False)
            flat_views[f][flat] = values if keep is None else values[keep]
    missing = np.flatnonzero(~present_cells)
    for f in FIELDS:
        flat_views[f][missing] = np.nan
    return Panel(dates, symbols, *(arrays[f] for f in FIELDS))


def _sorted_unique(parts: list[np.ndarray]) -> np.ndarray:
    """Distinct dates of date-sorted parts (each month file is written sorted by date): no full sort."""
    heads = [p[np.r_[True, p[1:] != p[:-1]]] for p in parts if len(p)]
    return np.unique(np.concatenate(heads)) if heads else np.array([], np.int32)


def _rows_of(dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Row index of each day. Days are sorted within a part, so look up only where the day changes."""
    if not len(days):
        return np.empty(0, np.int64)
    change = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    row_at_change = np.searchsorted(dates, days[change])
    return np.repeat(row_at_change, np.diff(np.r_[change, len(days)]))


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
