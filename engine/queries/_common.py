"""Small conversions shared by the query modules."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def _f(value: Any) -> float | None:
    """Decimal/float/None -> float or None (NaN and infinities become None)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _f0(value: Any) -> float:
    out = _f(value)
    return 0.0 if out is None else out


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Float columns (None -> NaN), so tables show blanks and sort numerically."""
    for c in columns:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


# --- health, universe, bars ----------------------------------------------------------------------------
