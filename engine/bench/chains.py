"""Option chains in Massive's snapshot shape for the data benchmark's fake server.

``ChainGenerator`` makes a large, deterministic chain per underlying (like SPY or TSLA: daily, weekly
and monthly expiries out to two years, 250 strikes each, calls and puts: 15,000 contracts) with
Black-Scholes quotes and greeks, and answers ``/v3/snapshot/options/{underlying}`` with Massive's
filters (``expiration_date.gte/lte``, ``strike_price.gte/lte``, ``contract_type``), 250-contract pages
and a ``next_url`` cursor, and the universal ``/v3/snapshot?ticker.any_of=`` for held contracts.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np
from scipy.stats import norm

CHAIN_PATH = re.compile(r"^/v3/snapshot/options/([^/]+)$")
UNIVERSAL_PATH = "/v3/snapshot"
PAGE_MAX = 250


class ChainGenerator:
    def __init__(self, today: date, quoted: datetime, spot: float = 500.0, iv: float = 0.25) -> None:
        self.today, self.quoted, self.spot, self.iv = today, quoted, spot, iv
        dtes = sorted({*range(1, 22), *range(28, 92, 7), *range(120, 731, 30)})
        self.dtes = dtes[:30]
        self.strikes = np.round(spot * 0.5 + np.arange(250) * spot / 250, 2)  # 0.5x..1.5x spot, 250 distinct
        self._chains: dict[str, list[dict[str, Any]]] = {}
        self._index: dict[str, dict[str, dict[str, Any]]] = {}

    @property
    def contracts_per_chain(self) -> int:
        return len(self.dtes) * len(self.strikes) * 2

    def chain(self, underlying: str) -> list[dict[str, Any]]:
        if underlying not in self._chains:
            self._chains[underlying] = self._make(underlying)
        return self._chains[underlying]

    def _make(self, underlying: str) -> list[dict[str, Any]]:
        ns = int(self.quoted.timestamp() * 1e9)
        out = []
        s, v = self.spot, self.iv
        for dte in self.dtes:
            expiry = self.today + timedelta(days=dte)
            t = dte / 365.0
            k = self.strikes
            d1 = (np.log(s / k) + 0.5 * v * v * t) / (v * math.sqrt(t))
            d2 = d1 - v * math.sqrt(t)
            for right in ("C", "P"):
                if right == "C":
                    price, delta = s * norm.cdf(d1) - k * norm.cdf(d2), norm.cdf(d1)
                else:
                    price, delta = k * norm.cdf(-d2) - s * norm.cdf(-d1), norm.cdf(d1) - 1
                price = np.maximum(price, 0.05)
                half = np.maximum(np.round(price * 0.01, 2), 0.01)
                for j, strike in enumerate(k.tolist()):
                    bid, ask = round(float(price[j] - half[j]), 2), round(float(price[j] + half[j]), 2)
                    ticker = f"O:{underlying}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
                    out.append({
                        "day": {"volume": 500, "close": (bid + ask) / 2, "last_updated": ns},
                        "details": {"contract_type": "call" if right == "C" else "put", "exercise_style": "american",
                                    "expiration_date": expiry.isoformat(), "shares_per_contract": 100,
                                    "strike_price": strike, "ticker": ticker},
                        "greeks": {"delta": float(delta[j]), "gamma": 0.01, "theta": -0.05, "vega": 0.3},
                        "implied_volatility": v,
                        "last_quote": {"ask": ask, "bid": bid, "last_updated": ns,
                                       "midpoint": round((bid + ask) / 2, 4), "timeframe": "REAL-TIME"},
                        "last_trade": {"price": (bid + ask) / 2, "sip_timestamp": ns},
                        "open_interest": 5000,
                        "underlying_asset": {"price": s, "ticker": underlying, "last_updated": ns},
                    })
        return out

    def answer(self, path: str, query: str, base: str) -> bytes | None:
        """The response body for a chain or universal snapshot request, or None for other paths."""
        params = dict(parse_qsl(query, keep_blank_values=True))
        match = CHAIN_PATH.match(path)
        if match:
            return json.dumps(self._page(match.group(1), params, base)).encode()
        if path == UNIVERSAL_PATH and "ticker.any_of" in params:
            return json.dumps(self._universal(params["ticker.any_of"].split(","))).encode()
        return None

    def _page(self, underlying: str, params: dict[str, str], base: str) -> dict[str, Any]:
        rows = self.chain(underlying)
        lo_e, hi_e = params.get("expiration_date.gte"), params.get("expiration_date.lte")
        lo_k, hi_k = params.get("strike_price.gte"), params.get("strike_price.lte")
        kind = params.get("contract_type")
        rows = [r for r in rows
                if (lo_e is None or r["details"]["expiration_date"] >= lo_e)
                and (hi_e is None or r["details"]["expiration_date"] <= hi_e)
                and (lo_k is None or r["details"]["strike_price"] >= float(lo_k))
                and (hi_k is None or r["details"]["strike_price"] <= float(hi_k))
                and (kind is None or r["details"]["contract_type"] == kind)]
        limit = min(int(params.get("limit", 10)), PAGE_MAX)
        offset = int(params.get("cursor", 0))
        body: dict[str, Any] = {"results": rows[offset : offset + limit], "status": "OK", "request_id": "bench"}
        if offset + limit < len(rows):
            body["next_url"] = f"{base}/v3/snapshot/options/{underlying}?" + urlencode(
                {**params, "cursor": offset + limit})
        return body

    def _by_ticker(self, ticker: str) -> dict[str, Any] | None:
        from engine.options.occ import parse_occ

        try:
            root = parse_occ(ticker).root
        except ValueError:
            return None
        if root not in self._index:
            self._index[root] = {r["details"]["ticker"]: r for r in self.chain(root)}
        return self._index[root].get(ticker)

    def _universal(self, tickers: list[str]) -> dict[str, Any]:
        results = []
        for t in tickers:
            found = self._by_ticker(t)
            if found is None:
                results.append({"error": "NOT_FOUND", "message": "Ticker not found.", "ticker": t})
                continue
            details = {k: v for k, v in found["details"].items() if k != "ticker"}
            results.append({**{k: v for k, v in found.items() if k not in ("details", "day")}, "details": details,
                            "session": {"volume": found["day"]["volume"]}, "ticker": t, "type": "options"})
        return {"results": results, "status": "OK", "request_id": "bench"}
