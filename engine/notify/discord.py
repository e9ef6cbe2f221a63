"""Delivery of outbox rows to Discord webhooks.

Per channel the rows go out strictly in outbox order: only the oldest waiting row of a channel (its "head")
is ever tried, so the parts of a split notification and successive alerts arrive in order, and a webhook
that is rate limited or down is not hit again by the rows queued behind.

Outcomes of one POST (``?wait=true``, so a success returns the Discord message id, which is stored):

- 2xx: ``sent``. When Discord's ``X-RateLimit-Remaining`` reaches 0 the channel waits for
  ``X-RateLimit-Reset-After`` before its next message.
- 429: the row waits for the larger of the body's ``retry_after`` and the ``Retry-After`` header; it does not
  count as an attempt. A global limit holds every channel.
- 401/403/404: the webhook is dead (deleted, or its token is wrong). It is remembered by a hash of its URL
  and not used again until the setting changes; the channel's rows are kept as ``not_configured``.
- other 4xx: Discord refused the payload: ``failed`` with Discord's reason (rendering keeps every payload
  within the limits, so this should not happen).
- 5xx, timeouts, connection errors: retried with exponential backoff and jitter (2 s doubling up to 30 min),
  forever: a notification is never given up on because Discord or the network is down.

Never twice, never lost: the delivery choice
-------------------------------------------
Discord webhooks have no idempotency key and no way to look up a message without its id, so once a POST has
left, a lost answer cannot be resolved. Every row is *claimed* before its POST (status ``sending``,
``attempts + 1``, a lease of :data:`LEASE` in ``next_attempt_at``), with a compare-and-set in its own committed
transaction, so two workers (the scheduler's and a console's) never send the same row. The only window
left is between the POST leaving and the ``sent`` mark being committed: a read timeout, a connection dropped
after the request was written, or a crash of the process in that window. For those rows we choose
**at-least-once**: they are sent again (a crashed claim once its lease has expired), and the repeat
carries a visible note "possible duplicate" so the operator can tell. A lost alert about a stop or a fill
costs more than a second copy of it. Failures that prove nothing was sent (connection refused, connect
timeout, DNS, TLS handshake, a 5xx or 429 answer) are retried without the note. The window is kept small:
a short connect timeout, a bounded read timeout, and the ``sent`` mark committed right after the answer.

Webhook URLs are secrets: logs, errors and the database only ever name a webhook as ``discord:<channel>``.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from engine.config import Settings
from engine.db import session_scope
from engine.models import NotificationOutbox
from engine.notify.outbox import (
    CHANNELS,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    dead_fingerprints,
    label,
    mark_webhook_dead,
    requeue_not_configured,
    url_fingerprint,
    utc,
    webhook_url,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
# Longer than a whole send can take (SQLite busy timeout 30 s + connect + read), so a live worker never
# loses its claim while its POST is still running.
LEASE = timedelta(seconds=120)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 30 * 60.0
# A longer retry_after is treated as this (the row is still retried, and asks again): Discord's own waits are
# seconds to a minute, so anything beyond this is a misread unit or a broken header, and must never park a
# channel (or, for a global limit, all five) for hours.
RATE_LIMIT_MAX_SECONDS = 300.0
API_VERSION = "v10"  # versioned API: retry_after in seconds (unversioned webhook URLs mean v6, milliseconds)
ERROR_MAX = 500
DUPLICATE_NOTE = "⚠️ Possible duplicate: an earlier attempt to send this could not be confirmed."

_WEBHOOK_PATH = re.compile(r"/api(/v\d+)?/webhooks/[^\s'\"?]+")
_API_PREFIX = re.compile(r"/api(/v\d+)?/webhooks/")


def versioned(url: str) -> str:
    """The webhook URL on API v10. Discord hands out unversioned URLs (``/api/webhooks/ID/TOKEN``), which
    mean API v6, where ``retry_after`` is in milliseconds; v10 answers in seconds, which is what we read."""
    parts = urlsplit(url)
    path = _API_PREFIX.sub(f"/api/{API_VERSION}/webhooks/", parts.path, count=1)
    return parts._replace(path=path).geturl()


def _looks_like_html(resp: requests.Response) -> bool:
    kind = resp.headers.get("Content-Type", "").lower()
    return "text/html" in kind or resp.text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))


def mask(text: str, url: str | None, channel: str) -> str:
    """``text`` with the webhook URL, its path and its token replaced by the webhook's label."""
    name = label(channel)
    if url:
        parts = urlsplit(url)
        token = parts.path.rstrip("/").rsplit("/", 1)[-1]
        for secret in (url, url.split("?", 1)[0], parts.path):
            if secret:
                text = text.replace(secret, name)
        if len(token) >= 8:
            text = text.replace(token, "<token>")
    return _WEBHOOK_PATH.sub(name, text)[:ERROR_MAX]


