"""BSM prices, greeks and implied volatility against QuantLib, hand values and edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine.options.pricing import (
    IV_REASONS,
    bsm_price,
    erfc,
    greeks,
    implied_vol,
    implied_vol_reasons,
    implied_vol_with_reasons,
    norm_cdf,
)

ql = pytest.importorskip("QuantLib")


def _ql_black(S, K, T, r, q, sigma, is_call):
    """QuantLib's Black calculator on the forward: price and greeks (theta per year, vega/rho per 1.0)."""
    fwd = S * math.exp((r - q) * T)
    disc = math.exp(-r * T)
    kind = ql.Option.Call if is_call else ql.Option.Put
    calc = ql.BlackCalculator(ql.PlainVanillaPayoff(kind, K), fwd, sigma * math.sqrt(T), disc)
    return (calc.value(), calc.delta(S), calc.gamma(S), calc.theta(S, T), calc.vega(T), calc.rho(T))


def _grid(rng: np.random.Generator, n: int):
    S = rng.uniform(5.0, 800.0, n)
    K = S * np.exp(rng.uniform(-1.0, 1.0, n))
    T = rng.integers(1, 3 * 365, n) / 365.0
    r = rng.uniform(-0.01, 0.08, n)
    q = rng.uniform(0.0, 0.06, n)
    sigma = np.exp(rng.uniform(math.log(0.03), math.log(2.5), n))
    call = rng.random(n) < 0.5
    return S, K, T, r, q, sigma, call


def test_erfc_matches_math_erfc_to_a_few_ulp_relative():
    x = np.concatenate([np.linspace(-6, 26, 20001), np.logspace(-300, 1.4, 300), -np.logspace(-300, 0.7, 300)])
    ref = np.array([math.erfc(v) for v in x])
    ok = ref > 1e-300
    assert np.max(np.abs(erfc(x)[ok] / ref[ok] - 1.0)) < 4e-15
    # deep lower tail of the normal cdf keeps relative accuracy (no 1 - (1 - tiny) cancellation)
    assert norm_cdf(-30.0) == pytest.approx(0.5 * math.erfc(30.0 / math.sqrt(2.0)), rel=1e-14)


def test_price_matches_quantlib_on_a_wide_random_grid():
    rng = np.random.default_rng(11)
    S, K, T, r, q, sigma, call = _grid(rng, 3000)
    ours = bsm_price(S, K, T, r, q, sigma, call)
    ref = np.array([_ql_black(*args)[0] for args in zip(S, K, T, r, q, sigma, call, strict=True)])
    scale = S + K
    assert np.max(np.abs(ours - ref) / scale) < 1e-13


def test_hand_value_atm_call():
    # S=K=100, T=1, r=q=0, sigma=0.2: d1 = 0.1, d2 = -0.1, C = 100 (N(0.1) - N(-0.1)) = 100 * erf(0.1/sqrt2)
    expected = 100.0 * math.erf(0.1 / math.sqrt(2.0))  # 7.965567455405804
    assert bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True) == pytest.approx(expected, rel=1e-14)


