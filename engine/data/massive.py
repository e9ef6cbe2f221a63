"""Massive (formerly Polygon.io) market data on the official ``massive`` client.

History is full-market daily bars, ONE request per trading day (``get_grouped_daily_aggs``), kept in the
bar store (``BarStore(settings.bar_store_dir, "massive")``). A session is never requested twice:

- a session is *done* when the bar store holds it, or when a ``BarDay`` row records it as empty
  (``symbols == 0``: the provider had no bars for an NYSE session, e.g. an unscheduled closure);
- an empty answer for a session less than ``SETTLE_DAYS`` old is not recorded: the provider may simply
  not have published it yet, so it is asked again next time;
- per-day atomicity: a fetched day goes first to the response cache (diskcache, a few ms), then, in
  batches (a month at most, or every ``flush_seconds``), to the bar store, and only after the store write
  to ``BarDay``. An exception flushes what was fetched; a SIGKILL loses at most the unflushed batch from
  the store, and those days come back from the cache without a request on the next run. A day found in
  the store without its ``BarDay`` row (killed between the two writes) gets the row on the next run.

Every HTTP request passes the plan's rate limiter (``engine.data.ratelimit``) and is counted. The client
retries 429/5xx/timeouts itself (urllib3 ``Retry``, honouring ``Retry-After``); ``Backoff`` adds a slower
outer retry, and every failure surfaces as a ``DataSourceError`` with a readable message. Responses are
requested ``raw`` and decoded here: the client turns a malformed JSON body into an empty result without
telling anyone, which for a grouped day would look exactly like a holiday.

The API key goes to the client only (it sends it as a Bearer header, never in a URL); no message, log
line or database row contains it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
from massive import RESTClient
from massive.exceptions import BadResponse
from sqlalchemy.engine import Engine
from sqlmodel import select
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from engine.config import Settings, SettingsError
from engine.data import calendar
from engine.data.barstore import SCHEMA, BarStore
from engine.data.cache import Counters, DataCache, data_run, table_from_bytes, table_to_bytes
from engine.data.panel import Panel
from engine.data.ports import UNIVERSE_COLUMNS
from engine.data.ratelimit import (
    Backoff,
    DataSourceAuthError,
    DataSourceError,
    MalformedResponse,
    RateLimiter,
)
from engine.models import BarDay, DataRun

__all__ = [
    "DEFAULT_BACKFILL_DAYS",
    "MAX_BACKFILL_DAYS",
    "SOURCE",
    "FillReport",
    "MassiveKeyMissing",
    "MassiveMarketData",
    "SplitReport",
    "default_retry",
    "grouped_to_table",
    "last_completed_session",
    "universe_frame",
]

log = logging.getLogger(__name__)

SOURCE = "massive"
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
DEFAULT_BASE_URL = "https://api.massive.com"
DEFAULT_BACKFILL_DAYS = 504  # two years of sessions
MAX_BACKFILL_DAYS = 15 * 252  # fifteen years
SETTLE_DAYS = 3  # an empty or fresh day younger than this (calendar days) may still change upstream
PUBLISH_DELAY = timedelta(minutes=30)  # grouped bars of a session are asked for this long after its close
UNIVERSE_TTL = 24 * 3600.0
GROUPED_TAG_PREFIX = "massive:grouped:"  # + fetch date; used to evict pre-split cached days
AGGS_PAGE_LIMIT = 50_000

# Ticker types (v3/reference/tickers/types) the strategy may trade; every other type (warrants, rights,
# units, preferreds, bonds, structured products, ADR warrants/rights, funds, baskets, liquidating trusts)
# and every OTC listing is kept in the universe but marked not tradable.
TRADABLE_TYPES = frozenset({"CS", "ETF", "ETN", "ETV", "ETS", "ADRC", "OS", "GDR", "NYRS"})


class MassiveKeyMissing(SettingsError, DataSourceAuthError):
    """No API key configured (a settings problem, so the CLI reports it like one)."""


# --- parsing (pure functions, tested on the recorded responses) ------------------------------------


def grouped_to_table(body: dict[str, Any], day: date) -> pa.Table:
    """A grouped-daily response as bar-store rows for ``day`` (the requested session).

    The row date is the requested session, not the ``t`` field: ``t`` is the end of the aggregate window
    and recorded responses mix days. Rows without a ticker or a close are dropped; a ticker listed twice
    keeps its last row.
    """
    if not isinstance(body, dict):
        raise MalformedResponse(f"grouped daily bars {day}: expected a JSON object, got {type(body).__name__}")
    results = body.get("results") or []
    if not isinstance(results, list):
        raise MalformedResponse(f"grouped daily bars {day}: 'results' is not a list")
    if not results:
        return SCHEMA.empty_table()

    def column(key: str) -> np.ndarray:
        return np.array([_number(r.get(key)) for r in results], dtype=np.float64)

    symbols = [r.get("T") for r in results]
    table = pa.table(
        {
            "date": pa.array(np.full(len(results), np.datetime64(day, "D")), pa.date32()),
            "symbol": pa.array(symbols, pa.string()),
            "open": column("o"),
            "high": column("h"),
            "low": column("l"),
            "close": column("c"),
            "volume": column("v"),
        },
        schema=SCHEMA,
    )
    keep = np.array([isinstance(s, str) and s != "" for s in symbols]) & np.isfinite(table["close"].to_numpy())
    if not keep.all():
        table = table.filter(pa.array(keep))
    if len(set(table["symbol"].to_pylist())) != table.num_rows:
        frame = table.to_pandas().drop_duplicates("symbol", keep="last")
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    return table


def aggs_to_table(results: Iterable[dict[str, Any]], symbol: str) -> pa.Table:
    """Per-ticker daily aggregates (``list_aggs``) as bar-store rows; ``t`` is the New York midnight
    that starts the bar's day."""
    rows = [
        r for r in results if isinstance(r, dict) and r.get("t") is not None and np.isfinite(_number(r.get("c")))
    ]
    if not rows:
        return SCHEMA.empty_table()
    days = (
        pd.to_datetime(pd.Series([r["t"] for r in rows], dtype="int64"), unit="ms", utc=True)
        .dt.tz_convert(NEW_YORK)
        .dt.date
    )
    frame = pd.DataFrame(
        {
            "date": days,
            "symbol": symbol,
            **{name: [_number(r.get(key)) for r in rows] for name, key in _OHLCV.items()},
        }
    ).drop_duplicates("date", keep="last")
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


