"""`python -m engine bench store`: generate N symbols x D days on the simulated market, write them to
the Parquet bar store, and load them back as a dense panel; report seconds, disk size and memory."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from engine.bench.common import peak_rss_mb, table, timed
from engine.data.barstore import BarStore
from engine.data.sim import generate_panel


def bench_store(symbols: int = 32_345, days: int = 300, seed: int = 7, runs: int = 3) -> dict[str, float | int]:
    root = Path(tempfile.mkdtemp(prefix="qm-bench-store-"))
    try:
        gen_s, panel = timed(lambda: generate_panel(seed, symbols, days, dtype=np.float64))
        rss_after_generate = peak_rss_mb()
        store = BarStore(root, "bench")
        write_s, _ = timed(lambda: store.write_panel(panel))
        panel = None  # free the generated arrays before loading them back
        loads = [timed(lambda: store.load(dtype=np.float32)) for _ in range(runs)]
        load_s = min(t for t, _ in loads)
        loaded = loads[-1][1]
        result = {
            "symbols": symbols,
            "days": days,
            "generate_seconds": round(gen_s, 3),
            "write_seconds": round(write_s, 3),
            "load_seconds": round(load_s, 3),
            "store_mb": round(store.size_bytes() / 1e6, 1),
            "panel_mb": round(loaded.nbytes / 1e6, 1),
            "peak_rss_after_generate_mb": round(rss_after_generate, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "bars": int(np.count_nonzero(~np.isnan(loaded.close))),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table([(k, str(v)) for k, v in result.items()], f"bar store: {symbols:,} symbols x {days} days"))
    return result
