"""The request layer of the Massive adapter: the official ``massive`` client with every HTTP attempt
passing the plan's rate limiter, counted, retried on our schedule, and failures turned into readable
``DataSourceError``s (never showing the key)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from massive import RESTClient
from massive.exceptions import BadResponse
from sqlalchemy.engine import Engine
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from engine.config import SettingsError
from engine.data.barstore import BarStore
from engine.data.cache import Counters, DataCache
from engine.data.ratelimit import (
    Backoff,
    DataSourceAuthError,
    DataSourceError,
    DataSourceNotFound,
    MalformedResponse,
    RateLimiter,
    RetriesExhausted,
    describe_error,
)
from engine.models import DataRun

SOURCE = "massive"
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
DEFAULT_BASE_URL = "https://api.massive.com"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class MassiveKeyMissing(SettingsError, DataSourceAuthError):
    """No API key configured (a settings problem, so the CLI reports it like one)."""


def default_retry(total: int = 3, backoff_factor: float = 2.0, backoff_max: float = 60.0) -> Retry:
    """The retry policy for GETs: 429 and 5xx, timeouts and broken connections, ``total`` retries after the
    first attempt. Waits ``backoff_factor * 2**k`` before retry k+1 (2, 4, 8 s by default), except that a
    429 with ``Retry-After`` waits what the server asked (up to 2 minutes). ``MassiveHttp`` runs this
    schedule itself, one rate-limiter slot per attempt; urllib3 only makes single attempts (its own
    retries would bypass the limiter and start with an immediate retry). When they are spent the request
    fails with ``RetriesExhausted``, which the outer ``Backoff`` does not retry again (it would multiply
    the attempts)."""
    return Retry(
        total=total,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        respect_retry_after_header=True,
        retry_after_max=120,
        raise_on_status=True,
    )


def retry_delay(policy: Retry, retry_number: int, status: int | None, retry_after: str | None) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based): the server's Retry-After on a 429 (capped
    at the policy's ``retry_after_max``), else ``backoff_factor * 2**(retry_number - 1)`` capped at
    ``backoff_max``."""
    if status == 429 and retry_after and policy.respect_retry_after_header:
        try:
            asked = policy.parse_retry_after(retry_after)
        except Exception:  # an unparseable header: fall back to our own schedule
            asked = None
        if asked is not None:
            return float(min(asked, policy.retry_after_max))
    return float(min(policy.backoff_factor * 2 ** (retry_number - 1), policy.backoff_max))


# A single attempt per pool call: connection errors and timeouts surface as MaxRetryError (as urllib3
# reports them), statuses come back as responses for our own loop to judge.
_SINGLE_ATTEMPT = Retry(total=0, redirect=3, status_forcelist=(), raise_on_status=False)


class MassiveHttp:
    """Client, limiter, counters and paging shared by every part of the Massive adapter."""

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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key or not api_key.strip():
            raise MassiveKeyMissing("Massive market data needs an API key: set QM_MASSIVE_API_KEY")
        self._secret = api_key
        self.base = base.rstrip("/")
        self.store, self.db, self.cache = store, db, cache
        self.limiter = limiter or RateLimiter.unlimited()
        self.backoff = backoff or Backoff(requests_per_minute=self.limiter.limit, sleep=sleep)
        self.retry = retry or default_retry()
        self._sleep = sleep
        self.retry_waits: list[float] = []  # seconds waited before each retry, for reports and tests
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
            retries=0,
            pagination=True,
            connection_pool_kw={"retries": _SINGLE_ATTEMPT},
            maxsize=max(10, self.workers),
        )
        self._hook_requests()

    def __repr__(self) -> str:  # never shows the key
        return f"MassiveMarketData(base={self.base!r}, limit={self.limiter.limit}/min)"

    # --- requests ---------------------------------------------------------------------------------

    def _hook_requests(self) -> None:
        """Every HTTP attempt of the client (first pages, next_url pages and every retry) waits for the
        rate limiter, is counted, and leaves its status code for error messages (BadResponse has only the
        body). Retries follow ``self.retry`` (see ``default_retry``)."""
        pool = self._rest.client
        send = pool.request
        policy = self.retry
        retries = policy.total if isinstance(policy.total, int) else 3

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self._local.status = None
            attempt = 0
            while True:
                self._local.attempts = attempt + 1
                self.limiter.acquire()
                with self._lock:
                    self._requests += 1
                try:
                    resp = send(method, url, *args, **kwargs)
                except MaxRetryError:
                    if attempt >= retries:
                        raise
                    status, retry_after = None, None
                else:
                    self._local.status = resp.status
                    if resp.status not in RETRY_STATUSES:
                        return resp
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
                    resp.drain_conn()
                    if attempt >= retries:
                        raise MaxRetryError(
                            None, url, ResponseError(f"too many {status} error responses")  # type: ignore[arg-type]
                        )
                attempt += 1
                wait = retry_delay(policy, attempt, status, retry_after)
                with self._lock:
                    self.retry_waits.append(wait)
                if wait > 0:
                    self._sleep(wait)

        pool.request = request  # type: ignore[method-assign]

    def counters(self) -> Counters:
        with self._lock:
            own = Counters(self._requests, 0, self._uncached_misses, self._store_hits)
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
            except MaxRetryError as exc:  # our loop's attempts are spent: final, not retried by Backoff
                tries = int(getattr(self._local, "attempts", 1))
                message = describe_error(exc, what, self.limiter.limit)
                raise RetriesExhausted(f"{message} ({tries} attempt{'s' * (tries > 1)})") from exc
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
            return DataSourceNotFound(f"{what}: not found ({code}): {server}")
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

    def _store(self, store: BarStore | None) -> BarStore:
        store = store or self.store
        if store is None:
            raise ValueError("no bar store: pass store= or construct MassiveMarketData with store=")
        return store

    def _count_uncached_miss(self) -> None:
        with self._lock:
            self._uncached_misses += 1

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