_OHLCV = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def universe_frame(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """``v3/reference/tickers`` results as a universe frame (UNIVERSE_COLUMNS)."""
    rows = []
    for r in results:
        symbol = r.get("ticker")
        if not symbol:
            continue
        market = str(r.get("market") or "stocks").lower()
        kind = str(r.get("type") or ("OTC" if market == "otc" else "")).upper()
        rows.append(
            {
                "symbol": symbol,
                "name": r.get("name") or "",
                "sector": "",  # not in the tickers listing (ticker details' SIC code would need one call per symbol)
                "type": kind,
                "exchange": r.get("primary_exchange") or "",
                "currency": str(r.get("currency_name") or "usd").upper(),
                "active": bool(r.get("active", True)),
                "list_date": pd.to_datetime(r.get("list_date"), errors="coerce") if r.get("list_date") else pd.NaT,
                "tradable": kind in TRADABLE_TYPES and market != "otc",
            }
        )
    frame = pd.DataFrame(rows, columns=list(UNIVERSE_COLUMNS))
    frame["list_date"] = pd.to_datetime(frame["list_date"])
    frame["active"] = frame["active"].astype(bool)
    frame["tradable"] = frame["tradable"].astype(bool)
    return frame.drop_duplicates("symbol", keep="first").reset_index(drop=True)


def snapshot_quotes(tickers: Iterable[dict[str, Any]], symbols: Sequence[str]) -> pd.DataFrame:
    """Whole-market snapshot rows as quotes for ``symbols`` (request order; NaN where unknown).

    bid/ask from ``lastQuote`` (p = bid, P = ask; 0 means no quote), last from ``lastTrade`` (falling back
    to the minute bar, the day bar, the previous close), time = the newer of the quote and the trade.
    """
    by_symbol = {t.get("ticker"): t for t in tickers if isinstance(t, dict)}
    rows = []
    for sym in symbols:
        snap = by_symbol.get(sym)
        if snap is None:
            rows.append((sym, np.nan, np.nan, np.nan, pd.NaT))
            continue
        quote = snap.get("lastQuote") or {}
        trade = snap.get("lastTrade") or {}
        bid, ask = _positive(quote.get("p")), _positive(quote.get("P"))
        last = _positive(trade.get("p"))
        for fallback in ("min", "day", "prevDay"):
            if last != last:
                last = _positive((snap.get(fallback) or {}).get("c"))
        stamps = [s for s in (quote.get("t"), trade.get("t"), snap.get("updated")) if isinstance(s, int) and s > 0]
        when = pd.Timestamp(max(stamps[:2] or stamps), unit="ns", tz="UTC") if stamps else pd.NaT
        rows.append((sym, bid, ask, last, when))
    frame = pd.DataFrame(rows, columns=["symbol", "bid", "ask", "last", "time"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _positive(value: Any) -> float:
    number = _number(value)
    return number if number > 0 else float("nan")


def last_completed_session(now: datetime) -> date:
    """The newest session whose grouped daily bars should be published at ``now`` (tz-aware)."""
    return calendar.last_completed_session(now, PUBLISH_DELAY)


def default_retry(total: int = 4, backoff_factor: float = 2.0, backoff_max: float = 60.0) -> Retry:
    """urllib3 retries for GETs: 429 and 5xx (honouring Retry-After up to 2 minutes), timeouts and broken
    connections. 2, 4, 8 s between attempts by default; the outer ``Backoff`` waits longer still."""
    return Retry(
        total=total,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        respect_retry_after_header=True,
        retry_after_max=120,
        raise_on_status=True,
    )


# --- reports --------------------------------------------------------------------------------------


@dataclass
class FillReport:
    kind: str
    sessions_wanted: int = 0
    sessions_in_store: int = 0  # answered by the bar store (or recorded empty): no request
    sessions_from_cache: int = 0  # answered by the response cache: no request
    sessions_requested: int = 0
    empty_sessions_recorded: int = 0
    not_yet_published: list[str] = field(default_factory=list)
    days_stored: int = 0
    bars_stored: int = 0
    requests: int = 0
    seconds: float = 0.0
    first: str | None = None
    last: str | None = None

    @property
    def hit_rate(self) -> float:
        """Sessions answered without a request / sessions wanted (1.0 when nothing was wanted)."""
        if not self.sessions_wanted:
            return 1.0
        return (self.sessions_in_store + self.sessions_from_cache) / self.sessions_wanted

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": round(self.hit_rate, 4)}


@dataclass
class SplitReport:
    splits_seen: int = 0
    symbols_refetched: list[str] = field(default_factory=list)
    bars_written: int = 0
    cache_days_evicted: int = 0


# --- the adapter ------------------------------------------------------------------------------------


class MassiveMarketData:
    """MarketData on Massive. Construct with ``from_settings``; tests pass ``base=`` a local server."""

    name = SOURCE

    def __init__(
        self,
        api_key: str,
        *,
        base: str = DEFAULT_BASE_URL,
        store: BarStore | None = None,
        db: Engine | None = None,
        cache: DataCache | None = None,
        limiter: RateLimiter | None = None,
        backoff: Backoff | None = None,
        retry: Retry | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        workers: int = 1,
        adjusted: bool = True,
        now: Callable[[], datetime] | None = None,
        flush_days: int = 23,
        flush_seconds: float = 60.0,
    ) -> None:
        if not api_key or not api_key.strip():
            raise MassiveKeyMissing("Massive market data needs an API key: set QM_MASSIVE_API_KEY")
        self._secret = api_key
        self.base = base.rstrip("/")
        self.store, self.db, self.cache = store, db, cache
        self.limiter = limiter or RateLimiter.unlimited()
        self.backoff = backoff or Backoff(requests_per_minute=self.limiter.limit)
        self.retry = retry or default_retry()
        self.workers = max(1, int(workers))
        self.adjusted = adjusted
        self._now = now or (lambda: datetime.now(NEW_YORK))
        self.flush_days, self.flush_seconds = flush_days, flush_seconds
        self._lock = threading.Lock()
        self._local = threading.local()
        self._requests = 0
        self._store_hits = 0  # sessions answered by the bar store
        self._uncached_misses = 0  # lookups that went to the API without a cache (no cache configured)
        self._rest = RESTClient(
            api_key=api_key,
            base=self.base,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=self.retry.total if isinstance(self.retry.total, int) else 3,
            pagination=True,
            connection_pool_kw={"retries": self.retry},
            maxsize=max(10, self.workers),
        )
        self._hook_requests()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MassiveMarketData:
        key = settings.massive_api_key.get_secret_value().strip() if settings.massive_api_key else ""
        if not key:
            raise MassiveKeyMissing(
                "data_source=massive needs an API key: set QM_MASSIVE_API_KEY (environment, .env or "
                ".streamlit/secrets.toml); get one at massive.com"
            )
        from engine.db import get_engine

        rpm = settings.massive_requests_per_minute
        options: dict[str, Any] = {
            "base": settings.massive_base_url,
            "store": BarStore(settings.bar_store_dir, SOURCE),
            "db": get_engine(settings.db_url),
            "cache": DataCache(settings.cache_dir),
            "limiter": RateLimiter.per_minute(rpm),
            # Free plan (a request every 12 s): one at a time. Paid plans: overlap network and parsing.
            "workers": 1 if rpm <= 60 else 4,
        }
        options.update(overrides)
        return cls(key, **options)

    def __repr__(self) -> str:  # never shows the key
        return f"MassiveMarketData(base={self.base!r}, limit={self.limiter.limit}/min)"

    # --- requests ---------------------------------------------------------------------------------

    def _hook_requests(self) -> None:
        """Every HTTP exchange of the client (first pages and next_url pages alike) waits for the rate
        limiter, is counted, and leaves its status code for error messages (BadResponse has only the body)."""
        pool = self._rest.client
        send = pool.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.limiter.acquire()
            self._local.status = None
            try:
                resp = send(method, url, *args, **kwargs)
            except MaxRetryError:
                with self._lock:
                    self._requests += 1 + (self.retry.total if isinstance(self.retry.total, int) else 0)
                raise
            retried = len(resp.retries.history) if getattr(resp, "retries", None) is not None else 0
            with self._lock:
                self._requests += 1 + retried
            self._local.status = resp.status
            return resp

        pool.request = request  # type: ignore[method-assign]

    def counters(self) -> Counters:
        with self._lock:
            own = Counters(self._requests, self._store_hits, self._uncached_misses)
        if self.cache is not None:
            own = own + Counters(0, self.cache.stats.cache_hits, self.cache.stats.cache_misses)
        return own

    @property
    def requests_made(self) -> int:
        with self._lock:
            return self._requests

    def _call(self, what: str, send: Callable[[], Any]) -> dict[str, Any]:
        """One request (with the outer backoff) decoded strictly as a JSON object."""

        def once() -> dict[str, Any]:
            try:
                resp = send()
            except BadResponse as exc:
                raise self._bad_response(what, getattr(self._local, "status", None), str(exc)) from None
            return _decode(what, resp)

        return self.backoff.call(once, what)

    def _bad_response(self, what: str, status: int | None, body: str) -> DataSourceError:
        server = _server_message(body)
        server = server.replace(self._secret, "***") if self._secret else server
        code = f"HTTP {status}" if status else "an error response"
        if status in (401, 403) or "NOT_AUTHORIZED" in body or "api key" in body.lower():
            return DataSourceAuthError(
                f"{what}: Massive refused the request ({code}): bad or unauthorised API key, or a plan "
                f"that does not include this data. Server said: {server}. Check QM_MASSIVE_API_KEY and "
                "the plan at massive.com/dashboard."
            )
        if status == 404:
            return DataSourceError(f"{what}: not found ({code}): {server}")
        return DataSourceError(f"{what}: {code}: {server}")

    def _pages(self, what: str, first: Callable[[], Any], result_key: str = "results") -> Iterator[list[Any]]:
        """Result lists page by page, following ``next_url`` the way the client does (path + query on our
        base; the key travels in the header)."""
        body = self._call(what, first)
        seen: set[str] = set()
        page = 1
        while True:
            results = body.get(result_key) or []
            if not isinstance(results, list):
                raise MalformedResponse(f"{what}: '{result_key}' is not a list (page {page})")
            yield results
            next_url = body.get("next_url")
            if not next_url:
                return
            if next_url in seen:
                raise MalformedResponse(f"{what}: next_url repeats on page {page}; stopping")
            seen.add(next_url)
            parsed = urlparse(next_url)
            path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
            page += 1
            body = self._call(
                f"{what} (page {page})",
                lambda path=path: self._rest._get(path=path, params={}, raw=True),  # type: ignore[misc]
            )

    # --- universe ---------------------------------------------------------------------------------

    def universe(self) -> pd.DataFrame:
        """All active US stock tickers (every page of ``list_tickers``), cached for a day."""
        key = (SOURCE, "universe", self.base)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        else:
            self._count_uncached_miss()
        results: list[dict[str, Any]] = []
        for page in self._pages(
            "ticker universe",
            lambda: self._rest.list_tickers(market="stocks", active=True, limit=1000, raw=True),
        ):
            results.extend(page)
        frame = universe_frame(results)
        if self.cache is not None:
            self.cache.set(key, frame, expire=UNIVERSE_TTL, tag="reference")
        return frame

    def option_contracts(self, underlying: str | None = None, as_of: date | None = None) -> pd.DataFrame:
        """Listed option contracts (reference data, every page of ``list_options_contracts``)."""
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"option contracts {underlying or 'all'}",
            lambda: self._rest.list_options_contracts(
                underlying_ticker=underlying, as_of=as_of.isoformat() if as_of else None, limit=1000, raw=True
            ),
        ):
            results.extend(page)
        columns = [
            "ticker", "underlying_ticker", "contract_type", "expiration_date", "strike_price",
            "shares_per_contract", "exercise_style", "primary_exchange",
        ]
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in results], columns=columns)
        frame["expiration_date"] = pd.to_datetime(frame["expiration_date"]).dt.date
        return frame

    # --- daily bars -------------------------------------------------------------------------------

    def daily_bars(
        self, start: date, end: date, symbols: Sequence[str] | None = None, dtype: type = np.float64
    ) -> Panel:
        """Bars for the sessions in [start, end] from the store, fetching the sessions it lacks first."""
        store = self._store(None)
        last = min(end, last_completed_session(self._now()))
        if start <= last:
            wanted = calendar.sessions(start, last)
            if len(wanted) and len(self._missing(store, wanted)):
                self._fill(store, wanted, "daily_bars", None)
        return store.load(start, end, symbols, dtype=dtype)

    def backfill(
        self,
        store: BarStore | None = None,
        days: int = DEFAULT_BACKFILL_DAYS,
        progress: Callable[[int, int], None] | None = None,
        end: date | None = None,
    ) -> FillReport:
        """Full-market daily bars for the ``days`` sessions ending at ``end`` (default: the last completed
        session), one request per session not yet stored."""
        if not 1 <= days <= MAX_BACKFILL_DAYS:
            raise ValueError(f"backfill days must be 1..{MAX_BACKFILL_DAYS} (15 years), got {days}")
        end = end or last_completed_session(self._now())
        return self._fill(self._store(store), calendar.sessions_back(end, days), "backfill", progress)

    def update(
        self,
        store: BarStore | None = None,
        progress: Callable[[int, int], None] | None = None,
        splits: bool = True,
    ) -> FillReport:
        """The sessions after the newest stored one up to the last completed session (a first update
        backfills the default two years), then a split check since the previous one."""
        store = self._store(store)
        newest = self._newest_done(store)
        if newest is None:
            return self.backfill(store, progress=progress)
        last = last_completed_session(self._now())
        wanted = calendar.sessions(calendar.next_session(newest), last) if newest < last else _no_days()
        report = self._fill(store, wanted, "update", progress)
        if splits:
            self.check_splits(store, since=self._split_check_start(store))
        return report

    def _store(self, store: BarStore | None) -> BarStore:
        store = store or self.store
        if store is None:
            raise ValueError("no bar store: pass store= or construct MassiveMarketData with store=")
        return store

    def _fill(
        self, store: BarStore, wanted: np.ndarray, kind: str, progress: Callable[[int, int], None] | None
    ) -> FillReport:
        started = time.perf_counter()
        report = FillReport(kind=kind, sessions_wanted=len(wanted))
        if len(wanted):
            report.first, report.last = str(wanted[0]), str(wanted[-1])
        with data_run(self.db, kind, SOURCE, self.counters) as run:
            self._reconcile(store, wanted)
            missing = [d.astype(object) for d in self._missing(store, wanted)]
            report.sessions_in_store = len(wanted) - len(missing)
            with self._lock:
                self._store_hits += report.sessions_in_store
            if len(missing) > 50 and self.limiter.limit is not None and self.limiter.limit < 60:
                minutes = len(missing) / self.limiter.limit
                log.warning("%d sessions to fetch at %d requests/min: about %.0f minutes", len(missing),
                            self.limiter.limit, minutes)
            writer = _DayWriter(self, store, report)
            if progress and missing:
                progress(0, len(missing))
            try:
                for i, (day, table, from_cache) in enumerate(self._days(missing), start=1):
                    if from_cache:
                        report.sessions_from_cache += 1
                    else:
                        report.sessions_requested += 1
                    writer.add(day, table)
                    if progress:
                        progress(i, len(missing))
            finally:
                writer.flush()
                report.seconds = round(time.perf_counter() - started, 3)
                run.days_stored = report.days_stored
                run.detail.update(report.as_dict())
        report.requests = run.counters.requests
        return report

    def _days(self, days: list[date]) -> Iterator[tuple[date, pa.Table, bool]]:
        """(day, bars, came from cache) in ``days`` order; with workers > 1 up to 2 x workers requests are
        in flight while earlier days are written."""
        if self.workers <= 1:
            for d in days:
                yield (d, *self._day(d))
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="massive")
        pending: deque[tuple[date, Future[tuple[pa.Table, bool]]]] = deque()
        upcoming = iter(days)
        try:
            for d in upcoming:
                pending.append((d, pool.submit(self._day, d)))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                d, fut = pending.popleft()
                table, from_cache = fut.result()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._day, nxt)))
                yield d, table, from_cache
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _day(self, day: date) -> tuple[pa.Table, bool]:
        key = (SOURCE, "grouped", day.isoformat(), self.adjusted)
        if self.cache is not None:
            data = self.cache.get(key)
            if data is not None:
                return table_from_bytes(data), True
        else:
            self._count_uncached_miss()
        body = self._call(
            f"grouped daily bars {day}",
            lambda: self._rest.get_grouped_daily_aggs(day.isoformat(), adjusted=self.adjusted, raw=True),
        )
        table = grouped_to_table(body, day)
        if self.cache is not None and self._settled(day):
            self._cache_grouped(key, table)
        return table, False

    def _cache_grouped(self, key: tuple[Any, ...], table: pa.Table) -> None:
        assert self.cache is not None
        fetched = self._now().astimezone(NEW_YORK).date().isoformat()
        self.cache.set(key, table_to_bytes(table), tag=GROUPED_TAG_PREFIX + fetched)
        with self._lock:
            index_key = (SOURCE, "grouped-fetch-dates")
            dates = set(self.cache.peek(index_key, set()))  # index, not a counted lookup
            if fetched not in dates:
                self.cache.set(index_key, dates | {fetched})

    def _count_uncached_miss(self) -> None:
        with self._lock:
            self._uncached_misses += 1

    def _settled(self, day: date) -> bool:
        return (self._now().astimezone(NEW_YORK).date() - day).days >= SETTLE_DAYS

    # --- what is stored ---------------------------------------------------------------------------

    def _bar_days(self, start: date | None = None, end: date | None = None) -> list[BarDay]:
        if self.db is None:
            return []
        from engine.db import session_scope

        with session_scope(self.db) as session:
            query = select(BarDay).where(BarDay.source == SOURCE)
            if start is not None:
                query = query.where(BarDay.trade_date >= start)
            if end is not None:
                query = query.where(BarDay.trade_date <= end)
            return list(session.exec(query).all())

    def _missing(self, store: BarStore, wanted: np.ndarray) -> np.ndarray:
        if not len(wanted):
            return wanted
        lo, hi = wanted[0].astype(object), wanted[-1].astype(object)
        have = store.stored_dates(lo, hi)
        empty = np.array([b.trade_date for b in self._bar_days(lo, hi) if b.symbols == 0], dtype="datetime64[D]")
        return np.setdiff1d(wanted, np.union1d(have, empty))

    def _reconcile(self, store: BarStore, wanted: np.ndarray) -> None:
        """Give a ``BarDay`` row to every stored day in range that lacks one (a run killed between the
        store write and the row)."""
        if self.db is None or not len(wanted):
            return
        lo, hi = wanted[0].astype(object), wanted[-1].astype(object)
        have = store.stored_dates(lo, hi)
        recorded = np.array([b.trade_date for b in self._bar_days(lo, hi)], dtype="datetime64[D]")
        orphans = np.setdiff1d(have, recorded)
        if not len(orphans):
            return
        log.info("recording %d stored sessions that had no BarDay row", len(orphans))
        panel = store.load(orphans[0].astype(object), orphans[-1].astype(object))
        counts = dict(zip(panel.dates, np.isfinite(panel.close).sum(axis=1).tolist(), strict=True))
        self._record_days([(d.astype(object), int(counts.get(d, 0))) for d in orphans])

    def _record_days(self, days: list[tuple[date, int]]) -> None:
        if self.db is None or not days:
            return
        from engine.db import session_scope

        stamp = self._now().astimezone(UTC)  # stored as UTC, like every other timestamp
        with session_scope(self.db) as session:
            dates = [d for d, _ in days]
            existing = {
                b.trade_date: b
                for b in session.exec(
                    select(BarDay).where(BarDay.source == SOURCE, BarDay.trade_date.in_(dates))  # type: ignore[attr-defined]
                ).all()
            }
            for day, count in days:
                row = existing.get(day) or BarDay(source=SOURCE, trade_date=day)
                row.symbols = count
                row.stored_at = stamp
                session.add(row)

    def _newest_done(self, store: BarStore) -> date | None:
        have = store.stored_dates()
        candidates = [have[-1].astype(object)] if len(have) else []
        candidates += [b.trade_date for b in self._bar_days() if b.symbols == 0]
        return max(candidates) if candidates else None

    # --- repairs and splits -----------------------------------------------------------------------

    def _symbol_aggs(self, symbol: str, start: date, end: date) -> pa.Table:
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"daily bars {symbol} {start}..{end}",
            lambda: self._rest.list_aggs(
                symbol, 1, "day", start.isoformat(), end.isoformat(), adjusted=self.adjusted, sort="asc",
                limit=AGGS_PAGE_LIMIT, raw=True,
            ),
        ):
            results.extend(page)
        return aggs_to_table(results, symbol)

    def repair(self, store: BarStore | None, symbol: str, start: date, end: date) -> int:
        """Refetch one symbol's bars in [start, end] (``list_aggs``) and fill its holes in the sessions the
        store already holds. Sessions the store lacks are left to ``backfill``: a day holding one symbol
        would otherwise count as a stored full-market day. Returns the bars written."""
        store = self._store(store)
        with data_run(self.db, "repair", SOURCE, self.counters) as run:
            table = self._symbol_aggs(symbol, start, end)
            stored = store.stored_dates(start, end)
            keep = np.isin(table["date"].to_numpy().astype("datetime64[D]"), stored)
            table = table.filter(pa.array(keep))
            written = store.write(table)
            run.detail.update({"symbol": symbol, "start": str(start), "end": str(end), "bars": written})
        return written

    def check_splits(self, store: BarStore | None = None, since: date | None = None) -> SplitReport:
        """Find splits executed since ``since`` (``list_splits``); a symbol whose stored bars were fetched
        before its split executed holds unadjusted prices: its history is refetched (``list_aggs``,
        adjusted) and replaces the stored one, and cached grouped days fetched before the split are
        evicted. Handled splits are remembered in the ``DataRun`` rows, so each is acted on once."""
        store = self._store(store)
        report = SplitReport()
        today = self._now().astimezone(NEW_YORK).date()
        since = since or today - timedelta(days=30)
        with data_run(self.db, "check_splits", SOURCE, self.counters) as run:
            splits: list[tuple[str, date]] = []
            for page in self._pages(
                f"splits since {since}",
                lambda: self._rest.list_splits(
                    execution_date_gte=since.isoformat(), order="asc", sort="execution_date", limit=1000, raw=True
                ),
            ):
                for s in page:
                    ticker, executed = s.get("ticker"), s.get("execution_date")
                    if ticker and executed:
                        splits.append((ticker, date.fromisoformat(executed)))
            report.splits_seen = len(splits)
            handled, pending = self._handled_splits()
            new = sorted({(t, d) for t, d in splits if d <= today and (t, d.isoformat()) not in handled})
            run.detail.update({"since": str(since), "until": str(today), "splits": len(splits)})
            affected, stale_before = self._stale_symbols(store, new, pending)
            if affected:
                first, last = store.stored_dates()[[0, -1]].astype(object)
                refetched = {sym: self._symbol_aggs(sym, first, last) for sym in sorted(affected)}
                current = store.load(first, last, sorted(affected), dtype=np.float64)
                needs_delete = []
                for sym, table in refetched.items():
                    old = current.dates[np.isfinite(current.close[:, list(current.symbols).index(sym)])]
                    if len(np.setdiff1d(old, table["date"].to_numpy().astype("datetime64[D]"))):
                        needs_delete.append(sym)
                if needs_delete:
                    # Rows the refetch does not replace must go; note them first so a crash between the
                    # delete and the write is finished by the next check.
                    self._note_run(run, {"pending": needs_delete})
                    store.delete_symbols(needs_delete)
                tables = [t for t in refetched.values() if t.num_rows]
                report.bars_written = store.write(pa.concat_tables(tables)) if tables else 0
                report.symbols_refetched = sorted(affected)
            if stale_before is not None and self.cache is not None:
                report.cache_days_evicted = self._evict_grouped_fetched_before(stale_before)
            run.detail.update(
                {
                    "handled": [[t, d.isoformat()] for t, d in new] + [[t, d] for t, d in pending],
                    "pending": [],
                    "refetched": report.symbols_refetched,
                    "cache_days_evicted": report.cache_days_evicted,
                }
            )
        return report

    def _handled_splits(self) -> tuple[set[tuple[str, str]], list[tuple[str, str]]]:
        if self.db is None:
            return set(), []
        from engine.db import session_scope

        handled: set[tuple[str, str]] = set()
        pending: list[tuple[str, str]] = []
        with session_scope(self.db) as session:
            runs = session.exec(select(DataRun).where(DataRun.kind == "check_splits", DataRun.source == SOURCE))
            for r in runs.all():
                if r.outcome == "ok":
                    handled.update((t, d) for t, d in r.detail.get("handled", []))
                else:
                    pending.extend((s, f"pending-run-{r.id}") for s in r.detail.get("pending", []))
        return handled, [p for p in pending if p not in handled]

    def _stale_symbols(
        self, store: BarStore, splits: list[tuple[str, date]], pending: list[tuple[str, str]]
    ) -> tuple[set[str], date | None]:
        """Symbols whose stored bars predate a split and were fetched before it executed; plus the latest
        such execution date (cached days fetched before it hold unadjusted prices)."""
        affected = {sym for sym, _ in pending}
        stale_before: date | None = None
        if not splits:
            return affected, stale_before
        fetched = {b.trade_date: b.stored_at for b in self._bar_days()}
        symbols = sorted({t for t, _ in splits})
        have = store.stored_dates()
        if not len(have):
            return affected, max(d for _, d in splits)
        panel = store.load(symbols=symbols, dtype=np.float32)
        column = {s: i for i, s in enumerate(panel.symbols)}
        for ticker, executed in splits:
            stale_before = max(stale_before or executed, executed)
            if ticker not in column:
                continue
            days = panel.dates[np.isfinite(panel.close[:, column[ticker]])]
            split_start = datetime(executed.year, executed.month, executed.day, tzinfo=NEW_YORK)
            for d in days[days < np.datetime64(executed, "D")]:
                stamp = fetched.get(d.astype(object))
                if stamp is None or _aware(stamp) < split_start:
                    affected.add(ticker)
                    break
        return affected, stale_before

    def _evict_grouped_fetched_before(self, executed: date) -> int:
        assert self.cache is not None
        index_key = (SOURCE, "grouped-fetch-dates")
        with self._lock:
            dates = set(self.cache.peek(index_key, set()))
            old = {d for d in dates if d < executed.isoformat()}
            evicted = sum(self.cache.evict(GROUPED_TAG_PREFIX + d) for d in old)
            self.cache.set(index_key, dates - old)
        return evicted

    def _split_check_start(self, store: BarStore) -> date:
        """Since the previous successful split check (a week of overlap), else since the first stored day."""
        if self.db is not None:
            from engine.db import session_scope

            with session_scope(self.db) as session:
                runs = session.exec(
                    select(DataRun).where(
                        DataRun.kind == "check_splits", DataRun.source == SOURCE, DataRun.outcome == "ok"
                    )
                ).all()
            untils = [date.fromisoformat(r.detail["until"]) for r in runs if r.detail.get("until")]
            if untils:
                return max(untils) - timedelta(days=7)
        have = store.stored_dates()
        return have[0].astype(object) if len(have) else self._now().date() - timedelta(days=30)

    def _note_run(self, run: Any, detail: dict[str, Any]) -> None:
        run.detail.update(detail)
        if self.db is None or run.id is None:
            return
        from engine.db import session_scope

        with session_scope(self.db) as session:
            row = session.get(DataRun, run.id)
            if row is not None:
                row.detail = {**row.detail, **detail}
                session.add(row)

    # --- intraday ---------------------------------------------------------------------------------

    def quotes(self, symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Quotes from the whole-market stock snapshot (one request). Massive snapshots are live, so
        ``at`` only has to be timezone-aware; ``time`` says how fresh each quote is."""
        if at.tzinfo is None:
            raise ValueError("quotes() needs a timezone-aware datetime")
        wanted = list(symbols)
        tickers = wanted if 0 < len(wanted) <= 100 else None  # a short list keeps the response small
        body = self._call(
            "stock snapshot", lambda: self._rest.get_snapshot_all("stocks", tickers=tickers, raw=True)
        )
        rows = body.get("tickers") or []
        if not isinstance(rows, list):
            raise MalformedResponse("stock snapshot: 'tickers' is not a list")
        return snapshot_quotes(rows, wanted)

    def option_chain(
        self,
        underlying: str,
        at: datetime,
        expiry_from: date | None = None,
        expiry_to: date | None = None,
        strike_min: float | None = None,
        strike_max: float | None = None,
        r: float | None = None,
        q: float = 0.0,
    ) -> pd.DataFrame:
        """The underlying's option chain snapshot (every page, one request per 250 contracts) in the
        normalised chain shape (``engine.options.chain``), the provider's IV and greeks kept. With a
        risk-free rate ``r`` (and dividend yield ``q``) our own BSM numbers are added beside them
        (``chain.enrich``: calc_iv, calc_delta, ..., quote_flag)."""
        from engine.options.chain import enrich, from_polygon_snapshot

        if at.tzinfo is None:
            raise ValueError("option_chain() needs a timezone-aware datetime")
        params: dict[str, Any] = {"limit": 250}
        if expiry_from is not None:
            params["expiration_date.gte"] = expiry_from.isoformat()
        if expiry_to is not None:
            params["expiration_date.lte"] = expiry_to.isoformat()
        if strike_min is not None:
            params["strike_price.gte"] = strike_min
        if strike_max is not None:
            params["strike_price.lte"] = strike_max
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"option chain {underlying}",
            lambda: self._rest.list_snapshot_options_chain(underlying, params=dict(params), raw=True),
        ):
            results.extend(page)
        chain = from_polygon_snapshot(results, source=SOURCE)
        return chain if r is None else enrich(chain, r=r, q=q)


class _DayWriter:
    """Buffers fetched days and writes them to the store in batches, then records their BarDay rows."""

    def __init__(self, market: MassiveMarketData, store: BarStore, report: FillReport) -> None:
        self.market, self.store, self.report = market, store, report
        self.buffer: list[tuple[date, pa.Table]] = []
        self.first_at = 0.0

    def add(self, day: date, table: pa.Table) -> None:
        if self.buffer and (
            (day.year, day.month) != (self.buffer[0][0].year, self.buffer[0][0].month)
            or len(self.buffer) >= self.market.flush_days
            or time.monotonic() - self.first_at >= self.market.flush_seconds
        ):
            self.flush()
        if not self.buffer:
            self.first_at = time.monotonic()
        self.buffer.append((day, table))

    def flush(self) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        tables = [t for _, t in batch if t.num_rows]
        if tables:
            self.report.bars_stored += self.store.write(pa.concat_tables(tables))
        record: list[tuple[date, int]] = []
        for day, table in batch:
            if table.num_rows:
                record.append((day, table.num_rows))
                self.report.days_stored += 1
            elif self.market._settled(day):
                record.append((day, 0))
                self.report.empty_sessions_recorded += 1
            else:
                self.report.not_yet_published.append(day.isoformat())
        self.market._record_days(record)


def _decode(what: str, resp: Any) -> dict[str, Any]:
    data = resp.data if hasattr(resp, "data") else resp
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        head = bytes(data[:80]) if isinstance(data, bytes | bytearray) else b""
        raise MalformedResponse(
            f"{what}: the response is not valid JSON ({len(data)} bytes, starting {head!r})"
        ) from None
    if not isinstance(body, dict):
        raise MalformedResponse(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _server_message(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "(empty body)"
    if isinstance(parsed, dict):
        text = parsed.get("message") or parsed.get("error") or parsed.get("status") or ""
        return str(text)[:300] or "(no message)"
    return str(parsed)[:300]


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _no_days() -> np.ndarray:
    return np.array([], dtype="datetime64[D]")