def test_greeks_match_quantlib_with_documented_units():
    rng = np.random.default_rng(12)
    S, K, T, r, q, sigma, call = _grid(rng, 2000)
    g = greeks(S, K, T, r, q, sigma, call)
    ref = np.array([_ql_black(*args)[1:] for args in zip(S, K, T, r, q, sigma, call, strict=True)])
    np.testing.assert_allclose(g.delta, ref[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.gamma * S, ref[:, 1] * S, rtol=1e-10, atol=1e-14)
    # theta: QuantLib per year -> ours per calendar day
    np.testing.assert_allclose(g.theta, ref[:, 2] / 365.0, rtol=1e-9, atol=1e-12 * (S + K).max() / 365)
    # vega and rho: QuantLib per 1.00 of sigma / rate -> ours per 0.01
    np.testing.assert_allclose(g.vega, ref[:, 3] / 100.0, rtol=1e-10, atol=1e-13 * (S + K).max())
    np.testing.assert_allclose(g.rho, ref[:, 4] / 100.0, rtol=1e-10, atol=1e-13 * (S + K).max())


def test_greeks_are_derivatives_of_the_price():
    S, K, T, r, q, sig = 120.0, 110.0, 0.4, 0.03, 0.01, 0.35
    for call in (True, False):
        g = greeks(S, K, T, r, q, sig, call)
        h = 1e-4
        p = lambda call=call, **kw: float(bsm_price(**{"S": S, "K": K, "T": T, "r": r, "q": q,  # noqa: E731
                                                        "sigma": sig, "is_call": call, **kw}))
        assert g.delta == pytest.approx((p(S=S + h) - p(S=S - h)) / (2 * h), rel=1e-7)
        assert g.vega == pytest.approx((p(sigma=sig + h) - p(sigma=sig - h)) / (2 * h) / 100, rel=1e-7)
        assert g.rho == pytest.approx((p(r=r + h) - p(r=r - h)) / (2 * h) / 100, rel=1e-7)
        one_day = 1.0 / 365.0
        assert g.theta == pytest.approx(p(T=T - one_day) - p(T=T), rel=2e-3)  # one day of decay


def test_put_call_parity():
    rng = np.random.default_rng(13)
    S, K, T, r, q, sigma, _ = _grid(rng, 5000)
    c = bsm_price(S, K, T, r, q, sigma, True)
    p = bsm_price(S, K, T, r, q, sigma, False)
    parity = S * np.exp(-q * T) - K * np.exp(-r * T)
    assert np.max(np.abs(c - p - parity) / (S + K)) < 1e-14
    gc = greeks(S, K, T, r, q, sigma, True)
    gp = greeks(S, K, T, r, q, sigma, False)
    np.testing.assert_allclose(gc.delta - gp.delta, np.exp(-q * T), atol=1e-14)
    np.testing.assert_allclose(gc.gamma, gp.gamma, rtol=1e-13)
    np.testing.assert_allclose(gc.vega, gp.vega, rtol=1e-13)


def test_broadcasting_and_scalar_results():
    out = bsm_price(100.0, np.array([[90.0], [100.0], [110.0]]), np.array([0.1, 0.5]), 0.02, 0.0, 0.3,
                    np.array([True, False]))
    assert out.shape == (3, 2)
    assert isinstance(bsm_price(100.0, 100.0, 0.5, 0.01, 0.0, 0.2, True), float)
    assert np.isscalar(implied_vol(5.0, 100.0, 100.0, 0.5, 0.01, 0.0, True))
    g = greeks(100.0, [90.0, 110.0], 0.5, 0.01, 0.0, 0.2, [True, False])
    assert g.delta.shape == (2,) and g.delta[0] > 0 > g.delta[1]


# --------------------------------------------------------------------------- implied volatility

# The round-trip grid: spot 100, strikes from 0.25x to 4x spot, 1 day to 5 years, sigma from 0.5% to
# 400%, three rate and two dividend levels, calls and puts: 20 x 9 x 12 x 6 x 2 = 25,920 points.
_KS = np.exp(np.linspace(math.log(0.25), math.log(4.0), 20)) * 100.0
_TS = np.array([1, 2, 7, 14, 30, 60, 91, 182, 365, 730, 1825]) / 365.0
_TS = np.append(_TS, 1.0 / (365.0 * 24.0))  # one hour
_SIGMAS = np.array([0.005, 0.02, 0.08, 0.2, 0.4, 0.8, 1.5, 2.5, 4.0])
_RQ = [(0.0, 0.0), (0.05, 0.0), (0.05, 0.03), (-0.01, 0.02), (0.1, 0.0), (0.02, 0.08)]


def _round_trip_grid():
    rows = [(k, t, s, r, q, c) for k, t, s, (r, q), c in itertools.product(_KS, _TS, _SIGMAS, _RQ, (True, False))]
    K, T, sig, r, q, call = (np.array(v) for v in zip(*rows, strict=True))
    return 100.0, K, T, r, q, sig, call.astype(bool)


def test_implied_vol_round_trip_on_a_wide_grid_or_an_honest_reason():
    S, K, T, r, q, sig, call = _round_trip_grid()
    price = bsm_price(S, K, T, r, q, sig, call)
    iv, why = implied_vol_with_reasons(price, S, K, T, r, q, call)
    ok = why == "ok"
    # every 'ok' point recovers sigma to 1e-8
    assert np.max(np.abs(iv[ok] - sig[ok])) <= 1e-8
    # every other point is NaN with a reason; for prices our own BSM produced the only honest reasons are
    # 'no_information' (time value lost to rounding) and 'nonpositive_price' (the price underflowed to 0)
    assert np.all(np.isnan(iv[~ok]))
    assert set(np.unique(why[~ok])) <= {"no_information", "nonpositive_price"}
    # ... and 'no_information' is true: per QuantLib's vega, moving sigma by 1e-8 moves the price by less
    # than ~200 ulp of the numbers it is computed from (S + K): float64 prices barely tell them apart
    noinfo = np.flatnonzero(why == "no_information")
    for i in noinfo[:: max(1, len(noinfo) // 400)]:
        vega = _ql_black(S, K[i], T[i], r[i], q[i], sig[i], call[i])[4]
        assert vega * 1e-8 < 200 * np.finfo(float).eps * (S + K[i]), (K[i], T[i], sig[i], call[i])
    # the excluded points are far from the money in standard deviations (deep ITM: the time value is
    # below the rounding of the price; deep OTM: the price underflows). Within 3 standard deviations of
    # the forward every point on the grid is recovered.
    sd = sig * np.sqrt(T)
    z = np.abs(np.log(S / K) + (r - q) * T) / sd
    assert np.all(ok[z <= 3.0])
    assert ok[z <= 6.0].mean() > 0.9


def test_implied_vol_of_quantlib_prices_matches_sigma():
    rng = np.random.default_rng(14)
    S, K, T, r, q, sigma, call = _grid(rng, 3000)
    ql_vals = np.array([_ql_black(*args) for args in zip(S, K, T, r, q, sigma, call, strict=True)])
    ref, vega = ql_vals[:, 0], ql_vals[:, 4]
    iv, why = implied_vol_with_reasons(ref, S, K, T, r, q, call)
    ok = why == "ok"
    # QuantLib evaluates F N(d1) - K N(d2) directly, so its prices carry an absolute error of a few ulp of
    # S + K (deep OTM prices of 1e-14 come out as 1e-14 +- 1e-14). Compare where that error cannot move
    # sigma by more than 1e-10; elsewhere our IV inverts QuantLib's price exactly but sigma is not its source.
    informative = vega * 1e-10 > 64 * np.finfo(float).eps * (S + K)
    assert informative.mean() > 0.6  # the grid reaches strikes e^{+-1} x spot at 3% vol: many are moot
    assert np.all(ok[informative])
    assert np.max(np.abs(iv[informative] - sigma[informative])) <= 1e-8
    assert set(np.unique(why[~ok])) <= {"no_information", "nonpositive_price"}
    # where sigma is not recoverable, the IV we do return still reprices QuantLib's number
    back = bsm_price(S[ok], K[ok], T[ok], r[ok], q[ok], iv[ok], call[ok])
    assert np.max(np.abs(back - ref[ok]) / (S[ok] + K[ok])) < 1e-12
    # and QuantLib's own solver agrees with ours on the same prices
    sub = np.flatnonzero(informative)[:300]
    for i in sub:
        fwd = S[i] * math.exp((r[i] - q[i]) * T[i])
        kind = ql.Option.Call if call[i] else ql.Option.Put
        try:
            sd = ql.blackFormulaImpliedStdDev(kind, K[i], fwd, ref[i], math.exp(-r[i] * T[i]), 0.0,
                                              0.3, 1e-14, 1000)
        except RuntimeError:
            continue
        assert abs(sd / math.sqrt(T[i]) - iv[i]) < 1e-6


def test_deep_itm_otm_and_short_expiry_converge():
    # deep OTM call one day out, deep ITM put two days out, near-ATM one hour out
    cases = [
        (100.0, 140.0, 1 / 365, 0.05, 0.0, 1.2, True),
        (100.0, 160.0, 2 / 365, 0.05, 0.0, 1.5, False),
        (100.0, 100.5, 1 / (365 * 24), 0.05, 0.01, 0.25, True),
        (100.0, 20.0, 0.5, 0.03, 0.0, 0.9, False),
        (100.0, 400.0, 2.0, 0.03, 0.0, 0.35, True),
    ]
    for S, K, T, r, q, sig, call in cases:
        price = bsm_price(S, K, T, r, q, sig, call)
        assert implied_vol(price, S, K, T, r, q, call) == pytest.approx(sig, abs=1e-8), (K, T, call)


@pytest.mark.parametrize(
    ("price", "S", "K", "T", "is_call", "reason"),
    [
        (1.0, 100.0, 100.0, 0.0, True, "T<=0"),
        (1.0, 100.0, 100.0, -0.1, True, "T<=0"),
        (0.0, 100.0, 100.0, 0.5, True, "nonpositive_price"),
        (-0.5, 100.0, 100.0, 0.5, False, "nonpositive_price"),
        (float("nan"), 100.0, 100.0, 0.5, True, "nonfinite_input"),
        (5.0, float("inf"), 100.0, 0.5, True, "nonfinite_input"),
        (5.0, 0.0, 100.0, 0.5, True, "nonpositive_input"),
        (5.0, 100.0, -1.0, 0.5, True, "nonpositive_input"),
        # call intrinsic (r=q=0) is 20; 19.50 is an arbitrage quote
        (19.5, 120.0, 100.0, 0.5, True, "below_intrinsic"),
        # put intrinsic 20; 19.99 below it
        (19.99, 80.0, 100.0, 0.5, False, "below_intrinsic"),
        # a call can never be worth more than the stock (r=q=0)
        (100.0, 100.0, 100.0, 0.5, True, "above_upper_bound"),
        (150.0, 100.0, 100.0, 0.5, True, "above_upper_bound"),
        # a put can never be worth more than the strike (r=0)
        (100.0, 50.0, 100.0, 0.5, False, "above_upper_bound"),
        # exactly intrinsic: zero time value, sigma undetermined
        (20.0, 120.0, 100.0, 0.5, True, "no_information"),
    ],
)
def test_invalid_or_uninformative_quotes_give_nan_with_a_reason(price, S, K, T, is_call, reason):
    assert math.isnan(implied_vol(price, S, K, T, 0.0, 0.0, is_call))
    assert implied_vol_reasons(price, S, K, T, 0.0, 0.0, is_call) == reason
    assert reason in IV_REASONS


def test_tiny_and_huge_sigma():
    # tiny sigma ATM is still well determined (price ~ S sigma sqrt(T/2pi))
    p = bsm_price(100.0, 100.0, 0.25, 0.0, 0.0, 1e-4, True)
    assert implied_vol(p, 100.0, 100.0, 0.25, 0.0, 0.0, True) == pytest.approx(1e-4, abs=1e-12)
    # tiny sigma far OTM: price underflows or carries no information -> NaN with a reason, never a number
    p = bsm_price(100.0, 150.0, 0.25, 0.0, 0.0, 1e-3, True)
    iv, why = implied_vol_with_reasons(p, 100.0, 150.0, 0.25, 0.0, 0.0, True)
    assert math.isnan(iv) and why in ("nonpositive_price", "no_information")
    # huge sigma: the price is near the stock price but sigma is still recoverable ...
    p = bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 5.0, True)
    assert implied_vol(p, 100.0, 100.0, 1.0, 0.0, 0.0, True) == pytest.approx(5.0, abs=1e-8)
    # ... until the price equals the upper bound in float64
    p = bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 40.0, True)
    assert p == 100.0
    assert implied_vol_reasons(p, 100.0, 100.0, 1.0, 0.0, 0.0, True) == "above_upper_bound"


def test_degenerate_prices_and_greeks():
    # T == 0 -> intrinsic; sigma == 0 -> discounted forward intrinsic; bad inputs -> NaN
    assert bsm_price(110.0, 100.0, 0.0, 0.05, 0.0, 0.3, True) == 10.0
    fwd_intrinsic = math.exp(-0.05) * (110.0 * math.exp(0.05) - 100.0)
    assert bsm_price(110.0, 100.0, 1.0, 0.05, 0.0, 0.0, True) == pytest.approx(fwd_intrinsic, rel=1e-14)
    assert math.isnan(bsm_price(-1.0, 100.0, 1.0, 0.05, 0.0, 0.2, True))
    assert math.isnan(bsm_price(100.0, 100.0, -1.0, 0.05, 0.0, 0.2, True))
    g = greeks(100.0, 100.0, 0.0, 0.05, 0.0, 0.2, True)
    assert all(math.isnan(v) for v in g)


def test_reasons_array_shape_follows_inputs():
    prices = np.array([[5.0, 0.0], [np.nan, 5.0]])
    why = implied_vol_reasons(prices, 100.0, 100.0, 0.5, 0.01, 0.0, True)
    assert why.shape == (2, 2)
    assert why.tolist() == [["ok", "nonpositive_price"], ["nonfinite_input", "ok"]]
