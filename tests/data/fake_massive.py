"""A local fake Massive (Polygon.io) REST server for tests: 127.0.0.1 only, started per test.

It answers, in this order:

1. 401 when the ``Authorization: Bearer`` key is not the expected one (the real client sends the key in
   that header), 403 for paths listed in ``forbidden``;
2. ``faults``: one-shot replies queued per path fragment (429 with or without Retry-After, 500, slow
   replies that outlast the client's read timeout, malformed JSON, ...), consumed in order;
3. the recorded responses in ``../shared/data/polygon/``: the file name is the request path with the
   query string after ``&`` instead of ``?``. The client adds parameters the recording lacks and orders
   them its own way, so a file matches when all of ITS parameters are in the request; the match with
   the most parameters wins (``tickers.json`` for page 1, ``tickers&cursor=....json`` for page 2). A path
   that is a folder with an ``index.json`` is answered by that file;
4. generated responses in the real shapes: a full-market grouped day from ``GroupedDayGenerator`` for
   any date (``empty_days`` answer like a holiday: no ``results``), and per-ticker daily aggregates;
5. 404 with a Polygon-style body.

Every request is kept in ``seen`` (path, parameters, whether the key was right).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo

from engine.bench.data import GroupedDayGenerator

NEW_YORK = ZoneInfo("America/New_York")
GROUPED = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(\d{4}-\d{2}-\d{2})$")
AGGS = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/1/day/(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})$")
CHAIN = re.compile(r"^/v3/snapshot/options/([^/]+)$")
TICKER = re.compile(r"^/v3/reference/tickers/([^/]+)$")
API_KEY = "test-key-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (longer than the read timeout = a timeout)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    authorised: bool
    status: int = 0


def ok(body: dict[str, Any] | list[Any]) -> Reply:
    return Reply(200, body)


def rate_limited(retry_after: float | None = None) -> Reply:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    return Reply(429, {"status": "ERROR", "error": "You've exceeded the maximum requests per minute"}, headers)


def server_error() -> Reply:
    return Reply(500, {"status": "ERROR", "error": "internal error"})


def malformed() -> Reply:
    return Reply(200, b'{"queryCount": 1, "results": [{"T": "AAA", "c": 1')  # truncated JSON


def slow(seconds: float) -> Reply:
    return Reply(200, b'{"status":"OK","results":[]}', delay=seconds)


class FakeMassive:
    def __init__(
        self,
        recorded: Path | None = None,
        grouped: GroupedDayGenerator | None = None,
        api_key: str = API_KEY,
        grouped_delay: float = 0.0,
    ) -> None:
        self.recorded = recorded
        self.grouped = grouped
        self.api_key = api_key
        self.grouped_delay = grouped_delay
        self.empty_days: set[str] = set()
        self.forbidden: set[str] = set()
        self.aggs: Callable[[str, date, date], list[dict[str, Any]]] | None = None
        self.faults: dict[str, deque[Reply]] = defaultdict(deque)
        self.fail_grouped_after: int | None = None  # every grouped request after this many: 500
        self._grouped_served = 0  # grouped requests let through to an answer
        self.routes: dict[str, Reply] = {}  # exact path -> reply (generated responses for one test)
        # underlying -> option snapshot results (``option_result``): served by /v3/snapshot/options/{u}
        # with Massive's filters and paging, and by the universal /v3/snapshot?ticker.any_of=...
        self.chains: dict[str, list[dict[str, Any]]] = {}
        self.tickers: dict[str, dict[str, Any]] = {}  # symbol -> v3/reference/tickers/{symbol} results
        self.dividends: list[dict[str, Any]] = []  # v3/reference/dividends results (filtered by ticker)
        self.seen: list[Seen] = []
        # called (in the server thread) with each request before it is answered: a test looks at the
        # client's state while the request is in flight (e.g. whether the database is locked)
        self.on_request: Callable[[Seen], None] | None = None
        self._lock = threading.Lock()
        self._index = _index(recorded) if recorded else {}
        self._server: ThreadingHTTPServer | None = None
        self.base = ""

    # --- control ------------------------------------------------------------------------------------

    def fault(self, fragment: str, *replies: Reply) -> None:
        """Queue one-shot replies for the next requests whose path contains ``fragment``."""
        with self._lock:
            self.faults[fragment].extend(replies)

    def grouped_dates(self, status: int | None = 200) -> list[str]:
        with self._lock:
            return [
                m.group(1)
                for s in self.seen
                if (m := GROUPED.match(s.path)) and (status is None or s.status == status)
            ]

    def count(self, fragment: str = "") -> int:
        with self._lock:
            return sum(1 for s in self.seen if fragment in s.path)

    def __enter__(self) -> FakeMassive:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                authorised = self.headers.get("Authorization") == f"Bearer {fake.api_key}"
                seen = Seen(path, params, authorised)
                with fake._lock:
                    fake.seen.append(seen)
                if fake.on_request is not None:
                    fake.on_request(seen)
                reply = fake._answer(seen)
                seen.status = reply.status
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.payload()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-massive", daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- answering ----------------------------------------------------------------------------------

    def _answer(self, seen: Seen) -> Reply:
        if not seen.authorised:
            return Reply(401, {"status": "ERROR", "request_id": "fake", "error": "Unknown API Key"})
        if any(seen.path.startswith(p) for p in self.forbidden):
            return Reply(
                403,
                {
                    "status": "NOT_AUTHORIZED",
                    "request_id": "fake",
                    "message": "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing",
                },
            )
        with self._lock:
            for fragment, queue in self.faults.items():
                if fragment in seen.path and queue:
                    return queue.popleft()
        if seen.path in self.routes:
            return self.routes[seen.path]
        chain = CHAIN.match(seen.path)
        if chain and chain.group(1) in self.chains:
            return self._chain_page(chain.group(1), seen.params)
        if seen.path == "/v3/snapshot" and self.chains and "ticker.any_of" in seen.params:
            return self._universal(seen.params)
        details = TICKER.match(seen.path)
        if details and details.group(1) in self.tickers:
            return Reply(200, {"results": self.tickers[details.group(1)], "status": "OK", "request_id": "fake"})
        if seen.path == "/v3/reference/dividends":  # a symbol with none listed answers an empty list
            rows = [d for d in self.dividends if d.get("ticker") == seen.params.get("ticker")]
            lo = seen.params.get("ex_dividend_date.gte", "")
            hi = seen.params.get("ex_dividend_date.lte", "9999")
            rows = [d for d in rows if lo <= d["ex_dividend_date"] <= hi]
            return Reply(200, {"results": rows, "status": "OK", "request_id": "fake"})
        grouped = GROUPED.match(seen.path)
        if grouped:
            # Decided and counted under one lock: with parallel workers, counting the answers already sent
            # let two requests in flight both see 8 of 9 and both be served (a 10th day stored).
            with self._lock:
                if self.fail_grouped_after is not None and self._grouped_served >= self.fail_grouped_after:
                    return server_error()
                self._grouped_served += 1
        recorded = self._recorded(seen)
        if recorded is not None:
            return Reply(200, recorded.read_bytes())
        if grouped and self.grouped is not None:
            day = grouped.group(1)
            if day in self.empty_days:
                return Reply(200, {"queryCount": 0, "resultsCount": 0, "adjusted": True, "status": "OK",
                                   "request_id": "fake"}, delay=self.grouped_delay)
            return Reply(200, self.grouped.body(date.fromisoformat(day)), delay=self.grouped_delay)
        aggs = AGGS.match(seen.path)
        if aggs and self.aggs is not None:
            ticker, start, end = aggs.group(1), date.fromisoformat(aggs.group(2)), date.fromisoformat(aggs.group(3))
            results = self.aggs(ticker, start, end)
            return Reply(200, {"ticker": ticker, "queryCount": len(results), "resultsCount": len(results),
                               "adjusted": True, "results": results, "status": "OK", "request_id": "fake",
                               "count": len(results)})
        return Reply(404, {"status": "NOT_FOUND", "request_id": "fake", "message": f"no fake for {seen.path}"})

    def _chain_page(self, underlying: str, params: dict[str, str]) -> Reply:
        """Massive's chain snapshot: filters (expiration_date / strike_price .gte/.lte, contract_type),
        ``limit`` per page (default 10, at most 250) and a ``next_url`` carrying the cursor and filters."""
        rows = self.chains[underlying]
        for key, field_, cmp in (
            ("expiration_date.gte", "expiration_date", lambda a, b: a >= b),
            ("expiration_date.lte", "expiration_date", lambda a, b: a <= b),
            ("strike_price.gte", "strike_price", lambda a, b: a >= float(b)),
            ("strike_price.lte", "strike_price", lambda a, b: a <= float(b)),
            ("contract_type", "contract_type", lambda a, b: a == b),
        ):
            if key in params:
                rows = [r for r in rows if cmp(r["details"][field_], params[key])]
        limit = min(int(params.get("limit", 10)), 250)
        offset = int(params.get("cursor", 0))
        body: dict[str, Any] = {"results": rows[offset : offset + limit], "status": "OK", "request_id": "fake"}
        if offset + limit < len(rows):
            query = "&".join(f"{k}={v}" for k, v in {**params, "cursor": offset + limit}.items())
            body["next_url"] = f"{self.base}/v3/snapshot/options/{underlying}?{query}"
        return Reply(200, body)

    def _universal(self, params: dict[str, str]) -> Reply:
        """``/v3/snapshot?ticker.any_of=O:...``: option results in the universal shape (``ticker`` at the
        top, ``session`` instead of ``day``), an error entry for unknown tickers (as recorded)."""
        wanted = params["ticker.any_of"].split(",")
        by_ticker = {r["details"]["ticker"]: r for rows in self.chains.values() for r in rows}
        results = []
        for t in wanted:
            r = by_ticker.get(t)
            if r is None:
                results.append({"error": "NOT_FOUND", "message": "Ticker not found.", "ticker": t})
                continue
            details = {k: v for k, v in r["details"].items() if k != "ticker"}
            results.append({**{k: v for k, v in r.items() if k not in ("details", "day")}, "details": details,
                            "session": {"volume": r["day"]["volume"]}, "ticker": t, "type": "options",
                            "market_status": "open"})
        return Reply(200, {"results": results, "status": "OK", "request_id": "fake"})

    def _recorded(self, seen: Seen) -> Path | None:
        candidates = self._index.get(seen.path.lstrip("/"), [])
        best: tuple[int, Path] | None = None
        for params, path in candidates:
            matches = all(seen.params.get(k) == v for k, v in params.items())
            if matches and (best is None or len(params) > best[0]):
                best = (len(params), path)
        return best[1] if best else None


def _index(root: Path) -> dict[str, list[tuple[dict[str, str], Path]]]:
    """request path (no leading slash) -> [(parameters in the file name, file)]."""
    index: dict[str, list[tuple[dict[str, str], Path]]] = defaultdict(list)
    for file in root.rglob("*.json"):
        rel = file.relative_to(root).as_posix()[: -len(".json")]
        if rel.endswith("/index"):
            index[rel[: -len("/index")]].append(({}, file))
            continue
        head, _, query = rel.partition("&")
        params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        index[unquote(head)].append((params, file))
    return index


def daily_aggs(ticker: str, start: date, end: date, price: float = 100.0) -> list[dict[str, Any]]:
    """Per-ticker daily aggregates for the NYSE sessions in [start, end] (``t`` = New York midnight)."""
    from engine.data import calendar

    out = []
    for i, d in enumerate(calendar.sessions(start, end)):
        day = d.astype(object)
        t = int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)
        c = round(price + i * 0.25, 2)
        out.append({"v": 1_000_000 + i, "vw": c, "o": c - 0.1, "c": c, "h": c + 0.5, "l": c - 0.5, "t": t, "n": 100})
    return out


def option_result(
    underlying: str, expiry: date, right: str, strike: float, *, bid: float, ask: float, delta: float,
    spot: float, quoted: datetime, iv: float = 0.3, open_interest: int = 2000, volume: int = 300,
    shares_per_contract: int = 100, root: str | None = None,
) -> dict[str, Any]:
    """One contract of ``/v3/snapshot/options/{underlying}`` in the recorded shape
    (``v3/snapshot/options/AAPL.json``); ``root`` differs from the underlying for adjusted contracts."""
    ticker = f"O:{root or underlying}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    ns = int(quoted.timestamp() * 1e9)
    return {
        "break_even_price": strike + ask,
        "day": {"change": 0.0, "change_percent": 0.0, "close": (bid + ask) / 2, "high": ask, "last_updated": ns,
                "low": bid, "open": bid, "previous_close": bid, "volume": volume, "vwap": (bid + ask) / 2},
        "details": {"contract_type": "call" if right == "C" else "put", "exercise_style": "american",
                    "expiration_date": expiry.isoformat(), "shares_per_contract": shares_per_contract,
                    "strike_price": strike, "ticker": ticker},
        "fmv": (bid + ask) / 2,
        "greeks": {"delta": delta, "gamma": 0.02, "theta": -0.03, "vega": 0.2},
        "implied_volatility": iv,
        "last_quote": {"ask": ask, "ask_size": 10, "bid": bid, "bid_size": 10, "last_updated": ns,
                       "midpoint": round((bid + ask) / 2, 4), "timeframe": "REAL-TIME"},
        "last_trade": {"price": (bid + ask) / 2, "sip_timestamp": ns, "size": 1, "conditions": [209],
                       "exchange": 309, "timeframe": "REAL-TIME"},
        "open_interest": open_interest,
        "underlying_asset": {"change_to_break_even": 0.0, "last_updated": ns, "price": spot, "ticker": underlying,
                             "timeframe": "REAL-TIME"},
    }
