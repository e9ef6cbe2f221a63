"""Import a user's own daily bars (CSV or Parquet) into the bar store.

Malformed rows are rejected one by one with a message naming the file, the line and the field; every
good row is imported. Whether the bars make sense as a series (high < low, split-like jumps, stale
data) is the data-quality gate's job at scan time, so such rows are stored and then excluded with a
reason rather than silently dropped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data.barstore import BarStore

# Accepted spellings of each column (case-insensitive).
ALIASES = {
    "date": ("date", "day", "timestamp", "time", "datetime"),
    "symbol": ("symbol", "ticker", "name", "sym"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
PRICE_FIELDS = ("open", "high", "low", "close")
MAX_ERRORS_KEPT = 1000


@dataclass
class ImportReport:
    files: int = 0
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    symbols: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def reject(self, message: str) -> None:
        self.rows_rejected += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)


def import_bars(paths: list[Path] | Path, store: BarStore, symbol: str | None = None) -> ImportReport:
    """Import every file in ``paths`` (a file or a folder of .csv/.parquet files)."""
    report = ImportReport()
    for path in _expand(paths):
        report.files += 1
        frame = _read_and_validate(path, report, symbol)
        if frame is not None and len(frame):
            store.write(frame)
            report.rows_imported += len(frame)
            report.symbols.update(frame["symbol"].unique())
    return report


def _expand(paths: list[Path] | Path) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in (".csv", ".parquet")))
        elif item.exists():
            out.append(item)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return out


def _read_and_validate(path: Path, report: ImportReport, symbol: str | None) -> pd.DataFrame | None:
    if path.suffix.lower() == ".parquet":
        raw = pd.read_parquet(path).astype(str)
        first_line = 1  # row numbers for Parquet: 1-based row index
    else:
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            report.reject(f"{path}: cannot be read as CSV: {exc}")
            return None
        first_line = 2  # line 1 is the header
    columns = _map_columns(raw.columns, symbol is not None)
    if isinstance(columns, str):
        report.reject(f"{path}: {columns}")
        return None
    report.rows_read += len(raw)
    frame = pd.DataFrame({name: raw[src].str.strip() for name, src in columns.items()})
    if symbol is not None:
        frame["symbol"] = symbol
    frame["symbol"] = frame["symbol"].str.upper()
    lines = np.arange(first_line, first_line + len(frame))

    bad = np.zeros(len(frame), bool)
    problems: list[tuple[np.ndarray, str]] = []
    dates = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    problems.append((dates.isna().to_numpy(), "date"))
    problems.append(((frame["symbol"] == "") | frame["symbol"].isna(), "symbol"))
    values = {}
    for name in (*PRICE_FIELDS, "volume"):
        numbers = pd.to_numeric(frame[name], errors="coerce")
        values[name] = numbers
        not_number = numbers.isna().to_numpy()
        problems.append((not_number, name))
        limit = (numbers < 0) if name == "volume" else (numbers <= 0)
        problems.append((limit.fillna(False).to_numpy() & ~not_number, name))

    # Report each rejected row once, with its first bad field.
    for mask, name in problems:
        mask = np.asarray(mask) & ~bad
        for i in np.flatnonzero(mask):
            raw_value = frame[name].iloc[i] if name in frame else ""
            why = "must be positive" if name in PRICE_FIELDS else "not a valid value"
            if name == "volume":
                why = "must be a non-negative number"
            if name == "date":
                why = "not a date"
            report.reject(f"{path}:{lines[i]}: field '{name}' = {raw_value!r}: {why}")
        bad |= mask

    clean = pd.DataFrame(
        {
            "date": dates.dt.date,
            "symbol": frame["symbol"],
            **{name: values[name] for name in (*PRICE_FIELDS, "volume")},
        }
    )[~bad]
    dup = clean.duplicated(["date", "symbol"], keep="first").to_numpy()
    for i in np.flatnonzero(dup):
        row = clean.iloc[i]
        report.reject(
            f"{path}:{lines[~bad][i]}: field 'date' = '{row['date']}': duplicate bar for {row['symbol']}"
        )
    return clean[~dup]


def _map_columns(columns: pd.Index, symbol_given: bool) -> dict[str, str] | str:
    lower = {c.strip().lower(): c for c in columns}
    mapping: dict[str, str] = {}
    for name, spellings in ALIASES.items():
        found = next((lower[s] for s in spellings if s in lower), None)
        if found is None:
            if name == "symbol" and symbol_given:
                continue
            return f"missing column '{name}' (have {list(columns)})"
        mapping[name] = found
    return mapping
