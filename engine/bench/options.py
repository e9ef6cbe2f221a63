"""Benchmark: vectorised implied volatility and greeks against QuantLib's per-option solver.

``bench_options()`` builds ``quotes`` option quotes from the simulated market (chains of many
symbols on several days; when that gives fewer distinct quotes than asked, the distinct ones are
tiled, which costs the solver exactly as much as new ones), then times on all of them:

* ``iv_seconds``: ``engine.options.pricing.implied_vol`` of every mid (median of ``runs``);
* ``greeks_seconds``: ``engine.options.pricing.greeks`` at those IVs (median of ``runs``);

and, on ``sample`` of the same distinct quotes:

* ``quantlib_seconds_per_quote``: ``ql.VanillaOption.impliedVolatility`` with a Black-Scholes-Merton
  process on flat curves (Actual365Fixed, maturity = evaluation date + dte, so T = dte / 365
  exactly), including building the option, i.e. how QuantLib is used per contract;
* ``quantlib_black_formula_seconds_per_quote``: ``ql.blackFormulaImpliedStdDev`` on the forward,
  QuantLib's lightest path, reported for reference (``ratio_black_formula``);
* ``max_abs_iv_error``: max |ours - QuantLib| where both return a volatility.

``ratio`` = quantlib_seconds_per_quote * quotes / iv_seconds.  Generation is not timed.  Nothing
in the environment is changed.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from engine.bench.common import median_time, table
from engine.options.pricing import greeks, implied_vol, implied_vol_with_reasons

__all__ = ["bench_options", "sim_quotes"]

TARGETS = {"iv_seconds": 1.0, "ratio": 20.0, "max_abs_iv_error": 1e-6}
_DAYS = (
    datetime(2025, 7, 15, 20, 0, tzinfo=timezone.utc),
    datetime(2025, 9, 10, 20, 0, tzinfo=timezone.utc),
    datetime(2025, 11, 12, 20, 0, tzinfo=timezone.utc),
    datetime(2026, 1, 14, 20, 0, tzinfo=timezone.utc),
    datetime(2026, 3, 11, 20, 0, tzinfo=timezone.utc),
)


def sim_quotes(quotes: int, *, seed: int = 7, n_symbols: int = 400, max_distinct: int = 250_000) -> dict[str, Any]:
    """Arrays price (mid), S, K, T, r, q, is_call for ``quotes`` simulated quotes.

    Distinct quotes come from real simulated chains (symbol x day) up to ``max_distinct``; the set is
    then tiled to ``quotes``.  Returns the arrays and ``distinct`` (how many were distinct).
    """
    from engine.data.sim import RISK_FREE_RATE, SimMarket

    market = SimMarket(seed, n_symbols)
    want = min(quotes, max_distinct)
    frames, total = [], 0
    for at in _DAYS:
        for sym in market.symbols:
            ch = market.option_chain(str(sym), at)
            if ch.empty:
                continue
            ch = ch[["mid", "underlying_price", "strike", "dte", "right"]].copy()
            ch["q"] = market.dividend_yield(str(sym), at.date())
            frames.append(ch)
            total += len(ch)
            if total >= want:
                break
        if total >= want:
            break
    if not frames:
        raise RuntimeError("the simulated market produced no option chains")
    df = pd.concat(frames, ignore_index=True).iloc[:want]
    distinct = len(df)
    reps = -(-quotes // distinct)
    idx = np.tile(np.arange(distinct), reps)[:quotes]
    col = lambda name: df[name].to_numpy(dtype=np.float64)[idx]  # noqa: E731
    return {
        "price": col("mid"), "S": col("underlying_price"), "K": col("strike"), "T": col("dte") / 365.0,
        "r": np.full(quotes, RISK_FREE_RATE), "q": col("q"),
        "is_call": (df["right"].to_numpy() == "C")[idx], "dte": df["dte"].to_numpy(dtype=np.int64)[idx],
        "distinct": distinct,
    }


def _quantlib_vanilla_iv(price, S, K, dte, r, q, is_call) -> tuple[float, np.ndarray]:
    import QuantLib as ql

    today = ql.Date(15, 7, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    spot, rate, div = ql.SimpleQuote(100.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.2, dc)),
    )
    out = np.full(len(price), np.nan)
    t0 = time.perf_counter()
    for i in range(len(price)):
        spot.setValue(float(S[i]))
        rate.setValue(float(r[i]))
        div.setValue(float(q[i]))
        kind = ql.Option.Call if is_call[i] else ql.Option.Put
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(K[i])),
                                  ql.EuropeanExercise(today + int(dte[i])))
        with contextlib.suppress(RuntimeError):  # QuantLib failed: left NaN and counted
            out[i] = option.impliedVolatility(float(price[i]), process, 1e-10, 1000, 1e-4, 10.0)
    return time.perf_counter() - t0, out


def _quantlib_black_iv(price, S, K, T, r, q, is_call) -> tuple[float, np.ndarray]:
    import QuantLib as ql

    fwd = S * np.exp((r - q) * T)
    disc = np.exp(-r * T)
    out = np.full(len(price), np.nan)
    t0 = time.perf_counter()
    for i in range(len(price)):
        kind = ql.Option.Call if is_call[i] else ql.Option.Put
        try:
            sd = ql.blackFormulaImpliedStdDev(kind, float(K[i]), float(fwd[i]), float(price[i]), float(disc[i]),
                                              0.0, 0.3, 1e-12, 1000)
            out[i] = sd / math.sqrt(T[i])
        except RuntimeError:
            pass
    return time.perf_counter() - t0, out


def bench_options(quotes: int = 1_000_000, runs: int = 5, sample: int = 20_000, *, seed: int = 7,
                  verbose: bool = True) -> dict[str, Any]:
    """Time IV and greeks on ``quotes`` simulated quotes, compare with QuantLib on ``sample`` of them."""
    t0 = time.perf_counter()
    data = sim_quotes(quotes, seed=seed)
    build_seconds = time.perf_counter() - t0
    args = (data["price"], data["S"], data["K"], data["T"], data["r"], data["q"], data["is_call"])

    implied_vol(*args)  # warm-up (first-touch page faults), not timed
    iv_seconds, iv_runs = median_time(lambda: implied_vol(*args), runs)
    iv, why = implied_vol_with_reasons(*args)
    greeks_seconds, _ = median_time(lambda: greeks(data["S"], data["K"], data["T"], data["r"], data["q"], iv,
                                                   data["is_call"]), runs)
    reasons = dict(zip(*np.unique(why, return_counts=True), strict=True))

    # QuantLib on a sample of the distinct quotes that have time left (T > 0)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero((np.arange(len(iv)) < data["distinct"]) & (data["dte"] > 0))
    pick = np.sort(rng.choice(pool, size=min(sample, pool.size), replace=False))
    sub = {k: v[pick] for k, v in data.items() if isinstance(v, np.ndarray)}
    ql_seconds, ql_iv = _quantlib_vanilla_iv(sub["price"], sub["S"], sub["K"], sub["dte"], sub["r"], sub["q"],
                                             sub["is_call"])
    black_seconds, black_iv = _quantlib_black_iv(sub["price"], sub["S"], sub["K"], sub["T"], sub["r"], sub["q"],
                                                 sub["is_call"])
    ours = iv[pick]
    both = np.isfinite(ours) & np.isfinite(ql_iv)
    max_err = float(np.max(np.abs(ours[both] - ql_iv[both]))) if both.any() else math.nan
    both_black = np.isfinite(ours) & np.isfinite(black_iv)
    max_err_black = float(np.max(np.abs(ours[both_black] - black_iv[both_black]))) if both_black.any() else math.nan
    ql_per_quote = ql_seconds / len(pick)
    black_per_quote = black_seconds / len(pick)

    result: dict[str, Any] = {
        "quotes": int(quotes),
        "distinct_quotes": int(data["distinct"]),
        "runs": int(runs),
        "build_seconds": round(build_seconds, 3),
        "iv_seconds": iv_seconds,
        "iv_seconds_runs": iv_runs,
        "greeks_seconds": greeks_seconds,
        "iv_ok_fraction": float(np.mean(why == "ok")),
        "iv_reasons": {str(k): int(v) for k, v in reasons.items()},
        "quantlib_method": "VanillaOption.impliedVolatility (BSM process, flat curves, Actual365Fixed)",
        "quantlib_sample": len(pick),
        "quantlib_seconds_per_quote": ql_per_quote,
        "ratio": ql_per_quote * quotes / iv_seconds,
        "max_abs_iv_error": max_err,
        "compared": int(both.sum()),
        "ours_nan_quantlib_value": int(np.sum(~np.isfinite(ours) & np.isfinite(ql_iv))),
        "ours_value_quantlib_nan": int(np.sum(np.isfinite(ours) & ~np.isfinite(ql_iv))),
        "quantlib_black_formula_seconds_per_quote": black_per_quote,
        "ratio_black_formula": black_per_quote * quotes / iv_seconds,
        "max_abs_iv_error_black_formula": max_err_black,
        "targets": TARGETS,
    }
    result["passed"] = {
        "iv_seconds": iv_seconds <= TARGETS["iv_seconds"],
        "ratio": result["ratio"] >= TARGETS["ratio"],
        "max_abs_iv_error": bool(max_err <= TARGETS["max_abs_iv_error"]),
    }
    if verbose:
        rows = [
            ("quotes (distinct)", f"{quotes:,} ({data['distinct']:,}, built in {build_seconds:.1f} s)"),
            ("implied_vol", f"{iv_seconds:.3f} s  (median of {runs}; target <= {TARGETS['iv_seconds']:g} s)"),
            ("greeks", f"{greeks_seconds:.3f} s"),
            ("IV found", f"{result['iv_ok_fraction']:.2%}  {result['iv_reasons']}"),
            ("QuantLib VanillaOption", f"{ql_per_quote * 1e6:.2f} us/quote on {len(pick):,} quotes"),
            ("ratio", f"{result['ratio']:.1f}x  (target >= {TARGETS['ratio']:g})"),
            ("max |ours - QuantLib|", f"{max_err:.2e} on {both.sum():,} quotes (target <= 1e-6)"),
            ("QuantLib blackFormula", f"{black_per_quote * 1e6:.2f} us/quote, "
                                      f"ratio {result['ratio_black_formula']:.1f}x, max diff {max_err_black:.2e}"),
            ("NaN disagreements", f"ours NaN/QL value {result['ours_nan_quantlib_value']}, "
                                  f"ours value/QL NaN {result['ours_value_quantlib_nan']}"),
        ]
        print(table(rows, "Options: implied volatility and greeks"))
    return result
