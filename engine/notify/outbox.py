"""The notification outbox: every notification is written here first, in its own transaction; the delivery
worker (engine.notify.discord) sends it later. One row per Discord message.

Row states (``NotificationOutbox.status``):

- ``pending``: waiting to go out at ``next_attempt_at``;
- ``sending``: claimed by a worker; ``next_attempt_at`` then holds the end of the claim's lease;
- ``sent``: Discord accepted it (``sent_at``);
- ``failed``: Discord refused the payload itself (a 4xx other than 401/403/404/429); ``last_error`` says why;
- ``not_configured``: the channel has no webhook URL, or its URL is dead (Discord said 401/403/404). Such rows
  go back to ``pending`` as soon as a (new) URL is configured: :func:`requeue_not_configured`.

``payload`` is ``{"body": <the Discord webhook JSON>, "part": i, "parts": n, "unconfirmed": bool,
"discord_message_id": str | None}``. A notification too big for one Discord message becomes ``n`` rows with
the keys ``key``, ``key#2``, ... ``key#n``.

Dead webhooks are remembered in this table too, as rows of kind ``dead_webhook`` and status ``dead_webhook``
keyed ``dead-webhook:<sha256 of the URL>``: never the URL itself. A restart therefore does not hammer a dead
webhook, and a changed URL (a different hash) is used again at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from engine.config import Settings, get_settings
from engine.db import session_scope
from engine.models import NotificationOutbox
from engine.notify.embeds import Message, plain_text, render, violations

log = logging.getLogger(__name__)

CHANNELS = ("signals", "portfolio", "morning_brew", "playground", "system_status")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
NOT_CONFIGURED = "not_configured"
DEAD_WEBHOOK = "dead_webhook"  # status and kind of the rows remembering dead webhook URLs
STATUSES = (PENDING, SENDING, SENT, FAILED, NOT_CONFIGURED)

KEY_MAX = 120  # the column holds 128; room for "#NN" part suffixes
KIND_MAX = 32


def utc(ts: datetime | None = None) -> datetime:
    """``ts`` (or now) as an aware UTC datetime; SQLite hands back naive UTC values."""
    if ts is None:
        return datetime.now(UTC)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def label(channel: str) -> str:
    """How a webhook is named in logs, errors and pages: never its URL."""
    return f"discord:{channel}"


def env_name(channel: str) -> str:
    return f"QM_DISCORD_WEBHOOK_{channel.upper()}"


def webhook_url(settings: Settings, channel: str) -> str | None:
    secret: SecretStr | None = settings.webhook(channel)
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def url_fingerprint(url: str) -> str:
    """A stable, non-reversible name for a webhook URL (its token is long and random, so a plain hash is safe)."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _dead_key(url: str) -> str:
    return f"dead-webhook:{url_fingerprint(url)}"


def normalise_key(key: str) -> str:
    """Keys longer than KEY_MAX keep their start and get a hash of the whole key, so they stay unique."""
    if not key:
        raise ValueError("an idempotency key is required")
    if len(key) <= KEY_MAX:
        return key
    return f"{key[: KEY_MAX - 17]}~{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def part_key(key: str, part: int) -> str:
    return key if part == 1 else f"{key}#{part}"


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown notification channel {channel!r}; expected one of {', '.join(CHANNELS)}")


def _not_configured_reason(channel: str) -> str:
    return f"no webhook URL for {label(channel)} (set {env_name(channel)}); kept here and sent once it is set"


def _dead_reason(channel: str, detail: str) -> str:
    return (
        f"{label(channel)} webhook is dead ({detail}); not used again until {env_name(channel)} changes. "
        "Messages are kept and sent to the new URL"
    )


def dead_fingerprints(engine: Engine, urls: Iterable[str]) -> set[str]:
    """The fingerprints among ``urls`` that are marked dead."""
    keys = {_dead_key(u): url_fingerprint(u) for u in urls}
    if not keys:
        return set()
    with session_scope(engine) as db:
        found = db.exec(
            select(NotificationOutbox.idempotency_key).where(col(NotificationOutbox.idempotency_key).in_(list(keys)))
        ).all()
    return {keys[k] for k in found}


