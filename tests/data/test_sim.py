"""The simulated market: determinism, realistic statistics, intraday path, options surface and quotes.

Expected values come from market facts or statistics (bounds a real US market satisfies, arbitrage
bounds, put-call parity), never from the simulator's own output.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from engine.data import calendar
from engine.data.ports import UNIVERSE_COLUMNS, MarketData
from engine.data.sim import CHAIN_COLUMNS, SimMarket, generate_panel, occ_symbol, parse_occ_symbol

NY = ZoneInfo("America/New_York")
ROOT = Path(__file__).resolve().parents[2]
START, END = date(2024, 6, 3), date(2026, 11, 20)
N_SYMBOLS = 3000


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket(seed=7, n_symbols=N_SYMBOLS)


@pytest.fixture(scope="module")
def panel(market):
    return market.daily_bars(START, END)


def _liquid_and_thin(market: SimMarket, panel) -> tuple[str, str]:
    """A liquid common stock (top dollar volume) and a thin one (about $1M a day), both priced >= $10."""
    dv = np.nanmean((panel.close * panel.volume)[-20:], axis=0)
    price = panel.close[-1]
    kinds = market.universe()["type"].to_numpy()
    ok = (kinds == "CS") & np.isfinite(dv) & (price >= 10)
    order = np.argsort(np.where(ok, -dv, np.inf))
    liquid = str(panel.symbols[order[5]])
    thin = str(panel.symbols[np.argmin(np.where(ok, np.abs(np.log(dv / 1e6)), np.inf))])
    return liquid, thin


# --------------------------------------------------------------------------- universe


def test_universe_looks_like_a_us_listing(market) -> None:
    u = market.universe()
    assert tuple(u.columns) == UNIVERSE_COLUMNS
    assert len(u) == N_SYMBOLS and u["symbol"].is_unique
    assert u["symbol"].map(lambda s: re.fullmatch(r"[A-Z]{1,5}", s) is not None).all()
    etfs = u[u["type"] == "ETF"]
    assert set(etfs["symbol"]) == {"SPY", "QQQ", "IWM", "DIA"}
    stocks = u[u["type"] == "CS"]
    assert stocks["sector"].nunique() == 11
    assert (u["currency"] == "USD").all() and u["active"].all()
    assert 0.9 < u["tradable"].mean() < 1.0
    assert set(u["exchange"]) <= {"XNAS", "XNYS", "XASE", "ARCX"}
    recent = u["list_date"].map(lambda d: d >= date(2024, 6, 1))
    assert 0.01 < recent.mean() < 0.10  # a few recent IPOs
    assert isinstance(market, MarketData)


def test_universe_prefix_is_stable_across_sizes() -> None:
    small, big = SimMarket(7, 600), SimMarket(7, 1500)
    assert list(small.universe()["symbol"]) == list(big.universe()["symbol"][:600])
    a = small.daily_bars(date(2026, 3, 2), date(2026, 3, 31))
    b = big.daily_bars(date(2026, 3, 2), date(2026, 3, 31))
    np.testing.assert_array_equal(a.close, b.close[:, :600])


# --------------------------------------------------------------------------- determinism

_CHILD = """
import hashlib, sys
from datetime import date, datetime
from zoneinfo import ZoneInfo
from engine.data.sim import SimMarket
m = SimMarket(seed=int(sys.argv[1]), n_symbols=800)
p = m.daily_bars(date(2026, 2, 2), date(2026, 3, 31))
h = hashlib.sha256()
for f in ("open", "high", "low", "close", "volume"):
    h.update(getattr(p, f).tobytes())
