"""Request-rate limiting and error handling for paid-per-request market-data APIs (Massive/Polygon).

Two layers keep a data job inside its plan and readable when it is not:

- ``RateLimiter``: a sliding-window limiter (at most ``limit`` requests in any ``window`` seconds).
  A token bucket would let a full bucket burst and then refill inside the same minute, i.e. up to
  ``2 * limit - 1`` requests in one minute, which a per-minute plan answers with 429s. The sliding
  window never exceeds the plan. Thread-safe; clock and sleep are injectable for tests.
- ``Backoff``: the adapter retries 429/5xx/timeouts itself, each attempt taking a limiter slot
  (``engine.data.massive_http``, honouring ``Retry-After``) and then raises ``RetriesExhausted``, which
  ``Backoff`` passes on unretried (the per-request attempts are the whole cost of a failing request).
  ``Backoff`` retries what that loop does not see (a garbled 200 body, a bare ``MaxRetryError`` from
  another caller) and turns every failure into a ``DataSourceError`` whose message says what happened
  and what to do, without ever showing the API key (the client sends it in a header, never in a URL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Requests a minute on Massive's plans (free: 5/min; paid plans are unlimited, we still keep a ceiling).
PLAN_REQUESTS_PER_MINUTE = {"free": 5, "paid": 6_000}


class DataSourceError(RuntimeError):
    """A market-data request failed; the message says why and what to do."""


class DataSourceAuthError(DataSourceError):
    """The API key is missing, wrong, or not entitled to the data (HTTP 401/403). Never retried."""


class DataSourceUnavailable(DataSourceError):
    """Transient failure that outlasted every retry: rate limit, server errors, timeouts, no connection."""


class RetriesExhausted(DataSourceUnavailable):
    """The per-request retry loop (``engine.data.massive_http``) already spent every attempt it is allowed,
    each inside the rate limit. ``Backoff`` does not retry it again: the documented attempts are the cost
    of a failing request (an outer round would multiply them: 3 x 4 attempts for a persistent 429)."""


class DataSourceNotFound(DataSourceError):
    """HTTP 404: a definite answer (the symbol or resource does not exist), not a transient failure."""


class MalformedResponse(DataSourceError):
    """The server answered 200 with a body that is not the JSON we expect (truncated, HTML, ...)."""


class RateLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (sliding window log).

    ``limit=None`` disables limiting (a local fake server, or a plan without a cap).
    """

    def __init__(
        self,
        limit: int | None,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"rate limit must be >= 1 request per window, got {limit}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.limit, self.window = limit, float(window)
        self._clock, self._sleep = clock, sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0  # total time callers spent waiting, for reports
        self.acquired = 0

    @classmethod
    def per_minute(cls, requests_per_minute: int | None, **kw: object) -> RateLimiter:
        return cls(requests_per_minute, 60.0, **kw)  # type: ignore[arg-type]

    @classmethod
    def for_plan(cls, plan: str, **kw: object) -> RateLimiter:
        if plan not in PLAN_REQUESTS_PER_MINUTE:
            raise ValueError(f"unknown plan {plan!r}; known: {sorted(PLAN_REQUESTS_PER_MINUTE)}")
        return cls.per_minute(PLAN_REQUESTS_PER_MINUTE[plan], **kw)

    @classmethod
    def unlimited(cls) -> RateLimiter:
        return cls(None)

    def delay(self) -> float:
        """Seconds until the next acquisition would be allowed (0 when it is allowed now)."""
        with self._lock:
            return self._delay_locked(self._clock())

    def _delay_locked(self, now: float) -> float:
        if self.limit is None:
            return 0.0
        while self._stamps and now - self._stamps[0] >= self.window:
            self._stamps.popleft()
        if len(self._stamps) < self.limit:
            return 0.0
        return self._stamps[0] + self.window - now

    def acquire(self) -> float:
        """Block until a request may be sent and record it; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._delay_locked(now)
                if wait <= 0:
                    if self.limit is not None:
                        self._stamps.append(now)
                    self.acquired += 1
                    self.waited_seconds += waited
                    return waited
            # Sleep outside the lock so other threads can compute their own wait; re-check afterwards
            # because another thread may have taken the slot that just opened.
            self._sleep(wait)
            waited += wait


def describe_error(exc: BaseException, what: str = "request", requests_per_minute: int | None = None) -> str:
    """A one-line explanation of a failed request, naming the cause and the fix."""
    if isinstance(exc, DataSourceError):
        return str(exc)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ResponseError):
            text = str(reason)
            if "429" in text:
                plan = (
                    f" (the limiter allows {requests_per_minute}/min, QM_MASSIVE_REQUESTS_PER_MINUTE)"
                    if requests_per_minute
                    else ""
                )
                return (
                    f"{what}: still rate limited (HTTP 429) after every retry{plan}; another process may be "
                    "using the same key, or the plan allows fewer requests than configured"
                )
            return f"{what}: the server kept failing ({text}) after every retry; try again later"
        if isinstance(reason, ReadTimeoutError):
            return f"{what}: timed out waiting for the response after every retry; the server is slow or down"
        if isinstance(reason, ConnectTimeoutError | NewConnectionError):
            return f"{what}: cannot connect to {exc.pool.host if exc.pool else 'the server'}: {reason}"
        if isinstance(reason, ProtocolError):
            return f"{what}: the connection broke mid-response after every retry: {reason}"
        return f"{what}: failed after every retry: {reason}"
    return f"{what}: {type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: retries exhausted on 429/5xx/timeouts/connection errors, or a garbled body."""
    return isinstance(exc, MaxRetryError | MalformedResponse | DataSourceUnavailable)


@dataclass
class Backoff:
    """Outer retry for transient failures, with growing delays: ``delays`` seconds between attempts.

    With the defaults a failure it retries is tried 3 times over ~1.5 minutes. Non-transient errors (4xx,
    auth) and ``RetriesExhausted`` (the per-request loop already retried) are raised at once.
    """

    delays: tuple[float, ...] = (15.0, 60.0)
    sleep: Callable[[float], None] = time.sleep
    requests_per_minute: int | None = None

    @classmethod
    def none(cls) -> Backoff:
        return cls(delays=())

    def call(self, fn: Callable[[], T], what: str = "request") -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except (DataSourceAuthError, RetriesExhausted):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                message = describe_error(exc, what, self.requests_per_minute)
                if attempt >= len(self.delays):
                    tries = attempt + 1
                    raise DataSourceUnavailable(f"{message} ({tries} attempt{'s' * (tries > 1)})") from exc
                delay = self.delays[attempt]
                log.warning("%s; retrying in %.0fs", message, delay)
                self.sleep(delay)
                attempt += 1