def enqueue(
    engine: Engine,
    channel: str,
    message: Message,
    idempotency_key: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> int:
    """Store ``message`` for ``channel`` and return the id of its (first) outbox row.

    The rows are committed before anything is sent. The same key again is a no-op that returns the existing
    row's id, so a notification is never queued twice. Without a usable webhook URL the rows are stored as
    ``not_configured`` (shown in the console) and go out once the URL is configured."""
    _check_channel(channel)
    settings = settings or get_settings()
    now = utc(now)
    key = normalise_key(idempotency_key)
    existing = _find(engine, key)
    if existing is not None:
        return existing

    bodies = render(message)
    for body in bodies:
        problems = violations(body)
        if problems:  # a renderer bug; Discord will refuse the row and it ends up ``failed`` with the reason
            log.error("notification %s for %s breaks Discord limits: %s", key, label(channel), problems)
    url = webhook_url(settings, channel)
    if url is None:
        status, reason = NOT_CONFIGURED, _not_configured_reason(channel)
    elif dead_fingerprints(engine, [url]):
        status, reason = NOT_CONFIGURED, _dead_reason(channel, "Discord answered 'unknown webhook' earlier")
    else:
        status, reason = PENDING, None
    rows = [
        NotificationOutbox(
            idempotency_key=part_key(key, i),
            channel=channel,
            kind=(message.kind or "info")[:KIND_MAX],
            payload={"body": body, "part": i, "parts": len(bodies), "unconfirmed": False, "discord_message_id": None},
            status=status,
            attempts=0,
            next_attempt_at=now,
            last_error=reason,
            created_at=now,
        )
        for i, body in enumerate(bodies, start=1)
    ]
    try:
        with session_scope(engine) as db:
            # Re-check inside the write transaction (SQLite serialises writers; on PostgreSQL a concurrent
            # insert of the same key raises IntegrityError below).
            again = db.exec(select(NotificationOutbox.id).where(NotificationOutbox.idempotency_key == key)).first()
            if again is not None:
                return again
            db.add_all(rows)
            db.flush()
            first_id = rows[0].id
    except IntegrityError:
        existing = _find(engine, key)
        if existing is None:
            raise
        return existing
    assert first_id is not None
    return first_id


def _find(engine: Engine, key: str) -> int | None:
    with session_scope(engine) as db:
        return db.exec(select(NotificationOutbox.id).where(NotificationOutbox.idempotency_key == key)).first()


def requeue_not_configured(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Bring the outbox in line with the configured webhooks; return how many rows went back to ``pending``.

    For a channel with a usable URL (set and not marked dead), its ``not_configured`` rows become ``pending``.
    For a channel without one, its ``pending`` rows become ``not_configured`` (the URL was removed or died)."""
    now = utc(now)
    urls = {c: webhook_url(settings, c) for c in CHANNELS}
    dead = dead_fingerprints(engine, [u for u in urls.values() if u])
    requeued = 0
    with session_scope(engine) as db:
        for channel, url in urls.items():
            usable = url is not None and url_fingerprint(url) not in dead
            if usable:
                result = db.exec(
                    update(NotificationOutbox)
                    .where(col(NotificationOutbox.channel) == channel, col(NotificationOutbox.status) == NOT_CONFIGURED)
                    .values(status=PENDING, next_attempt_at=now, last_error=None)
                    .execution_options(synchronize_session=False)
                )
                requeued += result.rowcount or 0
            else:
                reason = (
                    _not_configured_reason(channel)
                    if url is None
                    else _dead_reason(channel, "Discord answered 'unknown webhook'")
                )
                db.exec(
                    update(NotificationOutbox)
                    .where(col(NotificationOutbox.channel) == channel, col(NotificationOutbox.status) == PENDING)
                    .values(status=NOT_CONFIGURED, last_error=reason)
                    .execution_options(synchronize_session=False)
                )
    if requeued:
        log.info("requeued %d notifications whose webhook is now configured", requeued)
    return requeued


def mark_webhook_dead(
    engine: Engine, channel: str, url: str, detail: str, now: datetime | None = None, row_id: int | None = None
) -> int:
    """Remember that ``url`` is dead and park the channel's waiting rows (and the claimed ``row_id``) as
    ``not_configured``; return how many rows were parked."""
    now = utc(now)
    reason = _dead_reason(channel, detail)
    key = _dead_key(url)
    try:
        with session_scope(engine) as db:
            if db.exec(select(NotificationOutbox.id).where(NotificationOutbox.idempotency_key == key)).first() is None:
                db.add(
                    NotificationOutbox(
                        idempotency_key=key,
                        channel=channel,
                        kind=DEAD_WEBHOOK,
                        payload={"url_sha256": url_fingerprint(url), "detail": detail},
                        status=DEAD_WEBHOOK,
                        next_attempt_at=now,
                        last_error=reason,
                        created_at=now,
                    )
                )
    except IntegrityError:
        pass  # another worker recorded it first
    with session_scope(engine) as db:
        waiting = col(NotificationOutbox.status) == PENDING
        if row_id is not None:
            waiting = waiting | (col(NotificationOutbox.id) == row_id)
        result = db.exec(
            update(NotificationOutbox)
            .where(col(NotificationOutbox.channel) == channel, waiting)
            .values(status=NOT_CONFIGURED, last_error=reason)
            .execution_options(synchronize_session=False)
        )
        parked = result.rowcount or 0
    log.warning("%s: webhook is dead (%s); parked %d notifications", label(channel), detail, parked)
    return parked


def forget_dead_webhooks(engine: Engine, channel: str | None = None) -> int:
    """Forget dead-webhook marks (all, or those recorded for ``channel``), e.g. after Discord restored a webhook;
    the parked rows go out on the next delivery pass."""
    with session_scope(engine) as db:
        query = select(NotificationOutbox).where(NotificationOutbox.kind == DEAD_WEBHOOK)
        if channel is not None:
            query = query.where(NotificationOutbox.channel == channel)
        marks = db.exec(query).all()
        for mark in marks:
            db.delete(mark)
    return len(marks)


def status_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """``{channel: {status: count}}`` for every channel (dead-webhook marks are not counted)."""
    counts: dict[str, dict[str, int]] = {c: dict.fromkeys(STATUSES, 0) for c in CHANNELS}
    with session_scope(engine) as db:
        rows = db.exec(
            select(NotificationOutbox.channel, NotificationOutbox.status, func.count())
            .where(NotificationOutbox.kind != DEAD_WEBHOOK)
            .group_by(NotificationOutbox.channel, NotificationOutbox.status)
        ).all()
    for channel, status, n in rows:
        counts.setdefault(channel, dict.fromkeys(STATUSES, 0))[status] = n
    return counts


def dead_webhooks(engine: Engine) -> list[dict[str, Any]]:
    """The remembered dead webhooks: channel, since, reason (never the URL)."""
    with session_scope(engine) as db:
        marks = db.exec(select(NotificationOutbox).where(NotificationOutbox.kind == DEAD_WEBHOOK)).all()
    return [{"channel": m.channel, "since": utc(m.created_at), "reason": m.last_error} for m in marks]


def preview(row: NotificationOutbox) -> str:
    """The visible text of an outbox row, for the console."""
    body = (row.payload or {}).get("body")
    return plain_text([body]) if body else ""


class OutboxNotifier:
    """The :class:`~engine.notify.ports.Notifier` the engine uses: records to the outbox; the worker sends."""

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings

    def notify(self, channel: str, message: Message, key: str) -> int:
        return enqueue(self.engine, channel, message, key, settings=self.settings or get_settings())
