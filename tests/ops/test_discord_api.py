"""Issue 12 item 8: Discord rate limits read in the right unit; Cloudflare's 403 is transient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta

import pytest

from engine.notify.discord import versioned
from engine.notify.outbox import PENDING
from tests.notify.fake_discord import FakeDiscord, Reply, rate_limited
from tests.notify.test_discord import T0, all_rows, deliver, queue, settings_for

CLOUDFLARE_403 = Reply(403, text="<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title>"
                                 "</head><body>Sorry, you have been blocked</body></html>")


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server


def test_webhooks_are_posted_to_api_v10(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)  # the unversioned URL, as Discord hands it out
    queue(migrated_sqlite, settings, 1)
    assert deliver(migrated_sqlite, settings).sent == 1
    [got] = fake.received
    assert got.path.startswith("/api/v10/webhooks/1/")
    assert versioned("https://discord.com/api/webhooks/1/tok") == "https://discord.com/api/v10/webhooks/1/tok"
    assert versioned("https://discord.com/api/v6/webhooks/1/tok?x=1") == "https://discord.com/api/v10/webhooks/1/tok?x=1"


def test_a_huge_retry_after_is_capped_to_minutes(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    # 1,500 read as seconds is 25 minutes: a misread unit; no wait may park a channel that long
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    fake.script(rate_limited(1500.0, is_global=True))
    deliver(migrated_sqlite, settings)
    [row] = all_rows(migrated_sqlite)
    assert row.status == PENDING
    assert row.next_attempt_at.replace(tzinfo=UTC) - T0 <= timedelta(minutes=5)


def test_a_cloudflare_403_is_retried_and_the_webhook_stays_alive(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    fake.script(CLOUDFLARE_403)
    report = deliver(migrated_sqlite, settings)
    assert report.dead_channels == [] and report.retried == 1
    [row] = all_rows(migrated_sqlite)
    assert row.status == PENDING and "Cloudflare" in (row.last_error or "")
    later = deliver(migrated_sqlite, settings, T0 + timedelta(hours=1))
    assert later.sent == 1