h.update("".join(p.symbols).encode())
ch = m.option_chain(str(p.symbols[9]), datetime(2026, 3, 12, 11, 7, tzinfo=ZoneInfo("America/New_York")))
h.update(ch[["bid", "ask", "iv", "open_interest", "volume"]].to_numpy(dtype=float).tobytes())
print(h.hexdigest())
"""


def _digest_here(seed: int) -> str:
    m = SimMarket(seed=seed, n_symbols=800)
    p = m.daily_bars(date(2026, 2, 2), date(2026, 3, 31))
    h = hashlib.sha256()
    for f in ("open", "high", "low", "close", "volume"):
        h.update(getattr(p, f).tobytes())
    h.update("".join(p.symbols).encode())
    ch = m.option_chain(str(p.symbols[9]), datetime(2026, 3, 12, 11, 7, tzinfo=NY))
    h.update(ch[["bid", "ask", "iv", "open_interest", "volume"]].to_numpy(dtype=float).tobytes())
    return h.hexdigest()


def test_same_seed_same_market_in_another_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "7"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest_here(7)
    assert _digest_here(8) != _digest_here(7)


def test_bars_do_not_depend_on_the_requested_range_or_subset(market) -> None:
    a = market.daily_bars(date(2026, 1, 2), date(2026, 3, 31))
    b = market.daily_bars(date(2025, 11, 14), date(2026, 3, 9))
    day = np.datetime64("2026-03-02")
    ia, ib = int(np.searchsorted(a.dates, day)), int(np.searchsorted(b.dates, day))
    for f in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, f)[ia], getattr(b, f)[ib])
    symbols = [str(a.symbols[2999]), "SPY", str(a.symbols[517])]
    sub = market.daily_bars(date(2026, 1, 2), date(2026, 3, 31), symbols)
    assert list(sub.symbols) == symbols
    for k, s in enumerate(symbols):
        np.testing.assert_array_equal(sub.close[:, k], a.close[:, int(np.flatnonzero(a.symbols == s)[0])])
    # far from the epoch too (walks backwards) and prices stay sane
    old = market.daily_bars(date(2010, 3, 1), date(2010, 3, 31))
    assert np.all(old.close[np.isfinite(old.close)] > 0)
    assert np.isfinite(old.close).mean() > 0.5


def test_sessions_are_the_nyse_calendar(panel) -> None:
    np.testing.assert_array_equal(panel.dates, calendar.sessions(START, END))
    assert np.datetime64("2025-11-27") not in panel.dates  # Thanksgiving
    assert panel.dtype == np.float64


# --------------------------------------------------------------------------- daily statistics


def test_ohlc_consistency(panel) -> None:
    o, h, lo, c, v = panel.open, panel.high, panel.low, panel.close, panel.volume
    listed = np.isfinite(c)
    for arr in (o, h, lo, v):
        np.testing.assert_array_equal(np.isfinite(arr), listed)  # a bar is all there or all NaN
    assert np.all(h[listed] >= np.maximum(o, c)[listed])
    assert np.all(lo[listed] <= np.minimum(o, c)[listed])
    assert np.all(lo[listed] > 0) and np.all(v[listed] > 0)
    # once listed, a symbol has a bar every session (no holes)
    first = np.argmax(listed, axis=0)
    rows = np.arange(len(panel.dates))[:, None]
    assert np.array_equal(listed, (rows >= first[None, :]) & listed.any(axis=0)[None, :])
    late = listed[-1] & ~listed[0]
    assert 10 <= late.sum() <= 300  # some symbols list inside the window
    # prices on the exchange's cent grid
    assert np.allclose(c[listed & (c >= 1)] * 100, np.round(c[listed & (c >= 1)] * 100), atol=1e-6)


def test_return_statistics_are_realistic(market, panel) -> None:
    c, o = panel.close, panel.open
    r = np.diff(np.log(c), axis=0)
    sd = np.nanstd(r, axis=0)
    assert 0.012 < np.nanmedian(sd) < 0.04  # US stocks: ~1.5-3% a day
    spy = r[:, 0]
    assert 0.005 < np.nanstd(spy) < 0.016  # index: 8-25% a year
    z = (r - np.nanmean(r, axis=0)) / sd
    assert np.nanmedian(np.nanmean(z**4, axis=0)) > 3.8  # fat tails (normal: 3)
    # gaps: the open is rarely the previous close, overnight moves are a fraction of the day's
    gap = np.log(o[1:] / c[:-1])
    ok = np.isfinite(gap)
    assert (np.abs(gap[ok]) > 1e-9).mean() > 0.9
    ratio = np.nanmedian(np.nanstd(gap, axis=0) / sd)
    assert 0.2 < ratio < 0.75
    # a market factor: stocks co-move with the index
    corr = [np.corrcoef(r[-250:, k], spy[-250:])[0, 1] for k in range(4, 400) if np.isfinite(r[-250:, k]).all()]
    assert 0.15 < np.median(corr) < 0.8


def test_volatility_spread_and_regimes(panel) -> None:
    h, lo, c = panel.high, panel.low, panel.close
    prev = np.vstack([np.full(c.shape[1], np.nan), c[:-1]])
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    atr_pct = 100 * np.nanmean(tr[-14:], axis=0) / c[-1]
    assert np.nanpercentile(atr_pct, 10) < 2.0
    assert np.nanpercentile(atr_pct, 90) > 4.0
    assert np.nanpercentile(atr_pct, 1) > 0.3 and np.nanpercentile(atr_pct, 99) < 20
    # regimes: a symbol's 63-day realised vol changes over time
    r = np.diff(np.log(c), axis=0)[-504:]
    r = r[:, np.isfinite(r).all(axis=0)]
    windows = r.reshape(8, 63, -1)
    vols = np.nanstd(windows, axis=1)
    swing = np.nanmax(vols, axis=0) / np.nanmin(vols, axis=0)
    assert np.nanmedian(swing) > 1.5


def test_volume_and_liquidity(panel) -> None:
    c, v = panel.close, panel.volume
    r = np.abs(np.diff(np.log(c), axis=0))
    lv = np.log(v[1:])
    corr = [np.corrcoef(r[-250:, k], lv[-250:, k])[0, 1] for k in range(4, 500) if np.isfinite(r[-250:, k]).all()]
    assert np.median(corr) > 0.15  # volume rises with |return|
    dollar = np.nanmean((c * v)[-20:], axis=0)
    liquid = np.nanmean(dollar >= 20e6)
    assert 0.1 < liquid < 0.6  # some pass a $20M/day filter, many don't
    assert np.nanmin(dollar) < 1e6 and np.nanmax(dollar) > 5e9
    price = c[-1][np.isfinite(c[-1])]
    assert np.percentile(price, 5) < 6 and np.percentile(price, 95) > 100
    assert price.min() > 0.05 and price.max() < 5000


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    cs = np.cumsum(x, axis=0)
    out[n - 1] = cs[n - 1] / n
    out[n:] = (cs[n:] - cs[:-n]) / n
    return out


def test_atr_matrix_entry_setups_appear_for_a_handful(panel) -> None:
    """DESIGN §4 entry rule evaluated with independent indicator code (Wilder ATR, SMAs, EMA10)."""
    sel = np.isfinite(panel.close[0])  # symbols with the whole window
    h, lo, c, v = (getattr(panel, f)[:, sel] for f in ("high", "low", "close", "volume"))
    prev = np.vstack([c[:1], c[:-1]])
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    atr = np.full_like(c, np.nan)
    a = tr[1:15].mean(axis=0)
    atr[14] = a
    for t in range(15, len(c)):
        a = (13 * a + tr[t]) / 14
        atr[t] = a
    ema = np.full_like(c, np.nan)
    e = c[:10].mean(axis=0)
    ema[9] = e
    for t in range(10, len(c)):
        e = c[t] * (2 / 11) + e * (9 / 11)
        ema[t] = e
    s20, s50, s100, s200 = (_sma(c, n) for n in (20, 50, 100, 200))
    hh = np.stack([h[t - 19 : t + 1].max(axis=0) for t in range(19, len(c))])
    ll = np.stack([lo[t - 19 : t + 1].min(axis=0) for t in range(19, len(c))])
    hh = np.vstack([np.full((19, c.shape[1]), np.nan), hh])
    ll = np.vstack([np.full((19, c.shape[1]), np.nan), ll])
    dist = (c - s50) / atr
    signal = (
        (dist >= 0) & (dist <= 4) & (c > s20)
        & (ema >= s20) & (s20 >= s50) & (s50 >= s100) & (s100 >= s200)
        & (100 * atr / c >= 3.0) & (100 * (c - ll) / (hh - ll) >= 50)
        & (c >= 10) & (_sma(c * v, 20) >= 20e6)
    )
    share = signal[-250::10].mean(axis=1)  # every 10th session of the last year
    assert share.min() > 0  # setups exist on every sampled day
    assert 0.003 < share.mean() < 0.05  # a realistic handful, ~1-3% of the universe
    assert np.nanmean(dist[-1] > 7) > 0.001  # some symbols reach the scale-out zone


def test_generation_at_benchmark_size_is_compact() -> None:
    # Its speed is measured by `python -m engine bench store`, not asserted here (a timed test fails on a
    # loaded machine); this pins the shape and memory the benchmark relies on.
    p = generate_panel(seed=7, n_symbols=32_345, n_days=300)
    assert p.close.shape == (300, 32_345) and p.dtype == np.float32
    assert p.nbytes < 200e6


# --------------------------------------------------------------------------- intraday


def test_intraday_path_through_high_and_low(market) -> None:
    for sym in ("SPY", str(market.symbols[10]), str(market.symbols[2500])):
        for day in (date(2026, 3, 2), date(2026, 11, 20)):
            bar = market.bar(sym, day)
            path = market.intraday_path(sym, day)
            assert len(path) == 391
            assert path.iloc[0] == bar["open"] and path.iloc[-1] == bar["close"]
            assert path.max() == bar["high"] and path.min() == bar["low"]
            assert path.index[0].hour == 9 and path.index[-1].hour == 16


def test_early_close_and_quotes_around_the_session(market) -> None:
    sym = str(market.symbols[10])
    day = date(2026, 11, 27)
    bar = market.bar(sym, day)
    path = market.intraday_path(sym, day)
    assert len(path) == 211 and (path.index[-1].hour, path.index[-1].minute) == (13, 0)
    assert market.intraday_price(sym, datetime(2026, 11, 27, 13, 0, tzinfo=NY)) == bar["close"]
    assert market.intraday_price(sym, datetime(2026, 11, 27, 15, 0, tzinfo=NY)) == bar["close"]
    assert market.intraday_price(sym, datetime(2026, 11, 27, 8, 0, tzinfo=NY)) == bar["prev_close"]
    assert market.intraday_price(sym, datetime(2026, 11, 27, 9, 30, tzinfo=NY)) == bar["open"]
    assert bar["prev_close"] == market.bar(sym, date(2026, 11, 25))["close"]
    # Thanksgiving: the last close
    assert market.intraday_price(sym, datetime(2026, 11, 26, 12, 0, tzinfo=NY)) == bar["prev_close"]
    mid_day = datetime(2026, 11, 27, 11, 15, tzinfo=NY)
    price = market.intraday_price(sym, mid_day)
    assert bar["low"] <= price <= bar["high"]
    q = market.quotes([sym, "SPY"], mid_day)
    assert list(q.columns) == ["symbol", "bid", "ask", "last", "time"]
    assert (q["bid"] < q["ask"]).all() and (q["bid"] <= q["last"]).all() and (q["last"] <= q["ask"]).all()
    assert q["last"].iloc[0] == price and q["time"].iloc[0] == mid_day


def test_thin_names_have_wider_stock_spreads(market, panel) -> None:
    liquid, thin = _liquid_and_thin(market, panel)
    at = datetime(2026, 11, 20, 11, 0, tzinfo=NY)
    q = market.quotes([liquid, thin], at).set_index("symbol")
    rel = (q["ask"] - q["bid"]) / q["last"]
    assert rel[thin] > 2 * rel[liquid]


# --------------------------------------------------------------------------- options

AT = datetime(2026, 11, 20, 11, 0, tzinfo=NY)


@pytest.fixture(scope="module")
def chains(market, panel) -> dict[str, pd.DataFrame]:
    liquid, thin = _liquid_and_thin(market, panel)
    return {"SPY": market.option_chain("SPY", AT), "liquid": market.option_chain(liquid, AT),
            "thin": market.option_chain(thin, AT), "mid": market.option_chain(str(panel.symbols[10]), AT)}


def test_chain_shape_and_contract_identity(chains) -> None:
    ch = chains["liquid"]
    assert tuple(ch.columns) == CHAIN_COLUMNS
    assert (ch["source"] == "sim").all() and set(ch["right"]) == {"C", "P"}
    assert ch["quote_time"].iloc[0] == AT
    for row in ch.sample(40, random_state=1).itertuples():
        assert re.fullmatch(r"[A-Z ]{6}\d{6}[CP]\d{8}", row.occ_symbol)
        assert parse_occ_symbol(row.occ_symbol) == (row.underlying, row.expiry, row.right, row.strike)
        assert row.dte == (row.expiry - AT.date()).days
    assert occ_symbol("AAPL", date(2023, 6, 16), "C", 150.0) == "AAPL  230616C00150000"
    assert occ_symbol("SPY", date(2026, 12, 18), "P", 512.5) == "SPY   261218P00512500"
    assert ch["occ_symbol"].is_unique
    assert pd.api.types.is_integer_dtype(ch["volume"]) and pd.api.types.is_integer_dtype(ch["open_interest"])


def test_expiries_weeklies_monthlies_and_holidays(market) -> None:
    ch = market.option_chain("SPY", AT)
    expiries = sorted(set(ch["expiry"]))
    # every Friday in the next five weeks; Christmas Friday 2026-12-25 moves to Thursday the 24th
    for d in (date(2026, 11, 27), date(2026, 12, 4), date(2026, 12, 11), date(2026, 12, 18), date(2026, 12, 24)):
        assert d in expiries
    assert date(2026, 12, 25) not in expiries
    # third Fridays out to about six months
    for d in (date(2027, 1, 15), date(2027, 2, 19), date(2027, 3, 19), date(2027, 4, 16), date(2027, 5, 21)):
        assert d in expiries
    assert 150 <= max(ch["dte"]) <= 200 and min(ch["dte"]) >= 1
    # Good Friday 2026-04-03 is a holiday: that weekly expires on Thursday 2 April
    march = market.option_chain("SPY", datetime(2026, 3, 20, 10, 0, tzinfo=NY))
    assert date(2026, 4, 2) in set(march["expiry"]) and date(2026, 4, 3) not in set(march["expiry"])
    assert all(e.weekday() in (3, 4) for e in expiries)


def test_strikes_cover_forty_percent_with_listed_increments(chains) -> None:
    for ch in chains.values():
        spot = ch["underlying_price"].iloc[0]
        strikes = np.sort(ch["strike"].unique())
        step = np.diff(strikes)
        assert np.allclose(step, step[0])
        assert step[0] in (0.5, 1.0, 2.5, 5.0, 10.0)
        assert strikes.min() <= spot * 0.7 and strikes.max() >= spot * 1.3


def _bounds(ch: pd.DataFrame, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """No-arbitrage bounds of American options: at least the European floor and immediate exercise,
    at most the stock (calls) or the strike (puts)."""
    s, k = ch["underlying_price"].to_numpy(), ch["strike"].to_numpy()
    t = ch["dte"].to_numpy() / 365.0
    ds, dk = s * np.exp(-q * t), k * np.exp(-0.04 * t)
    call = (ch["right"] == "C").to_numpy()
    lower = np.where(call, np.maximum.reduce([np.zeros_like(s), ds - dk, s - k]),
                     np.maximum.reduce([np.zeros_like(s), dk - ds, k - s]))
    upper = np.where(call, s, k)
    return lower, upper, ds, dk


def test_no_arbitrage_bounds_and_ticks(market, chains) -> None:
    for name, ch in chains.items():
        under = ch["underlying"].iloc[0]
        lower, upper, _, _ = _bounds(ch, market.dividend_yield(under, AT.date()))
        mid = ch["mid"].to_numpy()
        assert np.all(mid >= lower - 1e-9) and np.all(mid <= upper + 1e-9), name
        assert np.all(ch["ask"] >= lower - 1e-9) and np.all(ch["bid"] <= upper + 1e-9)
        assert (ch["bid"] >= 0).all() and (ch["ask"] > ch["bid"]).all()
        assert ((ch["bid"] <= ch["last"]) & (ch["last"] <= ch["ask"])).all()
        for col in ("bid", "ask"):
            px = ch[col].to_numpy()
            cents = np.round(px * 100)
            assert np.allclose(px * 100, cents, atol=1e-6)
            assert np.all(cents[px >= 3.0] % 5 == 0)  # $0.05 ticks from $3


def test_put_call_parity_within_the_quotes(market, chains) -> None:
    """American options: S e^{-qT} - K <= C - P <= S - K e^{-rT} (Hull, continuous yield), up to the quotes."""
    for ch in chains.values():
        q = market.dividend_yield(ch["underlying"].iloc[0], AT.date())
        calls = ch[ch["right"] == "C"].set_index(["expiry", "strike"])
        puts = ch[ch["right"] == "P"].set_index(["expiry", "strike"])
        both = calls.add_suffix("_c").join(puts.add_suffix("_p"), how="inner")
        t = both["dte_c"].to_numpy() / 365.0
        k = both.index.get_level_values("strike").to_numpy()
        s = both["underlying_price_c"].to_numpy()
        low, high = s * np.exp(-q * t) - k, s - k * np.exp(-0.04 * t)
        diff = (both["mid_c"] - both["mid_p"]).to_numpy()
        allowed = ((both["ask_c"] - both["bid_c"]) / 2 + (both["ask_p"] - both["bid_p"]) / 2).to_numpy()
        assert np.all(diff >= low - allowed - 1e-9) and np.all(diff <= high + allowed + 1e-9)


def test_quoted_iv_reprices_inside_the_market(market, chains) -> None:
    """The iv column is the surface vol, and the chains are American: Bjerksund-Stensland 2002 at that vol
    (an independent scalar transcription, tests/options/bs2002_reference.py) lies within bid/ask.  The
    provider greeks are BSM at that vol (own formula, math.erf), as vendors publish them."""
    from tests.options.bs2002_reference import bs2002

    def bsm_delta(s, k, t, q, vol, call):
        d1 = (math.log(s / k) + (0.04 - q + vol * vol / 2) * t) / (vol * math.sqrt(t))
        n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
        return math.exp(-q * t) * n(d1) if call else -math.exp(-q * t) * n(-d1)

    ch = chains["SPY"]
    q = market.dividend_yield("SPY", AT.date())
    assert q == 0.012  # SPY's yield in the simulated universe: calls are American too
    for row in ch.sample(60, random_state=3).itertuples():
        call, t = row.right == "C", row.dte / 365
        price = bs2002(call, row.underlying_price, row.strike, t, 0.04, q, row.iv)
        assert row.bid - 1e-6 <= price <= row.ask + 1e-6
        assert abs(bsm_delta(row.underlying_price, row.strike, t, q, row.iv, call) - row.delta) < 1e-6


def test_greeks_signs(chains) -> None:
    ch = chains["mid"]
    calls, puts = ch[ch["right"] == "C"], ch[ch["right"] == "P"]
    assert calls["delta"].between(0, 1).all() and puts["delta"].between(-1, 0).all()
    live = ch[ch["vega"] > 1e-6]
    assert (live["gamma"] >= 0).all() and (live["iv"] > 0).all()
    assert (calls[calls["vega"] > 1e-3]["theta"] < 0).all()


def test_spreads_widen_away_from_the_money_and_for_thin_names(chains) -> None:
    def otm_rel_spread(ch: pd.DataFrame, lo: float, hi: float) -> float:
        s = ch["underlying_price"].iloc[0]
        m = np.abs(np.log(ch["strike"] / s))
        otm = np.where(ch["right"] == "C", ch["strike"] >= s, ch["strike"] <= s)
        sel = ch[otm & (m >= lo) & (m < hi) & ch["dte"].between(21, 60) & (ch["mid"] > 0)]
        return float(((sel["ask"] - sel["bid"]) / sel["mid"]).median())

    for name in ("SPY", "liquid", "mid"):
        assert otm_rel_spread(chains[name], 0.15, 0.4) > otm_rel_spread(chains[name], 0.0, 0.04), name
    assert otm_rel_spread(chains["thin"], 0.0, 0.05) > 2 * otm_rel_spread(chains["liquid"], 0.0, 0.05)


def test_skew_puts_richer_than_calls(chains) -> None:
    for name, ch in chains.items():
        for _, exp in ch[ch["dte"].between(21, 70)].groupby("expiry"):
            puts, calls = exp[exp["right"] == "P"], exp[exp["right"] == "C"]
            p25 = puts.iloc[(puts["delta"] + 0.25).abs().argmin()]
            c25 = calls.iloc[(calls["delta"] - 0.25).abs().argmin()]
            assert p25["iv"] > c25["iv"], name
            # and at the same log-distance from the forward, interpolated along each side's smile
            s, t = exp["underlying_price"].iloc[0], exp["dte"].iloc[0] / 365
            fwd = s * math.exp(0.04 * t)
            d = 0.1
            put_iv = np.interp(-d, np.log(puts["strike"] / fwd), puts["iv"])
            call_iv = np.interp(d, np.log(calls["strike"] / fwd), calls["iv"])
            assert put_iv > call_iv, name


def test_open_interest_and_volume_peak_near_the_money_and_follow_liquidity(chains) -> None:
    def pass_rate(ch: pd.DataFrame) -> float:
        sel = ch[ch["dte"].between(21, 60) & ch["delta"].abs().between(0.2, 0.8)]
        return float(((sel["open_interest"] >= 500) & (sel["volume"] >= 50)).mean())

    assert pass_rate(chains["SPY"]) > 0.8 and pass_rate(chains["liquid"]) > 0.6
    assert pass_rate(chains["thin"]) < 0.2
    for ch in (chains["SPY"], chains["liquid"]):
        s = ch["underlying_price"].iloc[0]
        m = np.abs(np.log(ch["strike"] / s))
        assert ch[m < 0.05]["open_interest"].median() > 5 * ch[m > 0.3]["open_interest"].median()
        assert ch[m < 0.05]["volume"].median() > 5 * max(ch[m > 0.3]["volume"].median(), 1)


def test_premarket_chain_shows_yesterdays_volume(market) -> None:
    sym = str(market.symbols[20])
    pre = market.option_chain(sym, datetime(2026, 11, 20, 8, 0, tzinfo=NY)).set_index("occ_symbol")
    prior_close = market.option_chain(sym, datetime(2026, 11, 19, 17, 0, tzinfo=NY)).set_index("occ_symbol")
    common = pre.index.intersection(prior_close.index)
    assert len(common) > 20
    np.testing.assert_array_equal(pre.loc[common, "volume"], prior_close.loc[common, "volume"])
    early = market.option_chain(sym, datetime(2026, 11, 20, 9, 45, tzinfo=NY)).set_index("occ_symbol")
    late = market.option_chain(sym, datetime(2026, 11, 20, 15, 45, tzinfo=NY)).set_index("occ_symbol")
    both = early.index.intersection(late.index)
    assert (late.loc[both, "volume"] >= early.loc[both, "volume"]).all()
    assert late.loc[both, "volume"].sum() > 2 * early.loc[both, "volume"].sum()


def test_option_quotes_price_any_contract_like_the_chain(market) -> None:
    at = datetime(2026, 11, 20, 14, 0, tzinfo=NY)
    ch = market.option_chain("QQQ", at)
    pick = ch.sample(5, random_state=2)
    q = market.option_quotes(list(pick["occ_symbol"]), at)
    pd.testing.assert_frame_equal(q.reset_index(drop=True), pick.reset_index(drop=True))


def test_atm_iv_series_consistent_with_realised_vol_and_chain(market, panel) -> None:
    sym = str(panel.symbols[10])
    iv = market.atm_iv_series(sym, date(2025, 11, 20), END)
    assert len(iv) == len(calendar.sessions(date(2025, 11, 20), END))
    assert iv.notna().all() and (iv > 0.05).all() and (iv < 3).all()
    assert iv.std() / iv.mean() > 0.05  # it moves, so IV rank means something
    close = panel.frame(sym)["close"]
    realised = np.log(close).diff().loc["2025-11-20":].std() * math.sqrt(252)
    assert 0.9 < iv.mean() / realised < 1.8  # implied above realised on average (variance premium)
    spy = market.atm_iv_series("SPY", date(2026, 1, 2), END)
    assert 0.08 < spy.median() < 0.35
    # at the close, the chain's near-30-day ATM-forward IV matches the series (term structure aside)
    day = date(2026, 11, 19)
    ch = market.option_chain(sym, datetime(2026, 11, 19, 16, 30, tzinfo=NY))
    exp = ch[ch["dte"].between(25, 36) & (ch["right"] == "C")]
    dte = exp["dte"].iloc[0]
    exp = exp[exp["dte"] == dte]
    fwd = exp["underlying_price"].iloc[0] * math.exp((0.04 - market.dividend_yield(sym, day)) * dte / 365)
    atm_iv = np.interp(0.0, np.log(exp["strike"] / fwd), exp["iv"])
    assert abs(atm_iv / iv.loc[pd.Timestamp(day)] - 1) < 0.12


def test_unknown_symbol_and_naive_time_rejected(market) -> None:
    with pytest.raises(KeyError):
        market.daily_bars(date(2026, 1, 2), date(2026, 1, 9), ["NOPE!"])
    with pytest.raises(ValueError):
        market.quotes(["SPY"], datetime(2026, 11, 20, 11, 0))


def test_before_listing_there_is_nothing_to_trade(market) -> None:
    u = market.universe()
    ipo = u[u["list_date"] > date(2026, 3, 1)].iloc[0]
    before = ipo["list_date"] - timedelta(days=10)
    at = datetime(before.year, before.month, before.day, 12, 0, tzinfo=NY)
    if not calendar.is_session(before):
        at = datetime.combine(calendar.previous_session(before), datetime.min.time(), NY).replace(hour=12)
    assert math.isnan(market.intraday_price(ipo["symbol"], at))
    assert market.option_chain(ipo["symbol"], at).empty


_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """The published SplitMix64 step (Steele, Lea, Flood 2014), in Python integers."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def test_key_hash_is_splitmix64_chained_over_the_keys() -> None:
    """The simulated market's randomness (compiled) is SplitMix64 chained over (seed, stream, keys...),
    broadcast over scalar and 1-D keys, matching a plain-Python SplitMix64 value for value."""
    from engine.data.sim_static import _hash_normal, _hash_uniform

    assert _splitmix64(0) == 0xE220A8397B1DCDAF  # the reference itself: SplitMix64's first output from state 0

    def reference(seed: int, stream: int, keys: tuple[int, ...]) -> float:
        h = _splitmix64((seed & _M64) ^ (stream << 48))
        for k in keys:
            h = _splitmix64(h ^ (k & _M64))
        return (float(h >> 11) + 0.5) * (1.0 / 9007199254740992.0)

    rng = np.random.default_rng(3)
    symbols, strikes = rng.integers(0, 40_000, 25), rng.integers(1_000, 900_000, 25)
    got = _hash_uniform(2**40 + 7, 5, symbols, 739_500, strikes, 1)
    assert got.shape == (25,)
    assert got.tolist() == [reference(2**40 + 7, 5, (int(s), 739_500, int(k), 1))
                            for s, k in zip(symbols, strikes, strict=True)]
    scalar = _hash_uniform(7, 3, 11, 4)
    assert scalar.shape == () and float(scalar) == reference(7, 3, (11, 4))
    assert _hash_uniform(7, 3, 11, np.array([4])).shape == (1,)
    u1, u2 = reference(7, 9, (2, 5, 0)), reference(7, 9, (2, 5, 1))  # Box-Muller on two of them
    assert float(_hash_normal(7, 9, 2, 5)) == pytest.approx(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2),
                                                            rel=1e-12)
    with pytest.raises(ValueError, match="keys"):
        _hash_uniform(7, 3, np.zeros((2, 2), dtype=np.int64))
