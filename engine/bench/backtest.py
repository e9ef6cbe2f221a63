"""``python -m engine bench backtest``: stock-mode ``ref_sma_atr`` on the simulated market vs other engines.

In one process, on the same generated bars (generation is not timed):

* ``seconds``: our vectorised stock mode on all symbols (median of 3 warm runs; indicators + day loop
  + trade list), split into ``indicator_seconds`` (exact SMA sums, ATR) and the rest (day loop);
* ``backtrader_seconds_per_symbol``: backtrader (one Cerebro per symbol, the same rules) on the
  first ``backtrader_symbols`` symbols; ``ratio`` = backtrader scaled to all symbols / ``seconds``;
  ``backtrader_trades_equal`` checks the two trade lists are identical on those symbols;
* ``vectorbt_seconds``: vectorbt's ``Portfolio.from_signals`` with the same rules on all symbols,
  warm (its numba compile is timed separately as ``vectorbt_compile_seconds``);
  ``vectorbt_ratio`` = vectorbt_seconds / seconds; ``vectorbt_same_exit_price_share`` is the share
  of trades with the same entry, exit date and exit price (vectorbt lets a live stop fire on a
  trend-exit day instead of selling at the open, so a few exit prices differ);
* ``bars_per_second`` = symbol-days with a bar / ``seconds``; ``peak_mb`` = process peak RSS.

Universes larger than ``block`` symbols are streamed: generated and run one symbol block at a time
(symbols are independent under these rules), so memory stays bounded; then ``seconds`` is the
backtest time summed over blocks, ``generate_seconds`` the data generation, ``wall_seconds`` both.

``--mode options`` times the ATR Matrix options backtest (``options_seconds``) on the same market.
"""

from __future__ import annotations

import gc
import sys
import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from engine.bench.common import median_time, peak_rss_mb, table
from engine.data import calendar

__all__ = ["bench_backtest"]

_END = date(2025, 12, 31)
_WARMUP = 260


def _sessions(years: float) -> tuple[date, date, int]:
    n = round(years * 252)
    days = calendar.sessions_back(_END, n + _WARMUP)
    return days[0].astype(object), days[-1].astype(object), _WARMUP


def bench_backtest(symbols: int = 500, years: float = 5, mode: str = "stock", backtrader_symbols: int = 50,
                   block: int = 4096, reference: bool = True, seed: int = 7, quiet: bool = False) -> dict[str, Any]:
    if symbols < 1 or years <= 0 or block < 1:
        raise ValueError("symbols, years and block must be > 0")
    if mode == "options":
        return _bench_options(symbols, years, seed, quiet)
    if symbols > block:
        return _bench_streamed(symbols, years, block, seed, backtrader_symbols, reference, quiet)
    from engine.backtest.stock import RefSmaAtrParams, _signals, run_ref_sma_atr
    from engine.data.sim import SimMarket

    start, end, first_day = _sessions(years)
    t0 = time.perf_counter()
    panel = SimMarket(seed=seed, n_symbols=symbols).daily_bars(start, end, dtype=np.float64)
    generate_seconds = time.perf_counter() - t0
    run_ref_sma_atr(panel, first_day=first_day)  # warm-up
    seconds, _ = median_time(lambda: run_ref_sma_atr(panel, first_day=first_day), 3)
    indicator_seconds, _ = median_time(lambda: _signals(panel, RefSmaAtrParams()), 3)
    ours = run_ref_sma_atr(panel, first_day=first_day)
    bars = ours.bars
    result: dict[str, Any] = {
        "mode": "stock", "strategy": "ref_sma_atr", "symbols": symbols, "years": years, "sessions": panel.n_days,
        "warmup_sessions": first_day, "bars": bars, "trades": len(ours.trades),
        "generate_seconds": round(generate_seconds, 3), "seconds": round(seconds, 4),
        "indicator_seconds": round(indicator_seconds, 4), "loop_seconds": round(seconds - indicator_seconds, 4),
        "bars_per_second": round(bars / seconds),
    }
    if reference:
        result |= _backtrader(panel, ours.trades, backtrader_symbols, symbols, seconds, first_day)
        result |= _vectorbt(panel, ours.trades, seconds, first_day)
    result["peak_mb"] = round(peak_rss_mb(), 1)
    result["target_seconds"], result["target_ratio"] = 3.0, 50.0
    if not quiet:
        _print(result)
    return result


def _backtrader(panel: Any, ours: pd.DataFrame, n_bt: int, symbols: int, seconds: float,
                first_day: int) -> dict[str, Any]:
    from engine.bench.refengines import backtrader_trades

    subset = list(panel.symbols[: min(n_bt, panel.n_symbols)])
    t0 = time.perf_counter()
    frames = [backtrader_trades(panel.frame(s), s) for s in subset]
    bt_seconds = time.perf_counter() - t0
    theirs = pd.concat(frames, ignore_index=True)
    # backtrader trades from the first bar on: compare with our run on the same bars without a warm-up cut
    from engine.backtest.stock import run_ref_sma_atr

    mine = run_ref_sma_atr(panel.select(subset)).trades
    key = ["symbol", "entry_date"]
    a = mine.sort_values(key).reset_index(drop=True)
    b = theirs.sort_values(key).reset_index(drop=True)
    equal = len(a) == len(b) and all(
        a[c].astype(str).tolist() == b[c].astype(str).tolist() for c in ("symbol", "entry_date", "exit_date",
                                                                       "quantity", "exit_reason")
    ) and bool(np.allclose(a["exit_price"], b["exit_price"], rtol=1e-12, atol=0))
    per_symbol = bt_seconds / len(subset)
    return {"backtrader_symbols": len(subset), "backtrader_seconds": round(bt_seconds, 3),
            "backtrader_seconds_per_symbol": round(per_symbol, 5),
            "ratio": round(per_symbol * symbols / seconds, 1), "backtrader_trades_equal": equal}