class _RedactWebhookPaths(logging.Filter):
    """urllib3 logs request paths at DEBUG; a webhook path contains its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = _WEBHOOK_PATH.sub("/api/webhooks/<redacted>", text)
        if redacted != text:
            record.msg, record.args = redacted, ()
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactWebhookPaths) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactWebhookPaths())


@dataclass
class DeliveryReport:
    attempted: int = 0  # POSTs made
    sent: int = 0
    rate_limited: int = 0
    retried: int = 0  # 5xx, timeouts, connection errors: waiting for a retry
    unconfirmed: int = 0  # of those, the ones that may have reached Discord (resent with a note)
    failed: int = 0  # payload refused (4xx)
    dead_channels: list[str] = field(default_factory=list)
    requeued: int = 0
    errors: list[str] = field(default_factory=list)  # masked


@dataclass
class _Claim:
    row_id: int
    attempts: int
    body: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class _Outcome:
    kind: str  # sent | rate_limited | retry | failed | dead
    error: str = ""
    wait_seconds: float = 0.0  # rate_limited: how long; sent: a proactive pause when the bucket is empty
    global_limit: bool = False
    unconfirmed: bool = False
    message_id: str | None = None


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempts``: 2 s doubling, at most 30 min, with jitter in [d/2, d]."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


def _float(value: Any) -> float:
    """A non-negative finite number of seconds from a header or JSON value; 0 when absent or malformed."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(max(number, 0.0), RATE_LIMIT_MAX_SECONDS) if math.isfinite(number) else RATE_LIMIT_MAX_SECONDS


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _classify(resp: requests.Response) -> _Outcome:
    status = resp.status_code
    if 200 <= status < 300:
        message_id = _json(resp).get("id") if status != 204 else None
        outcome = _Outcome("sent", message_id=str(message_id) if message_id is not None else None)
        if resp.headers.get("X-RateLimit-Remaining") == "0":
            outcome.wait_seconds = _float(resp.headers.get("X-RateLimit-Reset-After"))
        return outcome
    if status == 429:
        data = _json(resp)
        wait = max(
            _float(data.get("retry_after")),
            _float(resp.headers.get("Retry-After")),
            _float(resp.headers.get("X-RateLimit-Reset-After")),
        )
        global_limit = bool(data.get("global")) or resp.headers.get("X-RateLimit-Global", "").lower() == "true"
        return _Outcome(
            "rate_limited",
            error=f"rate limited by Discord for {wait:.2f}s",
            wait_seconds=min(wait or 1.0, RATE_LIMIT_MAX_SECONDS),
            global_limit=global_limit,
        )
    reason = _json(resp).get("message") or resp.text[:200]
    if status == 403 and _looks_like_html(resp):
        # Cloudflare in front of Discord (a temporary IP ban or challenge) answers 403 with an HTML page;
        # Discord itself answers a dead webhook with JSON. Transient: back off and retry, keep the webhook.
        return _Outcome("retry", error="HTTP 403 from Cloudflare (HTML page), not from Discord; retrying")
    if status in (401, 403, 404):
        return _Outcome("dead", error=f"HTTP {status} {reason}")
    if 400 <= status < 500:
        return _Outcome("failed", error=f"Discord refused the message: HTTP {status} {resp.text[:300]}")
    # 5xx (and anything unexpected, e.g. a redirect): Discord did not take it; retry.
    return _Outcome("retry", error=f"HTTP {status} {reason}")


