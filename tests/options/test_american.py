"""American pricing (Bjerksund-Stensland 2002) against QuantLib's American engines and an independent
transcription of the formula.

References (QuantLib is a test-only dependency):
- QdFpAmericanEngine (Andersen-Lake-Offengenden fixed point, accurate scheme): the American price to
  ~1e-10, the main yardstick; FdBlackScholesVanillaEngine (finite differences) and BinomialLRVanillaEngine
  (Leisen-Reimer tree) on a subset, as two independent numerical methods.
- tests/options/bs2002_reference.py: the same approximation written from Haug's book, scalar, with
  scipy's bivariate normal: our vectorised formula must reproduce it to rounding.
QuantLib's BjerksundStenslandApproximationEngine is the 1993 (one flat boundary) variant, a different
approximation, so it is not a reference for the 2002 numbers.

Stated tolerances, from what the approximation is (it is the value of an exercise strategy with a
two-piece flat boundary, hence a lower bound of the true price):
- never above the exact American price (+1e-9 against QdFp, +1e-5 against FD/tree discretisation),
  never below the European price or intrinsic;
- below the exact price by at most 0.03 per 100 of strike at 7 days, 0.075 at 30 days, 0.09 at 60 days,
  0.17 at a year (moneyness 0.8-1.2, vol 15-60%, r 0-8%, q 0-5%; the worst cases are in the money at
  60% vol, measured 0.025, 0.070, 0.083, 0.162); mean shortfall below 0.01 up to 60 days (0.015 with
  the year);
- implied vol of exact American prices within 0.002 of the true vol for the contracts we trade (21-60 days,
  |delta| 0.20-0.70) and within 1e-8 of it on our own prices (round trip);
- greeks against QuantLib's finite differences: delta within 0.01 and gamma within 10% in that band.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.options.american import (
    american_greeks,
    american_implied_vol,
    american_implied_vol_with_reasons,
    american_price,
    early_exercise_matters,
)
from engine.options.european import bsm_price, greeks
from engine.options.impliedvol import implied_vol_with_reasons
from tests.options.bs2002_reference import bs2002

ql = pytest.importorskip("QuantLib")

TODAY = ql.Date(15, 7, 2025)
K = 100.0


def _ql_option(S, days, r, q, vol, call):
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    vol_quote = ql.SimpleQuote(vol)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(vol_quote), dc)),
    )
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, K)
    option = ql.VanillaOption(payoff, ql.AmericanExercise(TODAY, TODAY + int(days)))
    return option, process, vol_quote


def _ql_price(row, engine: str) -> float:
    S, days, vol, r, q, call = row
    option, process, _ = _ql_option(S, days, r, q, vol, call)
    if engine == "qdfp":
        option.setPricingEngine(ql.QdFpAmericanEngine(process, ql.QdFpAmericanEngine.accurateScheme()))
    elif engine == "fd":
        option.setPricingEngine(ql.FdBlackScholesVanillaEngine(process, 400, 400))
    else:
        option.setPricingEngine(ql.BinomialLRVanillaEngine(process, 801))
    return option.NPV()


def _grid(spots, days, vols, rates, yields):
    rows = list(itertools.product(spots, days, vols, rates, yields, (True, False)))
    # calls without dividends are not American problems (they take the European path, tested below)
    return [r for r in rows if not (r[5] and r[4] == 0.0)]


def _ours(rows, fn=american_price):
    a = np.array(rows, dtype=float)
    return fn(a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 2], a[:, 5] > 0), a


GRID = _grid((80.0, 95.0, 100.0, 105.0, 120.0), (7, 30, 60, 365), (0.15, 0.3, 0.6), (0.0, 0.04, 0.08),
             (0.0, 0.02, 0.05))
SHORTFALL = {7: 0.03, 30: 0.075, 60: 0.09, 365: 0.17}  # per 100 of strike


@pytest.fixture(scope="module")
def qdfp():
    return np.array([_ql_price(row, "qdfp") for row in GRID])


def test_matches_an_independent_transcription_of_the_formula():
    rows = _grid((80.0, 100.0, 120.0), (7, 60, 365), (0.15, 0.6), (0.0, 0.08), (0.0, 0.05))
    ours, _ = _ours(rows)
    ref = np.array([max(bs2002(bool(c), S, K, d / 365.0, r, q, v), float(bsm_price(S, K, d / 365.0, r, q, v, bool(c))))
                    for S, d, v, r, q, c in rows])
    assert np.max(np.abs(ours - ref)) < 1e-9


def test_a_lower_bound_of_the_exact_american_price_within_stated_tolerances(qdfp):
    ours, a = _ours(GRID)
    european = bsm_price(a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 2], a[:, 5] > 0)
    intrinsic = np.maximum(np.where(a[:, 5] > 0, a[:, 0] - K, K - a[:, 0]), 0.0)
    assert np.all(ours <= qdfp + 1e-9)
    assert np.all(ours >= european - 1e-12) and np.all(ours >= intrinsic - 1e-12)
    shortfall = qdfp - ours
    for days, tol in SHORTFALL.items():
        assert shortfall[a[:, 1] == days].max() <= tol, days
    assert shortfall[a[:, 1] <= 60].mean() < 0.01 and shortfall.mean() < 0.015
    # early exercise is worth something where it should be: ITM puts with r > 0 clearly above European
    deep_put = (a[:, 5] == 0) & (a[:, 0] == 80.0) & (a[:, 3] == 0.08) & (a[:, 1] == 365)
    assert np.all(ours[deep_put] - european[deep_put] > 0.5)


def test_against_finite_differences_and_a_binomial_tree():
    rows = _grid((90.0, 100.0, 110.0), (30, 120), (0.25,), (0.05,), (0.0, 0.03))
    ours, _ = _ours(rows)
    for engine in ("fd", "binomial"):
        ref = np.array([_ql_price(row, engine) for row in rows])
        assert np.all(ours <= ref + 1e-5), engine
        assert np.max(ref - ours) <= SHORTFALL[60], engine


def test_calls_without_dividends_take_the_exact_european_path():
    S = np.array([80.0, 100.0, 120.0])
    args = (S, K, 0.25, 0.05, 0.0, 0.3, True)
    assert not early_exercise_matters(True, 0.05, 0.0)
    assert early_exercise_matters(False, 0.05, 0.0) and early_exercise_matters(True, 0.05, 0.01)
    assert not early_exercise_matters(False, 0.0, 0.02)  # a put at r = 0 is never exercised early
    np.testing.assert_array_equal(american_price(*args), bsm_price(*args))
    for ours, theirs in zip(american_greeks(*args), greeks(*args), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    price = bsm_price(*args)
    eu_vol, eu_why = implied_vol_with_reasons(price, S, K, 0.25, 0.05, 0.0, True)
    am_vol, am_why = american_implied_vol_with_reasons(price, S, K, 0.25, 0.05, 0.0, True)
    np.testing.assert_array_equal(am_vol, eu_vol)
    assert list(am_why) == list(eu_why)


def test_implied_vol_round_trip_on_our_prices():
    rows = _grid((80.0, 95.0, 100.0, 105.0, 120.0), (7, 30, 60, 180), (0.1, 0.25, 0.5, 0.9), (0.0, 0.04),
                 (0.0, 0.01, 0.04))
    prices, a = _ours(rows)
    vol, why = american_implied_vol_with_reasons(prices, a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 5] > 0)
    ok = why == "ok"
    assert ok.mean() > 0.85
    assert np.max(np.abs(vol[ok] - a[ok, 2])) < 1e-8
    # what is not 'ok' is a price that says (almost) nothing about sigma: at its exercise value deep in
    # the money, or worth ~0 far out of it, where a 1% change of vol moves it by less than 1e-3 of a cent
    assert set(why[~ok]) <= {"no_information"}
    bumped, _ = _ours([(S, d, v * 1.01, r, q, c) for S, d, v, r, q, c in np.array(rows, dtype=object)[~ok]])
    assert np.all(np.abs(bumped - prices[~ok]) < 1e-5)


def test_implied_vol_of_exact_american_prices_in_the_traded_band():
    rows = _grid((90.0, 95.0, 100.0, 105.0, 110.0), (21, 30, 45, 60), (0.15, 0.3, 0.6), (0.04,), (0.0, 0.02, 0.04))
    exact = np.array([_ql_price(row, "qdfp") for row in rows])
    a = np.array(rows, dtype=float)
    vol = american_implied_vol(exact, a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 5] > 0)
    delta = american_greeks(a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 2], a[:, 5] > 0).delta
    band = (np.abs(delta) >= 0.2) & (np.abs(delta) <= 0.7)
    assert band.sum() > 100
    assert np.max(np.abs(vol[band] - a[band, 2])) < 0.002
    # the approximation under-prices, so its vol of an exact price is at or above the true vol
    assert np.all(vol[band] >= a[band, 2] - 1e-9)


def test_greeks_against_quantlib_finite_differences():
    rows = _grid((90.0, 100.0, 110.0), (30, 60), (0.25, 0.5), (0.05,), (0.0, 0.03))
    a = np.array(rows, dtype=float)
    g = american_greeks(a[:, 0], K, a[:, 1] / 365.0, a[:, 3], a[:, 4], a[:, 2], a[:, 5] > 0)
    ref_delta, ref_gamma, ref_theta = [], [], []
    for S, days, vol, r, q, call in rows:
        option, process, _ = _ql_option(S, days, r, q, vol, call)
        option.setPricingEngine(ql.FdBlackScholesVanillaEngine(process, 400, 400))
        option.NPV()
        ref_delta.append(option.delta())
        ref_gamma.append(option.gamma())
        ref_theta.append(option.theta() / 365.0)  # QuantLib: per year
    band = (np.abs(g.delta) >= 0.2) & (np.abs(g.delta) <= 0.7)
    assert band.sum() >= 10
    assert np.max(np.abs(g.delta - np.array(ref_delta))[band]) < 0.01
    assert np.max((np.abs(g.gamma - np.array(ref_gamma)) / np.array(ref_gamma))[band]) < 0.10
    assert np.max(np.abs(g.theta - np.array(ref_theta))[band]) < 0.005
    # the no-arbitrage signs hold everywhere (differences of rounding are clipped)
    calls = a[:, 5] > 0
    assert np.all((g.delta[calls] >= 0) & (g.delta[calls] <= 1))
    assert np.all((g.delta[~calls] >= -1) & (g.delta[~calls] <= 0))
    assert np.all(g.gamma >= 0) and np.all(g.vega >= 0)


def test_bad_inputs_are_nan_or_reasons_not_exceptions():
    price = american_price([100.0, -1.0, 100.0], K, [0.1, 0.1, -0.1], 0.05, 0.02, 0.3, False)
    assert np.isfinite(price[0]) and np.isnan(price[1]) and np.isnan(price[2])
    assert american_price(90.0, K, 0.0, 0.05, 0.0, 0.3, False) == pytest.approx(10.0)  # expiry: intrinsic
    _, why = american_implied_vol_with_reasons([9.0, 0.0, 150.0, np.nan, 2.0], [90.0, 100.0, 100.0, 100.0, 100.0], K,
                                               [0.1, 0.1, 0.1, 0.1, 0.0], 0.05, 0.02, False)
    assert list(why) == ["below_intrinsic", "nonpositive_price", "above_upper_bound", "nonfinite_input", "T<=0"]


def test_a_converged_solve_is_not_called_uninformative_when_its_last_secant_is_flat():
    # A dividend call 20 in the money: the American price equals the European one (no early exercise
    # pays here), so the solve converges at once; its last secant slope was two equal prices (0/0), and
    # the quote came back 'no_information' although a 1% vol change moves it by 4 cents.
    S, K, T, r, q = 120.0, 100.0, 180 / 365, 0.04, 0.01
    price = american_price(S, K, T, r, q, 0.25, True)
    assert abs(american_price(S, K, T, r, q, 0.2525, True) - price) > 0.03
    grid = np.full(40, price)
    vol, why = american_implied_vol_with_reasons(grid, np.full(40, S), K, T, r, q, np.ones(40, dtype=bool))
    assert set(why) == {"ok"}
    np.testing.assert_allclose(vol, 0.25, rtol=1e-9)
