"""HTTP behaviour under the tastytrade SDK: one transport wrapper that makes faults explicit.

The SDK (async, httpx2) raises ``TastytradeError`` for every non-2xx answer, which loses the status code,
and it never retries. The adapter must tell apart what it may retry, what is a definite refusal and what
leaves an order's fate unknown, so the wrapper decides per answer:
- 429: retried after ``Retry-After`` (or exponential backoff) while the request budget allows, any method
  (a rate-limited request was not processed);
- 401 on an API call: the access token expired early or was revoked: one forced refresh, then resent;
- the refresh itself refused (400/401 from ``/oauth/token``): ``TastytradeAuthError`` naming the setting;
- 5xx on GET or on the token refresh: retried within the budget; 5xx on other POST/PUT/DELETE:
  ``TastytradeServerError`` (the broker may or may not have acted: the order stays in flight until
  reconciliation).
Timeouts and connection errors come from httpx2 itself and mean the same as a 5xx on a write.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import httpx2

from engine.execution.ports import BrokerUnavailable

if TYPE_CHECKING:
    from tastytrade import Session

log = logging.getLogger(__name__)


class TastytradeAuthError(BrokerUnavailable):
    """The OAuth grant was refused: nothing works until the operator issues a new one."""


class TastytradeServerError(Exception):
    """A 5xx on a write: unknown outcome."""

    def __init__(self, status: int, method: str, path: str) -> None:
        super().__init__(f"tastytrade answered HTTP {status} to {method} {path}: outcome unknown")
        self.status = status


class ResilientTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, budget_seconds: float = 20.0, backoff_seconds: float = 0.5,
                 max_retries: int = 5) -> None:
        self._inner = inner
        self.budget_seconds = budget_seconds
        self.backoff_seconds = backoff_seconds
        self.max_retries = max_retries
        self.session: Session | None = None  # set by the adapter once the SDK session exists
        self.retries_429 = 0
        self.refreshes_after_401 = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = time.monotonic() + self.budget_seconds
        attempt = 0
        refreshed = False
        is_token = request.url.path.endswith("/oauth/token")
        while True:
            response = await self._inner.handle_async_request(request)
            status = response.status_code
            # GETs and the token refresh change nothing at the broker: a 5xx on them is safe to resend.
            if status == 429 or (status >= 500 and (request.method == "GET" or is_token)):
                delay = self._delay(response, attempt)
                if attempt < self.max_retries and time.monotonic() + delay <= deadline:
                    await response.aread()
                    await response.aclose()
                    log.warning("tastytrade HTTP %d on %s %s: retry %d in %.2fs", status, request.method,
                                request.url.path, attempt + 1, delay)
                    if status == 429:
                        self.retries_429 += 1
                    await anyio.sleep(delay)
                    attempt += 1
                    continue
            if is_token and status in (400, 401, 403):
                await response.aread()
                raise TastytradeAuthError(
                    "tastytrade refused the refresh token (revoked or expired grant): create a new personal grant "
                    "for the OAuth application and set QM_TASTYTRADE__REFRESH_TOKEN (and "
                    f"QM_TASTYTRADE__CLIENT_SECRET if the application changed); HTTP {status}")
            if status == 401 and not is_token and not refreshed and self.session is not None:
                await response.aread()
                await response.aclose()
                self.refreshes_after_401 += 1
                await self.session.refresh(force=True)
                request.headers["Authorization"] = f"Bearer {self.session.session_token}"
                refreshed = True
                continue
            if status >= 500:
                await response.aread()
                raise TastytradeServerError(status, request.method, request.url.path)
            return response

    def _delay(self, response: httpx2.Response, attempt: int) -> float:
        header = response.headers.get("Retry-After")
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        return self.backoff_seconds * (2 ** attempt)

    async def aclose(self) -> None:
        await self._inner.aclose()
