"""Benchmark: the full-universe ATR Matrix scan against a per-symbol TA-Lib loop.

``bench_scan()`` builds a simulated (days x symbols) float32 panel (generation not timed), then
times, on the same arrays:

* ``seconds``: the scan as it runs in production, ``engine.strategies.atr_matrix.scan``: data
  gate + indicators + signals + the ranked DataFrame (median of ``runs``);
* ``full_series_seconds``: the vectorised indicator functions producing every day's value
  (ATR14, SMA20/50/100/200, EMA10, MAX/MIN 20 as full (days x symbols) arrays), for a like-for-
  like comparison with TA-Lib, which can only compute full series;
* ``talib_seconds``: a Python loop over symbols calling TA-Lib for the same indicators, including
  the conversion of each column slice to contiguous float64 that TA-Lib requires (median of
  ``talib_runs``).

``peak_mb`` is the process's peak resident set size from ``resource.getrusage`` (ru_maxrss, so
it includes panel generation and the TA-Lib loop); ``scan_alloc_peak_mb`` is the peak of memory
allocated during one extra untimed scan, measured with ``tracemalloc`` (numpy reports its
buffers to it).
"""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import numpy as np

from engine import indicators as ind
from engine.bench.common import median_time, peak_rss_mb, table
from engine.data.panel import Panel

__all__ = ["bench_scan", "random_walk_panel"]


