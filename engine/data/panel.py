"""Dense daily-bar panel: the one shape every analytic in QuantMatrix reads.

Arrays are time-major (days x symbols, C-contiguous) so a recursion over days (ATR, EMA) is a
loop of ``days`` vector operations across the whole universe, never a Python loop over symbols.
A missing bar is NaN in every price field and in volume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Panel:
    dates: np.ndarray  # datetime64[D], shape (days,), strictly ascending
    symbols: np.ndarray  # str (object), shape (n,)
    open: np.ndarray  # (days, n)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.dates), len(self.symbols))
        for name in FIELDS:
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ValueError(f"Panel.{name} has shape {arr.shape}, expected {shape} (days, symbols)")

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def dtype(self) -> np.dtype:
        return self.close.dtype

    def astype(self, dtype: np.dtype | type) -> Panel:
        """A copy with every field cast to ``dtype`` (float32 for fast scans, float64 for exactness)."""
        return Panel(
            self.dates,
            self.symbols,
            *(np.ascontiguousarray(getattr(self, f), dtype=dtype) for f in FIELDS),
        )

    def select(self, symbols: Iterable[str]) -> Panel:
        """The panel restricted to ``symbols`` (in the order given); unknown symbols raise KeyError."""
        index = {s: i for i, s in enumerate(self.symbols)}
        wanted = list(symbols)
        missing = [s for s in wanted if s not in index]
        if missing:
            raise KeyError(f"symbols not in panel: {missing[:10]}")
        cols = np.fromiter((index[s] for s in wanted), dtype=np.int64, count=len(wanted))
        return Panel(
            self.dates,
            np.asarray(wanted, dtype=object),
            *(np.ascontiguousarray(getattr(self, f)[:, cols]) for f in FIELDS),
        )

    def until(self, last_date: np.datetime64 | str) -> Panel:
        """The panel up to and including ``last_date`` (a scan "as of" that day)."""
        stop = int(np.searchsorted(self.dates, np.datetime64(last_date, "D"), side="right"))
        return Panel(self.dates[:stop], self.symbols, *(getattr(self, f)[:stop] for f in FIELDS))

    def frame(self, symbol: str) -> pd.DataFrame:
        """One symbol's bars as a DataFrame indexed by date, rows without a bar dropped."""
        matches = np.flatnonzero(self.symbols == symbol)
        if not len(matches):
            raise KeyError(f"symbol not in panel: {symbol}")
        col = int(matches[0])
        df = pd.DataFrame(
            {f: getattr(self, f)[:, col] for f in FIELDS},
            index=pd.DatetimeIndex(self.dates, name="date"),
        )
        return df.dropna(how="all")

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in FIELDS)
