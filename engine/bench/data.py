"""`python -m engine bench data`: a full-market Massive backfill against a local fake server.

``bench_data()`` starts a fake Massive server on 127.0.0.1 that answers grouped-daily requests in the real
response shape (``v2/aggs/grouped/locale/us/market/stocks/2005-04-04&adjusted=true.json`` in the recorded
data: ``T v vw o c h l t n`` per ticker) for ``symbols`` deterministic tickers per day (about 2% of them
missing on any day), then, through the real ``massive`` client and ``MassiveMarketData``:

1. backfills ``days`` sessions into a fresh temporary store (``backfill_seconds``, ``requests_first_run``;
   the fake server renders each ~4 MB day in a process of its own, and the wall time includes waiting
   for it: ``server_seconds`` is its rendering time, ``client_cpu_seconds`` this process's CPU time);
2. measures the store on disk (``store_mb``) and a full panel load (``BarStore.load`` of every day,
   float32; ``load_seconds`` is the best of three);
3. deletes the bar store and its ``BarDay`` rows and backfills again with a fresh client: only the
   response cache can answer (``requests_second_run``, ``cache_hit_rate_second_run`` = 1 - requests the
   server saw / sessions wanted, counted by the server, so a bar-store answer can never pass for a hit);
4. runs the same backfill once more: every session is in the bar store (``requests_store_run``,
   ``requests_avoided_by_store_run``: requests avoided, not cache hits);
5. option chains (``engine.bench.chains``: 15,000 contracts per underlying, Massive's filters and
   250-contract pages): ``chain_requests_candidates`` for one candidate build, ``chain_requests_cycle``
   for a management cycle of 10 held two-leg positions, each beside ``..._before`` (the whole chain, as
   both read it before).

The rate limiter is disabled for the local server.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from engine.bench.common import table

__all__ = [
    "GroupedDayGenerator",
    "ServerState",
    "bench_data",
    "grouped_server",
    "grouped_server_process",
    "letter_tickers",
]

NEW_YORK = ZoneInfo("America/New_York")
GROUPED_PATH = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(\d{4}-\d{2}-\d{2})$")
BENCH_END = date(2025, 12, 31)
CHAIN_TODAY = date(2026, 1, 5)  # the chain benchmark's trading day (a Monday)
CHAIN_AT = datetime(2026, 1, 5, 15, 0, tzinfo=ZoneInfo("UTC"))
CYCLE_POSITIONS = 10


def letter_tickers(n: int) -> list[str]:
    """``n`` distinct tickers, sorted: A..Z, AA..ZZ, AAA..ZZZ, then four letters (like the real list)."""
    out: list[str] = []
    length = 1
    while len(out) < n:
        count = 26**length
        for i in range(min(count, n - len(out))):
            chars = []
            for _ in range(length):
                i, r = divmod(i, 26)
                chars.append(chr(65 + r))
            out.append("".join(reversed(chars)))
        length += 1
    return sorted(out)


def _tick(price: np.ndarray) -> np.ndarray:
    """Trade prices as the tape prints them: whole cents from $1 up, four decimals below (Reg NMS 612)."""
    return np.where(price >= 1.0, np.round(price, 2), np.round(price, 4))


class GroupedDayGenerator:
    """Deterministic full-market grouped-daily responses: same (seed, symbols, day), same bytes."""

    def __init__(self, n_symbols: int = 32_345, seed: int = 7, missing: float = 0.02) -> None:
        self.n_symbols, self.seed, self.missing = n_symbols, seed, missing
        self.tickers = letter_tickers(n_symbols)
        rng = np.random.default_rng([seed, n_symbols])
        self._base = np.exp(rng.uniform(np.log(2.0), np.log(500.0), n_symbols))
        self._vol = rng.uniform(0.01, 0.05, n_symbols)

    def arrays(self, day: date) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.n_symbols, day.toordinal()])
        drift = np.sin(day.toordinal() / 40.0 + np.arange(self.n_symbols) % 97) * 0.2
        close = _tick(self._base * np.exp(drift + rng.normal(0, 1, self.n_symbols) * self._vol))
        open_ = _tick(close * (1 + rng.normal(0, 0.5, self.n_symbols) * self._vol))
        high = _tick(np.maximum(open_, close) * (1 + rng.uniform(0, 1, self.n_symbols) * self._vol))
        low = _tick(np.minimum(open_, close) * (1 - rng.uniform(0, 1, self.n_symbols) * self._vol))
        volume = rng.integers(100, 20_000_000, self.n_symbols)
        present = rng.uniform(0, 1, self.n_symbols) >= self.missing
        return {"o": open_, "h": high, "l": low, "c": close, "v": volume, "present": present}

    def body(self, day: date) -> bytes:
        a = self.arrays(day)
        keep = np.flatnonzero(a["present"])
        close_ms = int(datetime(day.year, day.month, day.day, 16, tzinfo=NEW_YORK).timestamp() * 1000)
        vw = np.round((a["h"] + a["l"] + a["c"]) / 3, 4)
        trades = (a["v"] // 97 + 1).tolist()
        tickers, o, h, low, c, v, vwl = (
            self.tickers, a["o"].tolist(), a["h"].tolist(), a["l"].tolist(), a["c"].tolist(), a["v"].tolist(),
            vw.tolist(),
        )
        rows = ",".join(
            f'{{"T":"{tickers[i]}","v":{v[i]},"vw":{vwl[i]},"o":{o[i]},"c":{c[i]},"h":{h[i]},"l":{low[i]},'
            f'"t":{close_ms},"n":{trades[i]}}}'
            for i in keep.tolist()
        )
        n = len(keep)
        return (
            f'{{"queryCount":{n},"resultsCount":{n},"adjusted":true,"results":[{rows}],'
            f'"status":"OK","request_id":"bench{day:%Y%m%d}","count":{n}}}'
        ).encode()


class ServerState:
    """Request count and render time of a fake server, shared with its process when it has its own."""

    def __init__(self, requests: Any = None, render_seconds: Any = None) -> None:
        self._requests = requests if requests is not None else _Box(0)
        self._render = render_seconds if render_seconds is not None else _Box(0.0)
        self._lock = threading.Lock()
        self.base = ""

    @property
    def requests(self) -> int:
        return int(self._requests.value)

    @property
    def render_seconds(self) -> float:
        return float(self._render.value)

    def count(self, render_seconds: float = 0.0) -> None:
        with self._lock:
            self._requests.value += 1
            self._render.value += render_seconds


class _Box:
    def __init__(self, value: float) -> None:
        self.value = value


def _make_server(generator: GroupedDayGenerator, state: ServerState) -> ThreadingHTTPServer:
    from engine.bench.chains import ChainGenerator

    chains = ChainGenerator(CHAIN_TODAY, CHAIN_AT)
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            match = GROUPED_PATH.match(path)
            if not match:
                state.count()
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                body = chains.answer(path, query, base)
                if body is None:
                    self._send(404, b'{"status":"NOT_FOUND","message":"bench server: grouped daily and chains"}')
                else:
                    self._send(200, body)
                return
            t0 = time.perf_counter()
            body = generator.body(date.fromisoformat(match.group(1)))
            state.count(time.perf_counter() - t0)
            self._send(200, body)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@contextmanager
def grouped_server(generator: GroupedDayGenerator) -> Iterator[ServerState]:
    """A fake Massive server answering grouped-daily requests in a thread of this process."""
    state = ServerState()
    server = _make_server(generator, state)
    thread = threading.Thread(target=server.serve_forever, name="fake-massive-bench", daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _serve_in_process(n_symbols: int, seed: int, ports: Any, requests: Any, render: Any, stop: Any) -> None:
    state = ServerState(requests, render)
    server = _make_server(GroupedDayGenerator(n_symbols, seed), state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ports.put(server.server_address[1])
    stop.wait()
    server.shutdown()
    server.server_close()


@contextmanager
def grouped_server_process(n_symbols: int, seed: int) -> Iterator[ServerState]:
    """The same server in a process of its own, so rendering ~4 MB of JSON per day does not compete with
    the client for this process's GIL: the backfill time then measures the client."""
    ctx = multiprocessing.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    requests, render = ctx.Value("q", 0), ctx.Value("d", 0.0)
    proc = ctx.Process(
        target=_serve_in_process, args=(n_symbols, seed, ports, requests, render, stop), daemon=True
    )
    proc.start()
    try:
        state = ServerState(requests, render)
        state.base = f"http://127.0.0.1:{ports.get(timeout=60)}"
        yield state
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def _chain_requests(state: ServerState) -> dict[str, Any]:
    """Option-chain requests per underlying: one candidate build (its expiry window, strike band and
    contract type, as ``build_candidates`` asks) and one management cycle of ``CYCLE_POSITIONS`` held
    two-leg positions (their own contracts, as ``leg_quotes`` asks), against reading the whole chain
    (what both did before; measured once, and x positions for the cycle)."""
    from engine.data.massive import MassiveMarketData
    from engine.data.ratelimit import Backoff, RateLimiter
    from engine.options.chainrequest import candidate_request, fetch_chain
    from engine.options.selection import OptionParams

    market = MassiveMarketData("bench-key", base=state.base, limiter=RateLimiter.unlimited(),
                               backoff=Backoff.none())
    before = state.requests
    full = market.option_chain("SPY", CHAIN_AT)
    full_pages = state.requests - before

    out: dict[str, Any] = {"chain_contracts": len(full), "chain_requests_full_chain": full_pages}
    for label, kinds in (("candidates", ["long_call"]), ("candidates_calls_and_puts", ["call_debit_spread",
                                                                                      "bull_put_credit_spread"])):
        request = candidate_request(500.0, 7.5, CHAIN_TODAY, OptionParams(), kinds)
        before = state.requests
        band = fetch_chain(market, "SPY", CHAIN_AT, request)
        out[f"chain_requests_{label}"] = state.requests - before
        out[f"chain_contracts_{label}"] = len(band)
    out["chain_requests_candidates_before"] = full_pages

    calls = full[(full["right"] == "C") & (full["dte"] >= 28)].sort_values(["dte", "strike"])
    legs = [calls.iloc[i]["occ_symbol"] for i in range(0, 2 * CYCLE_POSITIONS)]
    before = state.requests
    for i in range(CYCLE_POSITIONS):
        quotes = market.option_quotes(legs[2 * i : 2 * i + 2], CHAIN_AT)
        assert len(quotes) == 2, quotes
    out["chain_requests_cycle"] = state.requests - before
    out["chain_requests_cycle_before"] = CYCLE_POSITIONS * full_pages
    out["cycle_positions"] = CYCLE_POSITIONS
    return out


