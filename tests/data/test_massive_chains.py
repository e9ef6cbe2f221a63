"""Issue 13 items 2 and 3 against the local fake Massive: chains in the snapshot's shape
(``v3/snapshot/options/AAPL.json``), served with Massive's filters and 250-contract pages.

Item 2: the deliverable (``details.shares_per_contract``) is carried; adjusted contracts are excluded
with that reason, or, when allowed, priced with their own deliverable.
Item 3: a candidate build asks the server for its expiry window, strike band and contract type; a
held position is quoted by its own contracts only."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from scipy.stats import norm
from sqlmodel import Session

from engine.config import load_settings
from engine.execution.ports import AssetType, Leg, Side
from engine.models import Signal
from engine.options.candidates import build_candidates, order_legs
from engine.options.chain import enrich
from engine.options.selection import OptionParams, select_candidates
from engine.portfolio.marks import leg_quotes
from tests.data.fake_massive import FakeMassive, option_result
from tests.data.test_massive import market_for

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)


def bsm(spot: float, strike: float, dte: int, right: str, iv: float = 0.2) -> tuple[float, float]:
    """Black-Scholes (r = q = 0) price and delta, by scipy, for generating quotes."""
    t = dte / 365.0
    d1 = (math.log(spot / strike) + 0.5 * iv * iv * t) / (iv * math.sqrt(t))
    d2 = d1 - iv * math.sqrt(t)
    if right == "C":
        return spot * norm.cdf(d1) - strike * norm.cdf(d2), float(norm.cdf(d1))
    return strike * norm.cdf(-d2) - spot * norm.cdf(-d1), float(norm.cdf(d1) - 1)


def chain_results(underlying: str, spot: float, dtes: list[int], strikes: list[float]) -> list[dict]:
    out = []
    for dte in dtes:
        expiry = TODAY + timedelta(days=dte)
        for k in strikes:
            for right in ("C", "P"):
                price, delta = bsm(spot, k, dte, right)
                price = max(price, 0.05)
                half = max(round(price * 0.01, 2), 0.01)
                out.append(option_result(underlying, expiry, right, k, bid=round(price - half, 2),
                                         ask=round(price + half, 2), delta=delta, spot=spot, quoted=NOW))
    return out


# --- item 2: deliverables ----------------------------------------------------------------------------------


def _adjusted_pair() -> list[dict]:
    expiry = TODAY + timedelta(days=35)
    standard = option_result("AAPL", expiry, "C", 170.0, bid=14.0, ask=14.4, delta=0.58, spot=180.0, quoted=NOW)
    adjusted = option_result("AAPL", expiry, "C", 170.0, bid=20.9, ask=21.5, delta=0.60, spot=180.0, quoted=NOW,
                             shares_per_contract=150, root="AAPL1")
    return [standard, adjusted]


def test_the_chain_carries_shares_per_contract(tmp_path: Path) -> None:
    with FakeMassive() as fake:
        fake.chains["AAPL"] = _adjusted_pair()
        chain = market_for(fake, tmp_path).option_chain("AAPL", NOW)
    by_symbol = dict(zip(chain["occ_symbol"], chain["shares_per_contract"], strict=True))
    assert by_symbol == {"AAPL  260406C00170000": 100.0, "AAPL1 260406C00170000": 150.0}


def test_adjusted_contracts_are_excluded_by_default_and_priced_with_their_deliverable_when_allowed(
    tmp_path: Path,
) -> None:
    with FakeMassive() as fake:
        fake.chains["AAPL"] = _adjusted_pair()
        chain = enrich(market_for(fake, tmp_path).option_chain("AAPL", NOW), r=0.04, q=0.0)
    signal = {"symbol": "AAPL", "close": 180.0, "atr": 3.0, "stop": 174.0, "zone": "entry"}
    default = select_candidates(signal, chain, OptionParams())
    # The adjusted call is nearer the 0.60 delta target, but delivers 150 shares: excluded, and said so.
    assert default.chosen is not None and default.chosen.legs[0].occ_symbol == "AAPL  260406C00170000"
    reasons = dict(zip(default.rejected["occ_symbol"], default.rejected["reason"], strict=True))
    assert reasons["AAPL1 260406C00170000"] == "non-standard deliverable: 150 shares per contract"
    assert default.chosen.multiplier == 100

    allowed = select_candidates(signal, chain, OptionParams(allow_nonstandard_deliverables=True))
    assert allowed.chosen is not None and allowed.chosen.legs[0].occ_symbol == "AAPL1 260406C00170000"
    # The OCC keeps an adjusted contract's multiplier (premium and strike x 100) and changes only what it
    # delivers: one contract costs ask x 100 = 21.50 x 100 = $2,150.00 and delivers 150 shares for 170 x 100.
    assert allowed.chosen.multiplier == 100
    assert [leg.deliverable for leg in allowed.chosen.legs] == [150]
    assert allowed.chosen.max_loss_per_contract("natural") == Decimal("2150.00")
    # its order leg carries the deliverable to the gate, the broker and the books
    assert [leg.deliverable for leg in order_legs(allowed.chosen)] == [150]


def test_the_deliverable_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QM_OPTIONS__ALLOW_NONSTANDARD_DELIVERABLES", "true")
    assert load_settings(data_dir=tmp_path).options.allow_nonstandard_deliverables is True


# --- item 3: filtered chain requests ------------------------------------------------------------------------

SPY_DTES = [3, 10, 17, 24, 31, 38, 45, 52, 59, 90, 180, 365]
SPY_STRIKES = [float(k) for k in range(250, 751, 5)]  # 101 strikes x 2 rights x 12 expiries = 2,424


def test_a_candidate_build_requests_only_its_expiries_strikes_and_calls(tmp_path: Path, migrated_sqlite) -> None:
    settings = load_settings(data_dir=tmp_path)
    with FakeMassive() as fake:
        fake.chains["SPY"] = chain_results("SPY", 500.0, SPY_DTES, SPY_STRIKES)
        market = market_for(fake, tmp_path)
        full = market.option_chain("SPY", NOW)
        full_requests = fake.count("/v3/snapshot/options/SPY")
        assert len(full) == 2424 and full_requests == 10  # the whole chain: 10 pages of 250
        with Session(migrated_sqlite) as session:
            signal = Signal(strategy="atr_matrix", symbol="SPY", data_date=TODAY, zone="entry", entry_price=500.0,
                            atr=6.0, stop=488.0, targets=[506.0, 512.0, 518.0, 524.0], score=1.0)
            session.add(signal)
            session.flush()
            outcome = build_candidates(session, market, settings, signal, NOW)
        requests = [s for s in fake.seen if s.path == "/v3/snapshot/options/SPY"][full_requests:]
    assert len(requests) == 2  # 288 calls in the band: two pages instead of ten
    first = requests[0].params
    assert first["expiration_date.gte"] == "2026-03-23" and first["expiration_date.lte"] == "2026-05-01"
    assert first["contract_type"] == "call"
    assert 300 < float(first["strike_price.gte"]) < 500 < float(first["strike_price.lte"]) < 700
    # The band loses nothing the selection would have chosen from the whole chain.
    view = {"symbol": "SPY", "close": 500.0, "atr": 6.0, "stop": 488.0, "zone": "entry"}
    from_full = select_candidates(view, enrich(full, r=settings.risk_free_rate, q=0.0), settings.options)
    assert outcome.structure is not None and from_full.chosen is not None
    assert [leg.occ_symbol for leg in outcome.structure.legs] == [leg.occ_symbol for leg in from_full.chosen.legs]


def test_a_held_position_is_quoted_by_its_own_contracts_only(tmp_path: Path) -> None:
    with FakeMassive() as fake:
        fake.chains["SPY"] = chain_results("SPY", 500.0, SPY_DTES, SPY_STRIKES)
        fake.routes["/v2/snapshot/locale/us/markets/stocks/tickers"] = _stock_snapshot("SPY", 500.0)
        market = market_for(fake, tmp_path)
        expiry = TODAY + timedelta(days=38)
        legs = [Leg("SPY   260409C00480000", Side.buy, 1, AssetType.option, "SPY", "C", Decimal("480"), expiry),
                Leg("SPY   260409C00520000", Side.sell, 1, AssetType.option, "SPY", "C", Decimal("520"), expiry)]
        quotes = leg_quotes(market, "SPY", legs, NOW)
        option_requests = [s for s in fake.seen if s.path.startswith("/v3/snapshot")]
    assert len(option_requests) == 1 and option_requests[0].path == "/v3/snapshot"
    assert option_requests[0].params["ticker.any_of"] == "O:SPY260409C00480000,O:SPY260409C00520000"
    price, delta = bsm(500.0, 480.0, 38, "C")
    half = max(round(price * 0.01, 2), 0.01)
    assert quotes["SPY   260409C00480000"].bid == Decimal(str(round(price - half, 2)))
    assert quotes["SPY   260409C00480000"].greeks["delta"] == pytest.approx(delta)


def _stock_snapshot(symbol: str, price: float):  # type: ignore[no-untyped-def]
    from tests.data.fake_massive import Reply

    ns = int(NOW.timestamp() * 1e9)
    return Reply(200, {"status": "OK", "count": 1, "tickers": [{
        "ticker": symbol, "lastQuote": {"p": price - 0.01, "P": price + 0.01, "t": ns},
        "lastTrade": {"p": price, "t": ns}, "day": {"c": price}, "prevDay": {"c": price}, "updated": ns}]})