def _vectorbt(panel: Any, ours: pd.DataFrame, seconds: float, first_day: int) -> dict[str, Any]:
    from engine.bench.refengines import vectorbt_run

    t0 = time.perf_counter()
    vectorbt_run(panel.select(panel.symbols[:2]))  # numba compile
    compile_seconds = time.perf_counter() - t0
    vbt_seconds, _ = median_time(lambda: vectorbt_run(panel).trades.records_readable, 3)
    recs = vectorbt_run(panel).trades.records_readable
    start = pd.Timestamp(panel.dates[first_day])
    v = pd.DataFrame({"symbol": recs["Column"].astype(str), "entry_date": pd.to_datetime(recs["Entry Timestamp"]),
                      "exit_date": pd.to_datetime(recs["Exit Timestamp"]), "vx": recs["Avg Exit Price"]})
    v = v[v["entry_date"] > start]
    o = ours.assign(entry_date=pd.to_datetime(ours["entry_date"]), exit_date=pd.to_datetime(ours["exit_date"]))
    m = o.merge(v, on=["symbol", "entry_date"], how="outer", indicator=True)
    same = ((m["_merge"] == "both") & (m["exit_date_x"] == m["exit_date_y"])
            & np.isclose(m["exit_price"], m["vx"], rtol=1e-9)).mean()
    return {"vectorbt_compile_seconds": round(compile_seconds, 2), "vectorbt_seconds": round(vbt_seconds, 4),
            "vectorbt_ratio": round(vbt_seconds / seconds, 2), "vectorbt_trades": len(v),
            "vectorbt_same_exit_price_share": round(float(same), 4)}


def _bench_streamed(symbols: int, years: float, block: int, seed: int, n_bt: int, reference: bool,
                    quiet: bool) -> dict[str, Any]:
    from engine.backtest.stock import run_ref_sma_atr
    from engine.data.sim import CHUNK, SimMarket

    block = max(CHUNK, block // CHUNK * CHUNK)  # whole random-stream chunks: contiguous, no re-generation
    start, end, first_day = _sessions(years)
    market = SimMarket(seed=seed, n_symbols=symbols)
    names = market.symbols
    gen = run = 0.0
    equity = exposure = None
    trades = bars = 0
    t_wall = time.perf_counter()
    n_blocks = (symbols + block - 1) // block
    for i in range(n_blocks):
        t0 = time.perf_counter()
        panel = market.daily_bars(start, end, symbols=list(names[i * block : (i + 1) * block]), dtype=np.float64)
        t1 = time.perf_counter()
        r = run_ref_sma_atr(panel, first_day=first_day)
        t2 = time.perf_counter()
        gen += t1 - t0
        run += t2 - t1
        equity = r.equity if equity is None else equity + r.equity
        exposure = r.gross_exposure if exposure is None else exposure + r.gross_exposure
        trades += len(r.trades)
        bars += r.bars
        sessions = panel.n_days
        del panel, r
        gc.collect()
        if not quiet:
            print(f"\rblock {i + 1}/{n_blocks}: generate {gen:.1f}s, backtest {run:.1f}s", end="", file=sys.stderr)
    if not quiet:
        print(file=sys.stderr)
    result: dict[str, Any] = {
        "mode": "stock", "strategy": "ref_sma_atr", "symbols": symbols, "years": years, "sessions": sessions,
        "streamed": True, "block_symbols": block, "blocks": n_blocks, "bars": bars, "trades": trades,
        "generate_seconds": round(gen, 2), "seconds": round(run, 3), "wall_seconds": round(time.perf_counter()
                                                                                              - t_wall, 2),
        "bars_per_second": round(bars / run), "peak_mb": round(peak_rss_mb(), 1),
        "reference": "skipped: backtrader and vectorbt are compared on the 500-symbol run",
    }
    if not quiet:
        _print(result)
    return result


def _bench_options(symbols: int, years: float, seed: int, quiet: bool) -> dict[str, Any]:
    from engine.backtest.runner import BacktestSpec, load_panel, run_backtest

    _start, end, _first_day = _sessions(years)
    first = calendar.sessions_back(end, round(years * 252))[0].astype(object)
    spec = BacktestSpec(strategy="atr_matrix", mode="options", source="sim", start=first, end=end, symbols=symbols,
                        seed=seed)
    t0 = time.perf_counter()
    panel = load_panel(spec)
    generate_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = run_backtest(spec, panel=panel)
    seconds = time.perf_counter() - t0
    fills = res.trades["fill_source"].value_counts().to_dict() if len(res.trades) else {}
    result = {"mode": "options", "strategy": "atr_matrix", "symbols": symbols, "years": years,
              "sessions": len(res.dates), "trades": len(res.trades), "fills_by_source": fills,
              "generate_seconds": round(generate_seconds, 2), "options_seconds": round(seconds, 3),
              "seconds": round(seconds, 3), "bars_per_second": round(res.bars / seconds),
              "peak_mb": round(peak_rss_mb(), 1)} | {k: res.extra[k] for k in res.extra if k.endswith("_seconds")}
    if not quiet:
        _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    rows = [(k, str(v)) for k, v in r.items()]
    if "ratio" in r:
        ok = r["seconds"] <= r["target_seconds"] and r["ratio"] >= r["target_ratio"]
        rows.append(("verdict", f"{'PASS' if ok else 'MISS'} (seconds <= {r['target_seconds']:g}, ratio >= "
                                f"{r['target_ratio']:g})"))
    print(table(rows, f"backtest bench: {r['strategy']} {r['mode']} mode"))
    sys.stdout.flush()