def _definitely_not_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never reached the server (so a retry cannot duplicate it)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        return isinstance(cause, NewConnectionError | ConnectTimeoutError)
    return isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema)


def _post(http: requests.Session, url: str, body: dict[str, Any], timeout: float | tuple[float, float]) -> _Outcome:
    try:
        resp = http.post(versioned(url), params={"wait": "true"}, json=body, timeout=timeout,
                         allow_redirects=False)
    except requests.RequestException as exc:
        unconfirmed = not _definitely_not_sent(exc)
        what = "no answer" if unconfirmed else "not sent"
        return _Outcome("retry", error=f"{what}: {type(exc).__name__}: {exc}", unconfirmed=unconfirmed)
    return _classify(resp)


def _claim_head(engine: Engine, channel: str, now: datetime) -> _Claim | None:
    """Claim the oldest waiting row of ``channel`` if it is due: its own committed compare-and-set."""
    with session_scope(engine) as db:
        head = db.exec(
            select(NotificationOutbox)
            .where(NotificationOutbox.channel == channel, col(NotificationOutbox.status).in_([PENDING, SENDING]))
            .order_by(col(NotificationOutbox.id))
            .limit(1)
        ).first()
        # A ``sending`` head is in flight with another worker until its lease (next_attempt_at) runs out.
        if head is None or utc(head.next_attempt_at) > now:
            return None
        payload = dict(head.payload or {})
        if head.status == SENDING:
            # Its worker died between claim and result: whether Discord got it is unknown (see module doc).
            payload["unconfirmed"] = True
            log.warning("%s: resending notification %s whose earlier send was never confirmed", label(channel), head.id)
        result = db.exec(
            update(NotificationOutbox)
            .where(
                col(NotificationOutbox.id) == head.id,
                col(NotificationOutbox.status) == head.status,
                col(NotificationOutbox.attempts) == head.attempts,
            )
            .values(status=SENDING, attempts=head.attempts + 1, next_attempt_at=now + LEASE, payload=payload)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None  # another worker claimed it first
        assert head.id is not None
        return _Claim(head.id, head.attempts + 1, dict(payload.get("body") or {}), payload)


def _body_to_send(claim: _Claim) -> dict[str, Any]:
    if not claim.payload.get("unconfirmed"):
        return claim.body
    body = dict(claim.body)
    # Rendering keeps CONTENT_RESERVE characters of content free for this note.
    body["content"] = f"{DUPLICATE_NOTE}\n{body['content']}" if body.get("content") else DUPLICATE_NOTE
    return body


def _finish(engine: Engine, claim: _Claim, **values: Any) -> None:
    with session_scope(engine) as db:
        result = db.exec(
            update(NotificationOutbox)
            .where(col(NotificationOutbox.id) == claim.row_id, col(NotificationOutbox.attempts) == claim.attempts)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            log.warning("notification %s was reclaimed while it was being sent", claim.row_id)


def _hold(engine: Engine, channels: list[str], until: datetime) -> None:
    """Make the waiting rows of ``channels`` wait until ``until`` (Discord asked us to pause)."""
    with session_scope(engine) as db:
        db.exec(
            update(NotificationOutbox)
            .where(
                col(NotificationOutbox.channel).in_(channels),
                col(NotificationOutbox.status) == PENDING,
                col(NotificationOutbox.next_attempt_at) < until,
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )


def deliver_due(
    engine: Engine,
    settings: Settings,
    session: requests.Session | None = None,
    now: datetime | None = None,
    max_messages: int = 50,
    *,
    timeout: float | tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    rng: random.Random | None = None,
    stop_event: threading.Event | None = None,
) -> DeliveryReport:
    """Send the due outbox rows (at most ``max_messages`` POSTs) and record each outcome.

    ``now`` fixes the clock for the whole pass (tests); by default the wall clock is read at each step."""

    def clock() -> datetime:
        return utc(now)

    report = DeliveryReport(requeued=requeue_not_configured(engine, settings, clock()))
    urls = {c: u for c in CHANNELS if (u := webhook_url(settings, c)) is not None}
    dead = dead_fingerprints(engine, urls.values())
    blocked = {c for c, u in urls.items() if url_fingerprint(u) in dead}
    http = session or requests.Session()
    try:
        progressed = True
        while progressed and report.attempted < max_messages:
            progressed = False
            for channel, url in urls.items():  # round robin: one busy channel does not starve the others
                if channel in blocked or report.attempted >= max_messages:
                    continue
                if stop_event is not None and stop_event.is_set():
                    return report
                claim = _claim_head(engine, channel, clock())
                if claim is None:
                    blocked.add(channel)
                    continue
                progressed = True
                report.attempted += 1
                outcome = _post(http, url, _body_to_send(claim), timeout)
                if _record(engine, channel, url, claim, outcome, clock(), report, rng):
                    blocked.add(channel)
                if outcome.kind == "dead":  # every channel sharing that URL
                    blocked |= {c for c, u in urls.items() if u == url}
                if outcome.kind == "rate_limited" and outcome.global_limit:
                    return report
    finally:
        if session is None:
            http.close()
    return report


def _record(
    engine: Engine,
    channel: str,
    url: str,
    claim: _Claim,
    outcome: _Outcome,
    now: datetime,
    report: DeliveryReport,
    rng: random.Random | None,
) -> bool:
    """Store the outcome of one POST; True when the channel must not be tried again in this pass."""
    error = mask(outcome.error, url, channel) if outcome.error else None
    name = label(channel)
    if outcome.kind == "sent":
        payload = {**claim.payload, "discord_message_id": outcome.message_id}
        _finish(engine, claim, status=SENT, sent_at=now, last_error=None, payload=payload)
        report.sent += 1
        if outcome.wait_seconds > 0:
            _hold(engine, [channel], now + timedelta(seconds=outcome.wait_seconds))
            return True
        return False
    if error:
        report.errors.append(f"{name}: {error}")
    if outcome.kind == "rate_limited":
        until = now + timedelta(seconds=outcome.wait_seconds)
        # Not a failure of the message: give the attempt back.
        _finish(engine, claim, status=PENDING, attempts=claim.attempts - 1, next_attempt_at=until, last_error=error)
        report.rate_limited += 1
        log.info("%s: %s", name, error)
        if outcome.global_limit:
            _hold(engine, list(CHANNELS), until)
        return True
    if outcome.kind == "retry":
        payload = {**claim.payload, "unconfirmed": claim.payload.get("unconfirmed") or outcome.unconfirmed}
        delay = backoff_seconds(claim.attempts, rng)
        _finish(
            engine,
            claim,
            status=PENDING,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=f"attempt {claim.attempts}: {error}; retrying in {delay:.0f}s",
            payload=payload,
        )
        report.retried += 1
        report.unconfirmed += int(outcome.unconfirmed)
        log.warning("%s: delivery attempt %d failed: %s", name, claim.attempts, error)
        return True
    if outcome.kind == "failed":
        _finish(engine, claim, status=FAILED, last_error=error)
        report.failed += 1
        log.error("%s: notification %s refused: %s", name, claim.row_id, error)
        return False
    # dead webhook
    mark_webhook_dead(engine, channel, url, error or "unknown webhook", now, row_id=claim.row_id)
    report.dead_channels.append(channel)
    return True


def run_worker(
    engine: Engine,
    settings: Settings,
    stop_event: threading.Event,
    poll_seconds: float = 2.0,
    *,
    session: requests.Session | None = None,
    max_messages: int = 50,
    timeout: float | tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
) -> None:
    """Deliver notifications until ``stop_event`` is set (run it in a thread of the scheduler process)."""
    http = session or requests.Session()
    try:
        while not stop_event.is_set():
            busy = False
            try:
                report = deliver_due(
                    engine, settings, http, max_messages=max_messages, timeout=timeout, stop_event=stop_event
                )
                busy = report.attempted >= max_messages
            except Exception as exc:  # keep the worker alive; the outbox keeps every row
                log.error("notification delivery pass failed: %s: %s", type(exc).__name__, mask(str(exc), None, "?"))
            if not busy:
                stop_event.wait(poll_seconds)
    finally:
        if session is None:
            http.close()
