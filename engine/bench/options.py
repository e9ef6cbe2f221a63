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

``ratio`` = quantlib_seconds_per_quote * quotes / iv_seconds.

American exercise (the simulated chains are American, quoted from the engine's American model): of the
same distinct quotes, those where early exercise matters (puts; calls on dividend payers) are tiled to
``american_quotes`` (100,000) and

* ``american_iv_seconds``: ``engine.options.american.american_implied_vol`` on all of them (median of
  ``min(runs, 3)``), ``american_greeks_seconds`` for ``american_greeks`` without rho, as chains get them
  (one run);
* against QuantLib on ``american_sample`` of the distinct ones: QuantLib's exact American price
  (``QdFpAmericanEngine``, Andersen-Lake-Offengenden, accurate scheme) inverted with ``ql.Brent`` to 1e-10,
  i.e. the true American IV of each quote (``VanillaOption.impliedVolatility`` would use a coarse
  finite-difference grid, less accurate than what it is compared with);
* ``american_max_abs_iv_error`` over all compared quotes, and the same in the band we trade
  (``american_max_abs_iv_error_traded``, and relative to the vol ``american_max_rel_iv_error_traded``,
  target <= 1%: 21-60 days, |delta| 0.20-0.70), with the median and p99: the
  difference is the Bjerksund-Stensland approximation's own error, largest deep in the money where
  a quote is nearly all intrinsic value and the vol barely moves it.

Generation is not timed.  Nothing in the environment is changed.
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
from engine.options.pricing import (
    american_greeks,
    american_implied_vol,
    american_implied_vol_with_reasons,
    early_exercise_matters,
    greeks,
    implied_vol,
    implied_vol_with_reasons,
)

__all__ = ["bench_options", "sim_quotes"]

TARGETS = {"iv_seconds": 1.0, "ratio": 20.0, "max_abs_iv_error": 1e-6}
# American: the approximation's IV error where we trade (see tests/options/test_american.py)
# (relative: the band includes 150%-vol names, where 0.5% of the vol is 0.0075)
AMERICAN_TARGETS = {"american_max_rel_iv_error_traded": 0.01}
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


def _quantlib_american_iv(price, S, K, dte, r, q, is_call) -> tuple[float, np.ndarray]:
    """True American IV per quote: QuantLib's QdFp American price inverted with its Brent solver."""
    import QuantLib as ql

    today = ql.Date(15, 7, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = ql.SimpleQuote(100.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    engine = ql.QdFpAmericanEngine(process, ql.QdFpAmericanEngine.accurateScheme())
    solver = ql.Brent()
    solver.setMaxEvaluations(200)
    out = np.full(len(price), np.nan)
    t0 = time.perf_counter()
    for i in range(len(price)):
        spot.setValue(float(S[i]))
        rate.setValue(float(r[i]))
        div.setValue(float(q[i]))
        kind = ql.Option.Call if is_call[i] else ql.Option.Put
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(K[i])),
                                  ql.AmericanExercise(today, today + int(dte[i])))
        option.setPricingEngine(engine)
        target = float(price[i])

        def f(sigma: float, option=option, target=target) -> float:
            vol.setValue(sigma)
            return option.NPV() - target

        with contextlib.suppress(RuntimeError):  # no root in [1e-4, 5] (e.g. at intrinsic): left NaN
            out[i] = solver.solve(f, 1e-10, 0.3, 1e-4, 5.0)
    return time.perf_counter() - t0, out


def _bench_american(data: dict[str, Any], n_quotes: int, runs: int, sample: int, seed: int) -> dict[str, Any]:
    distinct = data["distinct"]
    base = np.flatnonzero(early_exercise_matters(data["is_call"][:distinct], data["r"][:distinct],
                                                 data["q"][:distinct]) & (data["dte"][:distinct] > 0))
    if base.size == 0:
        raise RuntimeError("no American quotes (puts or dividend calls) in the simulated chains")
    base = base[:n_quotes]  # more distinct American quotes than asked: the first n_quotes of them
    idx = np.tile(base, -(-n_quotes // base.size))[:n_quotes]
    am = {k: v[idx] for k, v in data.items() if isinstance(v, np.ndarray)}
    args = (am["price"], am["S"], am["K"], am["T"], am["r"], am["q"], am["is_call"])
    american_implied_vol(*(a[:1000] for a in args))  # warm-up
    n_runs = max(1, min(runs, 3))
    iv_seconds, iv_runs = median_time(lambda: american_implied_vol(*args), n_runs)
    iv, why = american_implied_vol_with_reasons(*args)
    # greeks as chains compute them (no rho: two prices fewer), one run (six American prices each)
    greeks_seconds, _ = median_time(lambda: american_greeks(am["S"], am["K"], am["T"], am["r"], am["q"], iv,
                                                            am["is_call"], with_rho=False), 1)
    reasons = dict(zip(*np.unique(why, return_counts=True), strict=True))

    # half the sample from the band we trade (21-60 days, |delta| 0.20-0.70 by BSM delta at our IV, a
    # cheap proxy for choosing), half from all the others, so both figures rest on enough quotes
    rng = np.random.default_rng(seed + 1)
    our_iv = iv[: base.size]  # the tiled set starts with base, in order
    eu_delta = np.asarray(greeks(data["S"][base], data["K"][base], data["T"][base], data["r"][base],
                                 data["q"][base], our_iv, data["is_call"][base]).delta)
    in_band = ((data["dte"][base] >= 21) & (data["dte"][base] <= 60) & (np.abs(eu_delta) >= 0.2)
               & (np.abs(eu_delta) <= 0.7))
    band, rest = base[in_band], base[~in_band]
    n_band = min(band.size, sample // 2)
    n_rest = min(rest.size, sample - n_band)
    pick = np.sort(np.concatenate([rng.choice(band, size=n_band, replace=False),
                                   rng.choice(rest, size=n_rest, replace=False)]))
    sub = {k: v[pick] for k, v in data.items() if isinstance(v, np.ndarray)}
    ours, _ = american_implied_vol_with_reasons(sub["price"], sub["S"], sub["K"], sub["T"], sub["r"], sub["q"],
                                                sub["is_call"])
    ql_seconds, ql_iv = _quantlib_american_iv(sub["price"], sub["S"], sub["K"], sub["dte"], sub["r"], sub["q"],
                                              sub["is_call"])
    both = np.isfinite(ours) & np.isfinite(ql_iv)
    err = np.abs(ours - ql_iv)
    delta = np.asarray(american_greeks(sub["S"], sub["K"], sub["T"], sub["r"], sub["q"], np.where(both, ql_iv, 0.3),
                                       sub["is_call"], with_rho=False).delta)
    traded = both & (sub["dte"] >= 21) & (sub["dte"] <= 60) & (np.abs(delta) >= 0.2) & (np.abs(delta) <= 0.7)

    def stat(mask: np.ndarray, fn) -> float:
        return float(fn(err[mask])) if mask.any() else math.nan

    ql_per_quote = ql_seconds / len(pick)
    out: dict[str, Any] = {
        "american_quotes": int(n_quotes),
        "american_distinct_quotes": int(base.size),
        "american_puts_fraction": float(np.mean(~am["is_call"])),
        "american_runs": n_runs,
        "american_iv_seconds": iv_seconds,
        "american_iv_seconds_runs": iv_runs,
        "american_greeks_seconds": greeks_seconds,
        "american_iv_ok_fraction": float(np.mean(why == "ok")),
        "american_iv_reasons": {str(k): int(v) for k, v in reasons.items()},
        "american_quantlib_method": "QdFpAmericanEngine (accurate scheme) inverted with ql.Brent to 1e-10",
        "american_quantlib_sample": len(pick),
        "american_quantlib_seconds_per_quote": ql_per_quote,
        "american_ratio": ql_per_quote * n_quotes / iv_seconds,
        "american_compared": int(both.sum()),
        "american_max_abs_iv_error": stat(both, np.max),
        "american_median_abs_iv_error": stat(both, np.median),
        "american_p99_abs_iv_error": stat(both, lambda e: np.quantile(e, 0.99)),
        "american_traded_compared": int(traded.sum()),
        "american_max_abs_iv_error_traded": stat(traded, np.max),
        "american_max_rel_iv_error_traded": (float(np.max(err[traded] / ql_iv[traded])) if traded.any()
                                             else math.nan),
        "american_ours_nan_quantlib_value": int(np.sum(~np.isfinite(ours) & np.isfinite(ql_iv))),
        "american_ours_value_quantlib_nan": int(np.sum(np.isfinite(ours) & ~np.isfinite(ql_iv))),
    }
    return out


def bench_options(quotes: int = 1_000_000, runs: int = 5, sample: int = 20_000, *, seed: int = 7,
                  american_quotes: int = 100_000, american_sample: int = 1_000,
                  verbose: bool = True) -> dict[str, Any]:
    """Time IV and greeks on ``quotes`` simulated quotes, compare with QuantLib on ``sample`` of them;
    then American IV on ``american_quotes`` (puts and dividend calls), against QuantLib on
    ``american_sample`` (0 skips the American part)."""
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
        "targets": TARGETS | (AMERICAN_TARGETS if american_quotes > 0 else {}),
    }
    result["passed"] = {
        "iv_seconds": iv_seconds <= TARGETS["iv_seconds"],
        "ratio": result["ratio"] >= TARGETS["ratio"],
        "max_abs_iv_error": bool(max_err <= TARGETS["max_abs_iv_error"]),
    }
    if american_quotes > 0:
        am = _bench_american(data, american_quotes, runs, american_sample, seed)
        result.update(am)
        result["passed"]["american_max_rel_iv_error_traded"] = bool(
            am["american_max_rel_iv_error_traded"] <= AMERICAN_TARGETS["american_max_rel_iv_error_traded"])
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
        if american_quotes > 0:
            a = result
            rows += [
                ("American quotes (distinct)", f"{a['american_quotes']:,} ({a['american_distinct_quotes']:,}; "
                                               f"{a['american_puts_fraction']:.0%} puts, the rest dividend calls)"),
                ("american_implied_vol", f"{a['american_iv_seconds']:.3f} s  (median of {a['american_runs']})"),
                ("american_greeks (no rho)", f"{a['american_greeks_seconds']:.3f} s"),
                ("American IV found", f"{a['american_iv_ok_fraction']:.2%}  {a['american_iv_reasons']}"),
                ("QuantLib QdFp + Brent", f"{a['american_quantlib_seconds_per_quote'] * 1e6:.0f} us/quote on "
                                          f"{a['american_quantlib_sample']:,} quotes; "
                                          f"ratio {a['american_ratio']:.0f}x"),
                ("max |ours - QuantLib| (Am.)", f"{a['american_max_abs_iv_error']:.2e} on {a['american_compared']:,} "
                                                f"(median {a['american_median_abs_iv_error']:.1e}, "
                                                f"p99 {a['american_p99_abs_iv_error']:.1e})"),
                ("  where we trade", f"{a['american_max_abs_iv_error_traded']:.2e} on "
                                     f"{a['american_traded_compared']:,} (21-60 days, |delta| 0.2-0.7), relative "
                                     f"{a['american_max_rel_iv_error_traded']:.2%} (target <= "
                                     f"{AMERICAN_TARGETS['american_max_rel_iv_error_traded']:.0%})"),
                ("NaN disagreements (Am.)", f"ours NaN/QL value {a['american_ours_nan_quantlib_value']}, "
                                            f"ours value/QL NaN {a['american_ours_value_quantlib_nan']}"),
            ]
        print(table(rows, "Options: implied volatility and greeks (European and American)"))
    return result
