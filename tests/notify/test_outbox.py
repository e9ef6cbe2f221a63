from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from engine.config import load_settings
from engine.db import session_scope
from engine.models import NotificationOutbox
from engine.notify import MemoryNotifier, Message, Notifier, OutboxNotifier, enqueue, requeue_not_configured
from engine.notify.outbox import (
    NOT_CONFIGURED,
    PENDING,
    forget_dead_webhooks,
    mark_webhook_dead,
    preview,
    status_counts,
)

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
URL = "http://127.0.0.1:9/api/webhooks/1/secret-token-1234567890"


def rows(engine) -> list[NotificationOutbox]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as db:
        return list(db.exec(select(NotificationOutbox).order_by(NotificationOutbox.id)).all())


def test_enqueue_stores_first_and_a_repeated_key_is_a_no_op(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(discord_webhook_signals=URL)
    msg = Message(kind="signal", title="AAPL long", description="entry 101.5")
    first = enqueue(migrated_sqlite, "signals", msg, "signal:AAPL:2026-01-05", settings=settings, now=T0)
    again = enqueue(migrated_sqlite, "signals", Message(title="changed"), "signal:AAPL:2026-01-05", settings=settings)
    assert first == again
    [row] = rows(migrated_sqlite)
    assert row.id == first and row.status == PENDING and row.kind == "signal" and row.attempts == 0
    assert row.payload["body"]["embeds"][0]["title"] == "AAPL long" and row.payload["parts"] == 1
    assert row.last_error is None
    assert preview(row) == "AAPL long\nentry 101.5"


def test_without_a_webhook_the_row_is_kept_as_not_configured_and_requeued_later(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    unset = load_settings()
    row_id = enqueue(migrated_sqlite, "portfolio", Message(title="fill"), "fill:1", settings=unset, now=T0)
    [row] = rows(migrated_sqlite)
    assert row.id == row_id and row.status == NOT_CONFIGURED
    assert "QM_DISCORD_WEBHOOK_PORTFOLIO" in (row.last_error or "")
    assert requeue_not_configured(migrated_sqlite, unset, now=T0) == 0

    configured = load_settings(discord_webhook_portfolio=URL)
    assert requeue_not_configured(migrated_sqlite, configured, now=T0) == 1
    [row] = rows(migrated_sqlite)
    assert row.status == PENDING and row.last_error is None
    # the URL is removed again: waiting rows are parked, not lost
    requeue_not_configured(migrated_sqlite, unset, now=T0)
    assert rows(migrated_sqlite)[0].status == NOT_CONFIGURED


def test_a_message_too_big_for_one_discord_message_gets_sub_keys(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(discord_webhook_signals=URL)
    msg = Message(title="scan", description="z" * 10_000, fields=[(f"f{i}", "v" * 500) for i in range(30)])
    row_id = enqueue(migrated_sqlite, "signals", msg, "scan:2026-01-05", settings=settings, now=T0)
    stored = rows(migrated_sqlite)
    assert len(stored) > 1 and stored[0].id == row_id
    assert [r.idempotency_key for r in stored] == ["scan:2026-01-05"] + [
        f"scan:2026-01-05#{i}" for i in range(2, len(stored) + 1)
    ]
    assert [r.payload["part"] for r in stored] == list(range(1, len(stored) + 1))
    assert enqueue(migrated_sqlite, "signals", msg, "scan:2026-01-05", settings=settings) == row_id
    assert len(rows(migrated_sqlite)) == len(stored)


def test_long_keys_fit_the_column_and_stay_distinct(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings()
    a = enqueue(migrated_sqlite, "signals", Message(title="a"), "k" * 300 + "a", settings=settings)
    b = enqueue(migrated_sqlite, "signals", Message(title="b"), "k" * 300 + "b", settings=settings)
    assert a != b
    assert all(len(r.idempotency_key) <= 128 for r in rows(migrated_sqlite))
    assert enqueue(migrated_sqlite, "signals", Message(title="a"), "k" * 300 + "a", settings=settings) == a


def test_unknown_channels_and_empty_keys_are_refused(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown notification channel"):
        enqueue(migrated_sqlite, "sigals", Message(title="x"), "k", settings=load_settings())
    with pytest.raises(ValueError, match="idempotency key"):
        enqueue(migrated_sqlite, "signals", Message(title="x"), "", settings=load_settings())


def test_concurrent_enqueues_of_one_key_store_it_once(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(discord_webhook_signals=URL)
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        ids.append(enqueue(migrated_sqlite, "signals", Message(title="once"), "race", settings=settings))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(rows(migrated_sqlite)) == 1


def test_a_dead_webhook_parks_the_channel_until_its_url_changes(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(discord_webhook_signals=URL)
    enqueue(migrated_sqlite, "signals", Message(title="one"), "one", settings=settings, now=T0)
    assert mark_webhook_dead(migrated_sqlite, "signals", URL, "HTTP 404 Unknown Webhook", now=T0) == 1
    enqueue(migrated_sqlite, "signals", Message(title="two"), "two", settings=settings, now=T0)
    requeue_not_configured(migrated_sqlite, settings, now=T0)
    messages = [r for r in rows(migrated_sqlite) if r.kind != "dead_webhook"]
    assert [r.status for r in messages] == [NOT_CONFIGURED, NOT_CONFIGURED]
    assert all(
        "dead" in (r.last_error or "") and "QM_DISCORD_WEBHOOK_SIGNALS" in (r.last_error or "") for r in messages
    )
    everything = repr([r.model_dump() for r in rows(migrated_sqlite)])
    assert URL not in everything and "secret-token" not in everything

    new = load_settings(discord_webhook_signals=URL.replace("secret-token", "new-token"))
    assert requeue_not_configured(migrated_sqlite, new, now=T0) == 2
    assert forget_dead_webhooks(migrated_sqlite, "signals") == 1


def test_status_counts_by_channel_and_status(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(discord_webhook_signals=URL)
    enqueue(migrated_sqlite, "signals", Message(title="a"), "a", settings=settings)
    enqueue(migrated_sqlite, "signals", Message(title="b"), "b", settings=settings)
    enqueue(migrated_sqlite, "morning_brew", Message(title="c"), "c", settings=settings)
    counts = status_counts(migrated_sqlite)
    assert counts["signals"]["pending"] == 2 and counts["morning_brew"]["not_configured"] == 1
    assert set(counts) == {"signals", "portfolio", "morning_brew", "playground", "system_status"}


def test_notifiers_implement_the_port(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    outbox = OutboxNotifier(migrated_sqlite, load_settings())
    memory = MemoryNotifier()
    for notifier in (outbox, memory):
        assert isinstance(notifier, Notifier)
        first = notifier.notify("system_status", Message(title="up"), "boot:1")
        assert notifier.notify("system_status", Message(title="up"), "boot:1") == first
    assert len(memory.sent) == 1 and len(rows(migrated_sqlite)) == 1
