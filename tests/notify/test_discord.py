"""Delivery against a local fake Discord: nothing lost, nothing doubled, limits kept, secrets kept."""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlmodel import select

from engine.config import Settings, load_settings
from engine.db import make_engine, session_scope
from engine.models import NotificationOutbox
from engine.notify import Embed, Message, deliver_due, enqueue, run_worker
from engine.notify.cli import add_notify_commands
from engine.notify.discord import BACKOFF_MAX_SECONDS, DUPLICATE_NOTE, LEASE, backoff_seconds
from engine.notify.embeds import TRUNCATION_MARKER, plain_text
from engine.notify.outbox import FAILED, NOT_CONFIGURED, PENDING, SENDING, SENT
from tests.notify.fake_discord import (
    BAD_REQUEST,
    NO_CONTENT,
    OK,
    SERVER_ERROR,
    UNKNOWN_WEBHOOK,
    FakeDiscord,
    Reply,
    free_port,
    rate_limited,
    too_slow,
)
from tests.notify.test_embeds import assert_within_limits, descriptions, field_values

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
SIGNALS = "1/signals-token-aaaaaaaaaaaa"
PORTFOLIO = "2/portfolio-token-bbbbbbbbbbbb"
FAST = (2.0, 2.0)  # connect, read timeouts for the tests
SHORT = (2.0, 0.3)  # for the scripted timeouts (the fake answers after 0.8 s)


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server


def settings_for(fake: FakeDiscord | None = None, port: int | None = None, **extra: Any) -> Settings:
    base = fake.url("").rstrip("/") if fake else f"http://127.0.0.1:{port}/api/webhooks"
    return load_settings(
        discord_webhook_signals=f"{base}/{SIGNALS}", discord_webhook_portfolio=f"{base}/{PORTFOLIO}", **extra
    )


def all_rows(engine) -> list[NotificationOutbox]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as db:
        return list(
            db.exec(
                select(NotificationOutbox)
                .where(NotificationOutbox.kind != "dead_webhook")
                .order_by(NotificationOutbox.id)
            ).all()
        )


def receipts(engine, fake: FakeDiscord) -> dict[str, list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """Every request the server got, grouped by the idempotency key of the outbox row it carried."""

    def identity(body: dict[str, Any]) -> str:  # the body as stored, without a possible-duplicate note
        content = body.get("content", "").removeprefix(DUPLICATE_NOTE).removeprefix("\n")
        return json.dumps({**body, "content": content}, sort_keys=True)

    by_body = {identity(r.payload["body"]): r.idempotency_key for r in all_rows(engine)}
    assert len(by_body) == len(all_rows(engine)), "test messages must be distinct"
    out: dict[str, list[dict[str, Any]]] = {}
    for body in fake.bodies():
        out.setdefault(by_body[identity(body)], []).append(body)
    return out


def deliver(engine, settings: Settings, now: datetime = T0, **kw: Any):  # type: ignore[no-untyped-def]
    return deliver_due(engine, settings, now=now, rng=random.Random(1), **{"timeout": FAST, **kw})


def queue(engine, settings: Settings, n: int, channel: str = "signals", prefix: str = "m") -> list[int]:  # type: ignore[no-untyped-def]
    return [
        enqueue(
            engine,
            channel,
            Message(kind="signal", title=f"{prefix}{i}", description=channel),
            f"{channel}:{prefix}{i}",
            settings=settings,
            now=T0,
        )
        for i in range(n)
    ]


def test_due_rows_are_sent_once_in_order_with_wait_true(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 3, "signals")
    queue(migrated_sqlite, settings, 2, "portfolio")
    fake.script(NO_CONTENT, webhook=PORTFOLIO)
    report = deliver(migrated_sqlite, settings)
    assert (report.attempted, report.sent) == (5, 5)
    assert all(r.status == SENT and r.sent_at is not None for r in all_rows(migrated_sqlite))
    assert [b["embeds"][0]["title"] for b in fake.bodies(SIGNALS)] == ["m0", "m1", "m2"]
    assert all(r.query == {"wait": ["true"]} for r in fake.received)
    ids = [r.payload["discord_message_id"] for r in all_rows(migrated_sqlite)]
    assert sum(i is not None for i in ids) == 4  # the 204 answer carries no message id
    assert deliver(migrated_sqlite, settings).attempted == 0  # nothing is sent twice
    assert all(len(v) == 1 for v in receipts(migrated_sqlite, fake).values())


def test_429_honours_retry_after_from_the_body_and_is_not_a_failure(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 2)
    fake.script(rate_limited(2.5))
    report = deliver(migrated_sqlite, settings)
    assert (report.rate_limited, report.sent) == (1, 0)  # the second row waits behind the first
    head, _ = all_rows(migrated_sqlite)
    assert head.status == PENDING and head.attempts == 0
    assert head.next_attempt_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=2.5)
    assert deliver(migrated_sqlite, settings, T0 + timedelta(seconds=2)).attempted == 0
    assert deliver(migrated_sqlite, settings, T0 + timedelta(seconds=2.5)).sent == 2
    assert [b["embeds"][0]["title"] for b in fake.bodies()] == ["m0", "m0", "m1"]