def random_walk_panel(seed: int, n_symbols: int, n_days: int, dtype: Any = np.float32) -> Panel:
    """A geometric random-walk panel with plausible OHLCV, some late listings, some trends.

    Stand-in used only when ``engine.data.sim.generate_panel`` is not available.
    """
    rng = np.random.default_rng(seed)
    start_price = np.exp(rng.uniform(np.log(5.0), np.log(500.0), n_symbols))
    vol = rng.uniform(0.01, 0.05, n_symbols)
    drift = rng.normal(0.0005, 0.002, n_symbols)
    gaps = rng.normal(0.0, 0.3, (n_days, n_symbols)) * vol
    moves = rng.normal(0.0, 1.0, (n_days, n_symbols)) * vol + drift
    log_open = np.log(start_price) + np.cumsum(gaps + moves, axis=0) - moves
    open_ = np.exp(log_open)
    close = open_ * np.exp(moves)
    wick = np.abs(rng.normal(0.0, 0.5, (2, n_days, n_symbols))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.exp(rng.normal(np.log(2e6), 1.0, n_symbols)) * np.exp(rng.normal(0.0, 0.3, (n_days, n_symbols)))
    late = rng.random(n_symbols) < 0.05  # recent listings: bars only from a random day on
    first = np.where(late, rng.integers(1, n_days, n_symbols), 0)
    missing = np.arange(n_days)[:, None] < first[None, :]
    arrays = []
    for a in (open_, high, low, close, np.round(volume)):
        a = a.astype(dtype)
        a[missing] = np.nan
        arrays.append(np.ascontiguousarray(a))
    dates = np.busday_offset(np.datetime64("2020-01-02"), np.arange(n_days), roll="forward")
    symbols = np.array([f"S{i:05d}" for i in range(n_symbols)], dtype=object)
    return Panel(dates.astype("datetime64[D]"), symbols, *arrays)


def _make_panel(seed: int, symbols: int, days: int) -> tuple[Panel, str]:
    try:
        from engine.data.sim import generate_panel  # written by the simulated-market work
    except ImportError:
        return random_walk_panel(seed, symbols, days), "engine.bench.scan.random_walk_panel"
    return generate_panel(seed, symbols, days, dtype=np.float32), "engine.data.sim.generate_panel"


def _full_series(panel: Panel) -> None:
    h, lo, c = panel.high, panel.low, panel.close
    ind.atr(h, lo, c, 14)
    for period in (20, 50, 100, 200):
        ind.sma(c, period)
    ind.ema(c, 10)
    ind.rolling_max(h, 20)
    ind.rolling_min(lo, 20)


def _talib_loop(panel: Panel) -> None:
    import talib

    h, lo, c = panel.high, panel.low, panel.close
    for j in range(panel.n_symbols):
        hj = h[:, j].astype(np.float64)
        lj = lo[:, j].astype(np.float64)
        cj = c[:, j].astype(np.float64)
        talib.ATR(hj, lj, cj, 14)
        for period in (20, 50, 100, 200):
            talib.SMA(cj, period)
        talib.EMA(cj, 10)
        talib.MAX(hj, 20)
        talib.MIN(lj, 20)


def bench_scan(
    symbols: int = 32345, days: int = 300, runs: int = 5, talib_runs: int = 3, seed: int = 7, quiet: bool = False
) -> dict[str, Any]:
    """Time the scan, the full-series indicators and a per-symbol TA-Lib loop; print a table.

    Returns symbols, days, seconds (scan median), talib_seconds, ratio (talib/scan),
    full_series_seconds, full_series_ratio, peak_mb (+ how it was measured) and more.
    """
    from engine.strategies.atr_matrix import scan

    if symbols < 1 or days < 1 or runs < 1 or talib_runs < 1:
        raise ValueError("symbols, days, runs and talib_runs must be >= 1")
    panel, generator = _make_panel(seed, symbols, days)

    scan(panel)  # warm-up: imports, first-touch page faults
    seconds, _ = median_time(lambda: scan(panel), runs)
    result_frame = scan(panel)
    full_series_seconds, _ = median_time(lambda: _full_series(panel), max(1, min(runs, 3)))
    talib_seconds, _ = median_time(lambda: _talib_loop(panel), talib_runs)

    tracemalloc.start()
    scan(panel)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    result: dict[str, Any] = {
        "symbols": symbols,
        "days": days,
        "dtype": str(panel.dtype),
        "generator": generator,
        "runs": runs,
        "seconds": round(seconds, 4),
        "talib_runs": talib_runs,
        "talib_seconds": round(talib_seconds, 4),
        "ratio": round(talib_seconds / seconds, 2),
        "full_series_seconds": round(full_series_seconds, 4),
        "full_series_ratio": round(talib_seconds / full_series_seconds, 2),
        "peak_mb": round(peak_rss_mb(), 1),
        "peak_mb_source": "resource.getrusage(RUSAGE_SELF).ru_maxrss: process peak RSS, incl. data generation",
        "scan_alloc_peak_mb": round(traced_peak / 2**20, 1),
        "panel_mb": round(panel.nbytes / 2**20, 1),
        "signals": int(result_frame["signal"].sum()),
        "excluded": int(result_frame["excluded_reason"].notna().sum()),
        "target_seconds": 0.3,
        "target_ratio": 5.0,
        "full_series_target_ratio": 5.0,
    }
    result["full_series_verdict"] = "PASS" if result["full_series_ratio"] >= 5.0 else "MISS"
    if not quiet:
        _print_table(result)
    return result


def _print_table(r: dict[str, Any]) -> None:
    rows = [
        ("panel", f"{r['symbols']:,} symbols x {r['days']} days {r['dtype']} ({r['panel_mb']} MB)"),
        ("generator", r["generator"]),
        ("scan (gate+indicators+signals)", f"{r['seconds'] * 1000:8.1f} ms  median of {r['runs']}"),
        ("full-series indicators", f"{r['full_series_seconds'] * 1000:8.1f} ms"),
        ("TA-Lib per-symbol loop", f"{r['talib_seconds'] * 1000:8.1f} ms  median of {r['talib_runs']}"),
        ("speed-up vs TA-Lib (scan)", f"{r['ratio']:8.1f} x   (target >= {r['target_ratio']:g})"),
        ("speed-up vs TA-Lib (full series)", f"{r['full_series_ratio']:8.1f} x"),
        ("peak RSS", f"{r['peak_mb']:8.1f} MB  (getrusage ru_maxrss)"),
        ("scan allocation peak", f"{r['scan_alloc_peak_mb']:8.1f} MB  (tracemalloc)"),
        ("signals / excluded", f"{r['signals']:,} / {r['excluded']:,}"),
    ]
    ok = r["seconds"] <= r["target_seconds"] and r["ratio"] >= r["target_ratio"]
    rows.append(("verdict", f"{'PASS' if ok else 'MISS'} (scan <= {r['target_seconds']} s, ratio >= 5)"))
    rows.append(("verdict (full series)", f"{r['full_series_verdict']} (full-series indicators >= "
                                          f"{r['full_series_target_ratio']:g}x the TA-Lib loop)"))
    print(table(rows, "ATR Matrix universe scan vs a per-symbol TA-Lib loop"))
    sys.stdout.flush()
