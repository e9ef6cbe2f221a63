"""Normalised chain: the providers' recorded responses, the simulated market, and enrichment."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.options.chain import (
    CHAIN_COLUMNS,
    enrich,
    from_polygon_snapshot,
    from_tastytrade_market_data,
    from_tastytrade_nested_chain,
    quote_flags,
)
from engine.options.pricing import greeks

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _load(*parts: str):
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"recorded data not found at {path} (../shared/data is absent in this checkout)")
    return json.loads(path.read_text())


def test_polygon_chain_snapshot_fields_land_in_their_columns():
    doc = _load("polygon", "v3", "snapshot", "options", "AAPL.json")
    ch = from_polygon_snapshot(doc)
    assert tuple(ch.columns) == CHAIN_COLUMNS
    assert len(ch) == 1
    row = ch.iloc[0]
    res = doc["results"][0]
    assert row["occ_symbol"] == "AAPL  230616C00150000"
    assert row["underlying"] == "AAPL" and row["right"] == "C" and row["strike"] == 150.0
    assert row["expiry"] == date(2023, 6, 16)
    assert (row["bid"], row["ask"], row["mid"]) == (28.9, 29.25, 29.075)
    assert row["last"] == 29.25 and row["volume"] == 8 and row["open_interest"] == 8133
    assert row["iv"] == res["implied_volatility"]
    assert (row["delta"], row["gamma"], row["theta"], row["vega"]) == tuple(
        res["greeks"][k] for k in ("delta", "gamma", "theta", "vega"))
    assert row["underlying_price"] == 159.9606
    # last_quote.last_updated = 1651254260800059648 ns = 2022-04-29 17:44:20.800 UTC (13:44 in New York)
    assert row["quote_time"] == pd.Timestamp("2022-04-29 17:44:20.800059648", tz="UTC")
    # 2022-04-29 -> 2023-04-29 is 365 days, + 1 (Apr 30) + 31 (May) + 16 (June) = 413
    assert row["dte"] == 413
    assert row["source"] == "polygon"


def test_polygon_single_contract_snapshot_parses_the_same_way():
    chain_doc = _load("polygon", "v3", "snapshot", "options", "AAPL.json")
    single = _load("polygon", "v3", "snapshot", "options", "AAPL", "O;AAPL230616C00150000.json")
    a, b = from_polygon_snapshot(chain_doc), from_polygon_snapshot(single)
    pd.testing.assert_frame_equal(a, b)
    # also from the bare results list
    pd.testing.assert_frame_equal(from_polygon_snapshot(chain_doc["results"]), a)


def test_polygon_missing_fields_are_nan_not_invented():
    ch = from_polygon_snapshot([{"details": {"ticker": "O:AAPL230616P00140000"}}])
    row = ch.iloc[0]
    assert row["right"] == "P" and row["strike"] == 140.0 and row["expiry"] == date(2023, 6, 16)
    for col in ("bid", "ask", "mid", "last", "volume", "open_interest", "iv", "delta", "underlying_price", "dte"):
        assert math.isnan(row[col]), col
    assert pd.isna(row["quote_time"])


def test_provider_greeks_agree_with_ours_at_the_provider_iv():
    # DESIGN §5: provider greeks and ours must agree. Polygon's contract is American and its fields come
    # from different moments, so agreement is to a loose tolerance; units must match exactly.
    row = from_polygon_snapshot(_load("polygon", "v3", "snapshot", "options", "AAPL.json")).iloc[0]
    g = greeks(row["underlying_price"], row["strike"], row["dte"] / 365, 0.0, 0.0, row["iv"], True)
    assert g.delta == pytest.approx(row["delta"], abs=0.01)
    assert g.gamma == pytest.approx(row["gamma"], rel=0.03)
    assert g.theta == pytest.approx(row["theta"], rel=0.05)   # per calendar day
    assert g.vega == pytest.approx(row["vega"], rel=0.02)     # per vol point


def test_tastytrade_market_data_options():
    doc = _load("tastytrade", "tastyware", "market_data_equity_option_response.json")
    ch = from_tastytrade_market_data(doc)
    assert tuple(ch.columns) == CHAIN_COLUMNS and len(ch) == 2
    row = ch.iloc[0]
    assert row["occ_symbol"] == "SPY   250701C00605000"
    assert (row["underlying"], row["expiry"], row["right"], row["strike"]) == ("SPY", date(2025, 7, 1), "C", 605.0)
    assert (row["bid"], row["ask"], row["mid"], row["last"]) == (9.97, 10.11, 10.04, 9.34)
    assert row["volume"] == 149.0 and row["open_interest"] == 927
    assert (row["iv"], row["delta"], row["gamma"], row["theta"], row["vega"]) == (
        0.131895054, 0.846863126, 0.028472344, -0.255110606, 0.148799869)
    # updated-at 2025-06-27T23:59:39.372Z is 19:59 on the 27th in New York: 4 days to July 1st
    assert row["quote_time"] == pd.Timestamp("2025-06-27 23:59:39.372", tz="UTC")
    assert row["dte"] == 4
    assert math.isnan(row["underlying_price"])  # the response has no SPY quote
    assert ch.iloc[1]["strike"] == 610.0 and ch.iloc[1]["volume"] == 2637.0


def test_tastytrade_market_data_by_type_has_no_options_but_gives_spots():
    doc = _load("tastytrade", "joaquinbejar", "doc_examples", "market_data_by_type.json")
    ch = from_tastytrade_market_data(doc)
    assert tuple(ch.columns) == CHAIN_COLUMNS and ch.empty  # crypto and equities only
    # an option on an equity quoted in the same response takes that equity's mid as underlying price
    option = dict(_load("tastytrade", "tastyware", "market_data_equity_option_response.json")["items"][0])
    option["symbol"] = "AAPL  250516C00210000"
    mixed = {"data": {"items": [*doc["data"]["items"], option]}}
    ch = from_tastytrade_market_data(mixed)
    assert len(ch) == 1
    assert ch.iloc[0]["underlying_price"] == 210.575  # AAPL mid in the recorded response
    assert from_tastytrade_market_data(mixed, underlying_price=211.0).iloc[0]["underlying_price"] == 211.0


def test_tastytrade_nested_chain_contracts_without_quotes():
    doc = _load("tastytrade", "joaquinbejar", "captures", "nested-option-chain.json")
    ch = from_tastytrade_nested_chain(doc)
    assert tuple(ch.columns) == CHAIN_COLUMNS
    assert len(ch) == 18
    assert set(ch["expiry"]) == {date(2026, 8, 4), date(2026, 8, 5), date(2026, 8, 6)}
    assert sorted(set(ch["strike"])) == [500.0, 505.0, 510.0]
    assert dict(zip(ch["expiry"], ch["dte"], strict=True)) == {date(2026, 8, 4): 0, date(2026, 8, 5): 1,
                                                                date(2026, 8, 6): 2}
    quotes = ch[["bid", "ask", "mid", "last", "volume", "open_interest", "iv", "delta"]]
    assert quotes.isna().all().all()
    assert ch["quote_time"].isna().all()
    first = ch.iloc[0]
    assert (first["occ_symbol"], first["right"]) == ("SPY   260804C00500000", "C")
    enriched = enrich(ch, r=0.04, q=0.0)
    assert (enriched["quote_flag"] == "nonfinite").all()
    assert enriched["calc_iv"].isna().all()


def test_quote_flags():
    bid = [1.0, 1.2, 1.0, 0.0, np.nan, 1.0, 1.0]
    ask = [1.1, 1.1, 0.0, 0.5, 1.0, np.inf, 1.0]
    assert list(quote_flags(bid, ask)) == ["ok", "crossed", "no_ask", "no_bid", "nonfinite", "nonfinite", "ok"]


def test_enrich_on_the_simulated_market_recovers_its_surface():
    from engine.data.sim import RISK_FREE_RATE, SimMarket

    market = SimMarket(7, 40)
    at = datetime(2025, 7, 15, 20, 0, tzinfo=timezone.utc)
    symbol = str(market.symbols[0])
    ch = market.option_chain(symbol, at)
    assert tuple(ch.columns) == CHAIN_COLUMNS
    out = enrich(ch, r=RISK_FREE_RATE, q=market.dividend_yield(symbol, at.date()))
    assert tuple(out.columns[: len(CHAIN_COLUMNS)]) == CHAIN_COLUMNS  # source columns kept, in order
    assert list(out.columns[len(CHAIN_COLUMNS):]) == ["calc_iv", "calc_delta", "calc_gamma", "calc_theta",
                                                     "calc_vega", "calc_iv_reason", "quote_flag"]
    pd.testing.assert_frame_equal(out[list(CHAIN_COLUMNS)], ch)  # provider values untouched
    ok = (out["quote_flag"] == "ok") & (out["calc_iv_reason"] == "ok")
    assert ok.sum() > 100
    # flagged quotes never get our numbers
    assert out.loc[out["quote_flag"] != "ok", "calc_iv"].isna().all()
    # the sim quotes around its theoretical price; near the money, where the quote's rounding moves the
    # IV least, our IV from the mid is close to the sim's own
    near = ok & (out["dte"] >= 14) & ((out["strike"] / out["underlying_price"] - 1).abs() < 0.05)
    assert near.sum() > 10
    assert np.max(np.abs(out.loc[near, "calc_iv"] - out.loc[near, "iv"])) < 0.02
    # the provider deltas are BSM (as vendors publish them), ours American: they agree where we trade
    # (up to 60 days); beyond, early exercise moves a put's delta by a few hundredths
    traded = near & (out["dte"] <= 60)
    assert traded.sum() > 10
    assert np.max(np.abs(out.loc[traded, "calc_delta"] - out.loc[traded, "delta"])) < 0.02


def test_enrich_flags_and_reasons_on_hand_rows():
    base = {c: np.nan for c in CHAIN_COLUMNS}
    rows = []
    for occ, bid, ask, dte in (("XYZ   260320C00100000", 4.9, 5.1, 45), ("XYZ   260320C00100000", 5.2, 5.0, 45),
                               ("XYZ   260320C00100000", 4.9, 5.1, 0), ("XYZ   260320C00100000", 0.5, 0.6, 45)):
        rows.append({**base, "underlying": "XYZ", "occ_symbol": occ, "expiry": date(2026, 3, 20), "dte": dte,
                     "strike": 100.0, "right": "C", "bid": bid, "ask": ask, "mid": (bid + ask) / 2,
                     "underlying_price": 120.0, "quote_time": None, "source": "test"})
    out = enrich(pd.DataFrame(rows, columns=list(CHAIN_COLUMNS)), r=0.0, q=0.0)
    assert list(out["quote_flag"]) == ["ok", "crossed", "ok", "ok"]
    # 5.00 for a 100 call with the stock at 120 is below its intrinsic 20
    assert list(out["calc_iv_reason"]) == ["below_intrinsic", "quote_crossed", "T<=0", "below_intrinsic"]
    assert out["calc_iv"].isna().all()
