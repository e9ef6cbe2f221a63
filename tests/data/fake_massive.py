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
        self.routes: dict[str, Reply] = {}  # exact path -> reply (generated responses for one test)
        self.seen: list[Seen] = []
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
        grouped = GROUPED.match(seen.path)
        if grouped and self.fail_grouped_after is not None:
            with self._lock:
                done = sum(1 for s in self.seen[:-1] if GROUPED.match(s.path) and s.status == 200)
            if done >= self.fail_grouped_after:
                return server_error()
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