def bench_data(
    symbols: int = 32_345,
    days: int = 300,
    seed: int = 7,
    workers: int = 4,
    server_process: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    from sqlalchemy import delete

    from engine.data.barstore import BarStore
    from engine.data.cache import DataCache
    from engine.data.massive import MassiveMarketData
    from engine.data.ratelimit import Backoff, RateLimiter
    from engine.db import make_engine, migrate, session_scope
    from engine.models import BarDay

    root = Path(tempfile.mkdtemp(prefix="qm-bench-data-"))
    generator = GroupedDayGenerator(symbols, seed)
    end = BENCH_END
    now = datetime.combine(end + timedelta(days=10), datetime.min.time(), NEW_YORK).replace(hour=20)
    url = f"sqlite:///{root / 'bench.db'}"
    try:
        migrate(url)
        db = make_engine(url)

        def market() -> MassiveMarketData:
            return MassiveMarketData(
                "bench-key",
                base=state.base,
                store=BarStore(root / "bars", "massive"),
                db=db,
                cache=DataCache(root / "cache"),
                limiter=RateLimiter.unlimited(),
                backoff=Backoff.none(),
                workers=workers,
                now=lambda: now,
            )

        serve = grouped_server_process(symbols, seed) if server_process else grouped_server(generator)
        with serve as state:
            first = market()
            t0, cpu0 = time.perf_counter(), time.process_time()
            report1 = first.backfill(days=days, end=end)
            backfill_s, client_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
            requests_first = state.requests
            render_s = state.render_seconds
            store = BarStore(root / "bars", "massive")
            store_mb = store.size_bytes() / 1e6
            loads = []
            for _ in range(3):
                t0 = time.perf_counter()
                panel = store.load(dtype=np.float32)
                loads.append(time.perf_counter() - t0)
            bars = int(np.count_nonzero(~np.isnan(panel.close)))
            shape = panel.close.shape
            del panel

            # Second run: a fresh client and an empty bar store, so only the response cache can answer;
            # its hit rate is counted by the server (sessions it was NOT asked for / sessions wanted).
            shutil.rmtree(root / "bars")
            with session_scope(db) as session:
                session.exec(delete(BarDay))  # type: ignore[call-overload]
            second = market()
            before = state.requests
            t0 = time.perf_counter()
            report2 = second.backfill(days=days, end=end)
            second_s = time.perf_counter() - t0
            requests_second = state.requests - before
            cache_mb = DataCache(root / "cache").volume_bytes() / 1e6

            # Store run: everything is in the bar store; those are requests avoided, not cache hits.
            third = market()
            before = state.requests
            t0 = time.perf_counter()
            report3 = third.backfill(days=days, end=end)
            store_run_s = time.perf_counter() - t0
            requests_store_run = state.requests - before

            chain_counts = _chain_requests(state)

        result: dict[str, Any] = {
            "symbols": symbols,
            "days": days,
            "sessions": f"{report1.first}..{report1.last}",
            "backfill_seconds": round(backfill_s, 2),
            "client_cpu_seconds": round(client_cpu_s, 2),
            "server_seconds": round(render_s, 2),
            "requests_first_run": requests_first,
            "bars_stored": report1.bars_stored,
            "store_mb": round(store_mb, 1),
            "load_seconds": round(min(loads), 3),
            "panel_shape": list(shape),
            "panel_bars": bars,
            "second_run_seconds": round(second_s, 3),
            "requests_second_run": requests_second,
            "cache_hit_rate_second_run": round(1 - requests_second / report2.sessions_wanted, 4),
            "cache_hits_second_run": report2.sessions_from_cache,
            "store_run_seconds": round(store_run_s, 3),
            "requests_store_run": requests_store_run,
            "requests_avoided_by_store_run": report3.sessions_in_store,
            "cache_mb": round(cache_mb, 1),
            **chain_counts,
        }
        result["targets_met"] = {
            "load_seconds<=1": result["load_seconds"] <= 1.0,
            "cache_hit_rate_second_run>=0.95": result["cache_hit_rate_second_run"] >= 0.95,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not quiet:
        print(table([(k, str(v)) for k, v in result.items()], f"massive backfill: {symbols:,} symbols x {days} days"))
        print(json.dumps(result))
    return result
