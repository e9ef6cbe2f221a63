"""Flex Web Service: the two-step download (SendRequest, then GetStatement with bounded polling).

1. ``SendRequest?t=TOKEN&q=QUERY&v=3`` answers a reference code (and the GetStatement URL).
2. ``GetStatement?t=TOKEN&q=REFERENCE&v=3`` answers the statement, or error 1019 "statement generation in
   progress" (and the throttling codes 1018/1001) while IBKR is still building it: wait and ask again, a
   bounded number of times. Any other error code stops with IBKR's message.

A date range can be asked for with ``fd``/``td`` (yyyymmdd) on SendRequest; IBKR caps one request at 365
days, so a history from ``QM_IBKR__HISTORY_START`` is fetched window by window (``history_windows``).
Code 1003 ("statement not available") on a window before the account existed is an empty window.

The token is a secret: it is sent only as a query parameter and never appears in an error or a log line.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import requests
from pydantic import SecretStr

RETRY_CODES = frozenset({"1019", "1018", "1001", "1021"})  # in progress, too many requests, try again
API_VERSION = "3"
MAX_WINDOW_DAYS = 365
NOT_AVAILABLE = "1003"


def history_windows(start: date, end: date) -> list[tuple[date, date]]:
    """Consecutive windows of at most 365 days covering start..end (inclusive)."""
    out = []
    while start <= end:
        stop = min(end, start + timedelta(days=MAX_WINDOW_DAYS - 1))
        out.append((start, stop))
        start = stop + timedelta(days=1)
    return out


class FlexDownloadError(RuntimeError):
    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FlexClient:
    token: SecretStr
    query_id: str
    base_url: str = "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService"
    poll_attempts: int = 10
    poll_wait_s: float = 5.0
    timeout_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session | None = None

    def _get(self, url: str, params: dict[str, str]) -> bytes:
        http = self.session or requests
        try:
            resp = http.get(url, params=params, timeout=self.timeout_s,
                            headers={"User-Agent": "QuantMatrix/1.0 (Python)"})
        except requests.RequestException as exc:
            # requests puts the full URL (token included) in its messages: report the class only.
            raise FlexDownloadError(f"Flex Web Service unreachable at {url}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise FlexDownloadError(f"Flex Web Service {url} answered HTTP {resp.status_code}")
        return resp.content

    def send_request(self, from_date: date | None = None, to_date: date | None = None) -> tuple[str, str]:
        """Step 1: returns (reference code, GetStatement URL). Without dates, the query's own period."""
        url = self.base_url.rstrip("/") + "/SendRequest"
        params = {"t": self.token.get_secret_value(), "q": self.query_id, "v": API_VERSION}
        if from_date is not None and to_date is not None:
            if (to_date - from_date).days >= MAX_WINDOW_DAYS:
                raise ValueError(f"Flex window {from_date}..{to_date} exceeds IBKR's {MAX_WINDOW_DAYS}-day limit")
            params |= {"fd": f"{from_date:%Y%m%d}", "td": f"{to_date:%Y%m%d}"}
        body = self._get(url, params)
        root = _xml(body, "SendRequest")
        status = (root.findtext("Status") or "").strip()
        if status != "Success":
            raise FlexDownloadError(f"SendRequest failed: {_error(root)}", (root.findtext("ErrorCode") or "").strip())
        ref = (root.findtext("ReferenceCode") or "").strip()
        if not ref:
            raise FlexDownloadError("SendRequest answered Success without a ReferenceCode")
        get_url = (root.findtext("Url") or "").strip() or self.base_url.rstrip("/") + "/GetStatement"
        return ref, get_url

    def get_statement(self, reference: str, url: str) -> bytes:
        """Step 2, polled while IBKR is still generating the statement."""
        last = ""
        for attempt in range(self.poll_attempts):
            body = self._get(url, {"t": self.token.get_secret_value(), "q": reference, "v": API_VERSION})
            root = _xml(body, "GetStatement")
            if root.tag != "FlexStatementResponse":
                return body  # the statement itself (FlexQueryResponse)
            code = (root.findtext("ErrorCode") or "").strip()
            last = _error(root)
            if code not in RETRY_CODES:
                raise FlexDownloadError(f"GetStatement failed: {last}")
            if attempt + 1 < self.poll_attempts:
                self.sleep(self.poll_wait_s)
        raise FlexDownloadError(f"statement not ready after {self.poll_attempts} attempts: {last}")

    def download(self, from_date: date | None = None, to_date: date | None = None) -> bytes:
        ref, url = self.send_request(from_date, to_date)
        return self.get_statement(ref, url)


def _xml(body: bytes, step: str) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise FlexDownloadError(f"{step} answered something that is not XML ({body[:80]!r})") from None


def _error(root: ET.Element) -> str:
    code = (root.findtext("ErrorCode") or "?").strip()
    message = (root.findtext("ErrorMessage") or "").strip()
    return f"code {code}: {message}"