def test_429_takes_the_longer_of_the_header_and_the_body(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    fake.script(rate_limited(0.5, header="7"))
    deliver(migrated_sqlite, settings)
    [row] = all_rows(migrated_sqlite)
    assert row.next_attempt_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=7)
    assert "rate limited" in (row.last_error or "")


def test_a_global_429_holds_every_channel(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1, "signals")
    queue(migrated_sqlite, settings, 1, "portfolio")
    fake.script(rate_limited(3, is_global=True))
    report = deliver(migrated_sqlite, settings)
    assert report.attempted == 1
    assert all(r.next_attempt_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=3) for r in all_rows(migrated_sqlite))


def test_an_empty_rate_limit_bucket_pauses_the_channel(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 2)
    fake.script(Reply(204, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}))
    assert deliver(migrated_sqlite, settings).sent == 1
    assert deliver(migrated_sqlite, settings, T0 + timedelta(seconds=1)).attempted == 0
    assert deliver(migrated_sqlite, settings, T0 + timedelta(seconds=1.5)).sent == 1


def test_5xx_backs_off_exponentially_and_bounded_then_delivers_once(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    now, delays = T0, []
    for _ in range(15):
        fake.script(SERVER_ERROR)
        assert deliver(migrated_sqlite, settings, now).retried == 1
        [row] = all_rows(migrated_sqlite)
        delays.append((row.next_attempt_at.replace(tzinfo=UTC) - now).total_seconds())
        now = row.next_attempt_at.replace(tzinfo=UTC)
    assert row.status == PENDING and row.attempts == 15 and "HTTP 500" in (row.last_error or "")
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4 and 4 <= delays[2] <= 8
    assert max(delays) <= BACKOFF_MAX_SECONDS and delays[-1] >= BACKOFF_MAX_SECONDS / 2
    assert deliver(migrated_sqlite, settings, now).sent == 1
    ok = [r for r in fake.received if r.answered_ok]
    assert len(ok) == 1 and "content" not in ok[0].body  # a 5xx proves nothing was posted: no duplicate note


def test_backoff_is_bounded_for_any_attempt_count() -> None:
    rng = random.Random(3)
    for attempts in range(1, 200):
        assert 0 < backoff_seconds(attempts, rng) <= BACKOFF_MAX_SECONDS


def test_a_timeout_is_retried_with_a_possible_duplicate_note(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    fake.script(too_slow(0.8))
    report = deliver(migrated_sqlite, settings, timeout=SHORT)
    assert (report.retried, report.unconfirmed) == (1, 1)
    [row] = all_rows(migrated_sqlite)
    assert row.status == PENDING and row.payload["unconfirmed"] is True and "ReadTimeout" in (row.last_error or "")
    assert deliver(migrated_sqlite, settings, T0 + timedelta(minutes=5)).sent == 1
    first, second = fake.received
    assert not first.answered_ok and second.answered_ok
    assert second.body["content"] == DUPLICATE_NOTE and second.body["embeds"] == first.body["embeds"]
    assert_within_limits(second.body)


def test_messages_survive_a_network_outage(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens yet: connection refused
    settings = settings_for(port=port)
    queue(migrated_sqlite, settings, 4, "signals")
    queue(migrated_sqlite, settings, 2, "portfolio")
    for minutes in (0, 1, 5, 40, 120):
        report = deliver(migrated_sqlite, settings, T0 + timedelta(minutes=minutes))
        assert report.sent == 0 and report.unconfirmed == 0
    rows = all_rows(migrated_sqlite)
    assert [r.status for r in rows] == [PENDING] * 6
    assert [r.attempts for r in rows] == [5, 0, 0, 0, 5, 0]  # only each channel's head was tried
    with FakeDiscord(port) as fake:
        report = deliver(migrated_sqlite, settings, T0 + timedelta(hours=3))
        assert report.sent == 6
        got = receipts(migrated_sqlite, fake)
        assert len(got) == 6 and all(len(v) == 1 and "content" not in v[0] for v in got.values())
        assert [b["embeds"][0]["title"] for b in fake.bodies(SIGNALS)] == ["m0", "m1", "m2", "m3"]


def test_a_404_retires_the_webhook_and_keeps_its_messages(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 3, "signals")
    queue(migrated_sqlite, settings, 1, "portfolio")
    fake.script(UNKNOWN_WEBHOOK, webhook=SIGNALS)
    report = deliver(migrated_sqlite, settings)
    assert report.dead_channels == ["signals"] and report.sent == 1
    signals = [r for r in all_rows(migrated_sqlite) if r.channel == "signals"]
    assert [r.status for r in signals] == [NOT_CONFIGURED] * 3
    assert all("dead" in (r.last_error or "") and "404" in (r.last_error or "") for r in signals)
    # later passes, new messages and a restarted process leave the dead webhook alone
    queue(migrated_sqlite, settings, 1, "signals", prefix="late")
    fresh = make_engine(str(migrated_sqlite.url))
    assert deliver(fresh, settings, T0 + timedelta(hours=1)).attempted == 0
    assert len(fake.bodies(SIGNALS)) == 1
    # a new URL for the channel: everything kept goes out, in order
    moved = load_settings(
        discord_webhook_signals=fake.url("9/replacement-token-cccccccccc"),
        discord_webhook_portfolio=settings.discord_webhook_portfolio,
    )
    assert deliver(fresh, moved, T0 + timedelta(hours=2)).sent == 4
    assert [b["embeds"][0]["title"] for b in fake.bodies("9/replacement-token-cccccccccc")] == [
        "m0",
        "m1",
        "m2",
        "late0",
    ]


def test_a_refused_payload_fails_alone_and_the_channel_goes_on(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 2)
    fake.script(BAD_REQUEST)
    report = deliver(migrated_sqlite, settings)
    assert (report.failed, report.sent) == (1, 1)
    bad, good = all_rows(migrated_sqlite)
    assert bad.status == FAILED and "Invalid Form Body" in (bad.last_error or "") and good.status == SENT


def test_oversized_notifications_arrive_within_limits_and_whole(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    big = {
        "fields30": Message(title="fields", fields=[(f"field {i}", f"value {i} " * 20) for i in range(30)]),
        "desc10k": Message(title="description", description="".join(f"{i:06d} lorem ipsum\n" for i in range(600))),
        "embeds12": Message(embeds=[Embed(title=f"embed {i}", description=f"body {i}") for i in range(12)]),
        "total7000": Message(embeds=[Embed(title=f"part {i}", description=f"{i}" * 1750) for i in range(4)]),
        "content": Message(content=" ".join(f"announcement{i}" for i in range(300)), title="with content"),
        "trimmed": Message(title="T" * 400, footer="F" * 2100, fields=[("N" * 300, "v")]),
    }
    for key, msg in big.items():
        enqueue(migrated_sqlite, "signals", msg, key, settings=settings, now=T0)
    rows = all_rows(migrated_sqlite)
    assert len(rows) > len(big)  # some were split into several messages
    assert deliver(migrated_sqlite, settings, max_messages=100).sent == len(rows)
    for body in fake.bodies():
        assert_within_limits(body)
    got = receipts(migrated_sqlite, fake)
    assert len(got) == len(rows) and all(len(v) == 1 for v in got.values())
    # Split text arrives whole and in order (one channel: outbox order); unsplittable text is trimmed visibly.
    received = fake.bodies()
    sources = [src for msg in big.values() for src in msg.all_embeds()]
    assert descriptions(received) == "".join(src.description for src in sources)
    assert "".join(field_values(received)) == "".join(str(f[1]) for src in sources for f in src.fields)
    assert "".join(b.get("content", "") for b in received) == big["content"].content
    text = plain_text(received)
    assert text.count(TRUNCATION_MARKER) == 3  # title, footer, field name: each trimmed visibly


class CrashAfterPost:
    """The process dies after Discord got the message but before it was marked sent."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.http.post(*args, **kwargs)
        raise SystemExit("killed")


class CrashBeforePost:
    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise SystemExit("killed")


@pytest.mark.parametrize("crash", [CrashAfterPost, CrashBeforePost])
def test_a_crash_mid_send_is_resent_after_the_lease_with_a_note(migrated_sqlite, fake, crash) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 2)
    with pytest.raises(SystemExit):
        deliver(migrated_sqlite, settings, session=crash())
    head, _ = all_rows(migrated_sqlite)
    assert head.status == SENDING and head.attempts == 1
    fresh = make_engine(str(migrated_sqlite.url))  # the restarted process
    # while the lease runs, the row may still be in flight with its worker: not touched, and nothing overtakes it
    assert deliver(fresh, settings, T0 + LEASE - timedelta(seconds=1)).attempted == 0
    assert deliver(fresh, settings, T0 + LEASE).sent == 2
    got = receipts(fresh, fake)
    resent = got["signals:m0"][-1]
    assert resent["content"] == DUPLICATE_NOTE  # at-least-once in this window, visibly marked
    assert len(got["signals:m0"]) == (2 if crash is CrashAfterPost else 1)
    assert len(got["signals:m1"]) == 1 and "content" not in got["signals:m1"][0]


def test_a_worker_stopped_midway_and_a_fresh_one_deliver_everything_once(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    for i in range(10):
        enqueue(migrated_sqlite, "signals", Message(title=f"s{i}"), f"s{i}", settings=settings)
        enqueue(migrated_sqlite, "portfolio", Message(title=f"p{i}"), f"p{i}", settings=settings)
    stop = threading.Event()
    fake.on_request = lambda _r: stop.set() if len(fake.received) >= 5 else None
    worker = threading.Thread(target=run_worker, args=(migrated_sqlite, settings, stop, 0.05), kwargs={"timeout": FAST})
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    statuses = Counter(r.status for r in all_rows(migrated_sqlite))
    assert 5 <= statuses[SENT] < 20 and statuses[SENDING] == 0

    fresh = make_engine(str(migrated_sqlite.url))
    stop2 = threading.Event()
    fake.on_request = lambda _r: stop2.set() if len(fake.received) >= 20 else None
    run_worker(fresh, settings, stop2, 0.05, timeout=FAST)
    assert Counter(r.status for r in all_rows(fresh)) == {SENT: 20}
    got = receipts(fresh, fake)
    assert len(got) == 20 and all(len(v) == 1 for v in got.values())
    assert [b["embeds"][0]["title"] for b in fake.bodies(SIGNALS)] == [f"s{i}" for i in range(10)]


def test_two_workers_at_once_never_send_a_row_twice(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    for i in range(15):
        enqueue(migrated_sqlite, "signals", Message(title=f"s{i}"), f"s{i}", settings=settings)
        enqueue(migrated_sqlite, "portfolio", Message(title=f"p{i}"), f"p{i}", settings=settings)
    other = make_engine(str(migrated_sqlite.url))
    barrier = threading.Barrier(2)

    def work(engine) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        for _ in range(40):
            deliver_due(engine, settings, timeout=FAST, max_messages=3)

    threads = [threading.Thread(target=work, args=(e,)) for e in (migrated_sqlite, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = receipts(migrated_sqlite, fake)
    assert len(got) == 30 and all(len(v) == 1 for v in got.values())
    assert [b["embeds"][0]["title"] for b in fake.bodies(PORTFOLIO)] == [f"p{i}" for i in range(15)]


def test_not_configured_channels_are_kept_and_sent_once_configured(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    enqueue(migrated_sqlite, "morning_brew", Message(title="brew"), "brew:2026-01-05", settings=settings, now=T0)
    assert deliver(migrated_sqlite, settings).attempted == 0
    assert all_rows(migrated_sqlite)[0].status == NOT_CONFIGURED
    later = settings_for(fake, discord_webhook_morning_brew=fake.url("3/brew-token-dddddddddddd"))
    report = deliver(migrated_sqlite, later, T0 + timedelta(hours=1))
    assert (report.requeued, report.sent) == (1, 1)
    assert [b["embeds"][0]["title"] for b in fake.bodies("3/brew-token-dddddddddddd")] == ["brew"]


def test_webhook_urls_never_reach_the_database_or_the_logs(migrated_sqlite, fake, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    port = free_port()
    settings = load_settings(
        discord_webhook_signals=fake.url(SIGNALS),
        discord_webhook_portfolio=f"http://127.0.0.1:{port}/api/webhooks/{PORTFOLIO}",  # refused
        discord_webhook_playground=fake.url("4/playground-token-eeeeeeeeeee"),
    )
    queue(migrated_sqlite, settings, 3, "signals")
    queue(migrated_sqlite, settings, 1, "portfolio")
    queue(migrated_sqlite, settings, 1, "playground")
    fake.script(SERVER_ERROR, too_slow(0.8), OK, webhook=SIGNALS)
    fake.script(UNKNOWN_WEBHOOK, webhook="4/playground-token-eeeeeeeeeee")
    for minutes in (0, 10, 60):
        report = deliver(migrated_sqlite, settings, T0 + timedelta(minutes=minutes), timeout=SHORT)
    assert report.errors or report.sent
    with session_scope(migrated_sqlite) as db:
        stored = repr([r.model_dump() for r in db.exec(select(NotificationOutbox)).all()])
    secrets = ("token-", "/api/webhooks/1/", "/api/webhooks/2/", "/api/webhooks/4/")
    for secret in secrets:
        assert secret not in stored
        assert secret not in caplog.text
    assert "discord:portfolio" in stored and "discord:playground" in stored


def test_run_worker_survives_a_broken_pass_and_stops_on_request(migrated_sqlite, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import engine.notify.discord as discord

    calls = []

    def broken(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) >= 3:
            kwargs["stop_event"].set()
        raise RuntimeError("database went away")

    monkeypatch.setattr(discord, "deliver_due", broken)
    stop = threading.Event()
    run_worker(migrated_sqlite, load_settings(), stop, poll_seconds=0.01)
    assert len(calls) == 3


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_notify_commands(sub)
    return parser.parse_args(argv)


def test_notify_test_and_status_commands(migrated_sqlite, fake, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from engine.config import get_settings

    monkeypatch.setenv("QM_DATABASE_URL", str(migrated_sqlite.url))
    monkeypatch.setenv("QM_DISCORD_WEBHOOK_SIGNALS", fake.url(SIGNALS))
    monkeypatch.setenv("QM_DISCORD_WEBHOOK_SYSTEM_STATUS", fake.url("5/status-token-ffffffffffff"))
    get_settings.cache_clear()

    args = _cli(["notify", "test", "--wait", "5"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "signals        sent" in out and "system_status  sent" in out
    assert "portfolio      not configured (set QM_DISCORD_WEBHOOK_PORTFOLIO)" in out
    assert len(fake.received) == 2 and "token" not in out

    args = _cli(["notify", "status", "--json"])
    assert args.handler(args) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["channels"]["signals"]["sent"] == 1 and status["channels"]["signals"]["webhook"] == "configured"
    assert status["channels"]["portfolio"]["webhook"] == "not configured"

    fake.script(UNKNOWN_WEBHOOK)
    args = _cli(["notify", "test", "--channel", "signals", "--wait", "1"])
    assert args.handler(args) == 1
    assert "dead" in capsys.readouterr().out
    args = _cli(["notify", "status"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "dead webhook for signals" in out and "token" not in out


def test_a_malformed_or_huge_retry_after_is_bounded(migrated_sqlite, fake) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(fake)
    queue(migrated_sqlite, settings, 1)
    fake.script(Reply(429, {"retry_after": "soon"}, {"Retry-After": "1e12"}))
    deliver(migrated_sqlite, settings)
    [row] = all_rows(migrated_sqlite)
    assert row.status == PENDING and row.next_attempt_at.replace(tzinfo=UTC) == T0 + timedelta(minutes=5)
