"""``python -m engine notify test|status``. Wire in with ``add_notify_commands(sub)`` in engine/cli.py."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

import requests

from engine.config import Settings, get_settings
from engine.db import get_engine, session_scope
from engine.models import NotificationOutbox
from engine.notify.discord import deliver_due
from engine.notify.embeds import sample_message
from engine.notify.outbox import (
    CHANNELS,
    PENDING,
    SENDING,
    SENT,
    STATUSES,
    dead_fingerprints,
    dead_webhooks,
    enqueue,
    env_name,
    status_counts,
    url_fingerprint,
    utc,
    webhook_url,
)


def add_notify_commands(subparsers: Any) -> None:
    """Add ``notify test`` and ``notify status`` to an argparse sub-parser collection."""
    notify = subparsers.add_parser("notify", help="Discord notifications: test the webhooks, show the outbox")
    sub = notify.add_subparsers(dest="notify_command", required=True, metavar="WHAT")

    p = sub.add_parser("test", help="post one sample message to each configured channel")
    p.add_argument("--channel", action="append", choices=CHANNELS, help="only this channel (repeatable)")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for delivery (default 20)")
    p.set_defaults(handler=cmd_notify_test)

    p = sub.add_parser("status", help="outbox counts by channel and status, dead webhooks")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_notify_status)


def _channel_states(settings: Settings, engine: Any) -> dict[str, str]:
    urls = {c: webhook_url(settings, c) for c in CHANNELS}
    dead = dead_fingerprints(engine, [u for u in urls.values() if u])
    return {
        c: "not configured" if u is None else ("dead" if url_fingerprint(u) in dead else "configured")
        for c, u in urls.items()
    }


def cmd_notify_test(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    engine = get_engine(settings.db_url)
    now = datetime.now(UTC)
    channels = args.channel or list(CHANNELS)
    states = _channel_states(settings, engine)
    queued: dict[str, int] = {}
    for channel in channels:
        if states[channel] == "not configured":
            print(f"{channel:<14} not configured (set {env_name(channel)})")
        elif states[channel] == "dead":
            print(f"{channel:<14} webhook is dead (Discord said it does not exist); set a new {env_name(channel)}")
        else:
            key = f"notify-test:{channel}:{now.isoformat()}"
            queued[channel] = enqueue(engine, channel, sample_message(channel, now), key, settings=settings)

    rows: dict[str, NotificationOutbox] = {}
    deadline = time.monotonic() + args.wait
    with requests.Session() as http:
        while queued:
            deliver_due(engine, settings, http)
            rows = _rows(engine, queued)
            waiting = [r for r in rows.values() if r.status in (PENDING, SENDING)]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            next_due = min(utc(r.next_attempt_at) for r in waiting)
            time.sleep(max(0.05, min(left, (next_due - datetime.now(UTC)).total_seconds(), 2.0)))

    ok = bool(queued)
    for channel, row in rows.items():
        if row.status == SENT:
            print(f"{channel:<14} sent")
        else:
            ok = False
            print(f"{channel:<14} {row.status}: {row.last_error or ''}".rstrip())
    if not queued:
        print("no webhook is configured: nothing was sent")
    return 0 if ok else 1


def _rows(engine: Any, ids: dict[str, int]) -> dict[str, NotificationOutbox]:
    with session_scope(engine) as db:
        return {c: row for c, i in ids.items() if (row := db.get(NotificationOutbox, i)) is not None}


def cmd_notify_status(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    engine = get_engine(settings.db_url)
    counts = status_counts(engine)
    states = _channel_states(settings, engine)
    dead = dead_webhooks(engine)
    if args.json:
        out = {
            "channels": {c: {"webhook": states.get(c, "unknown"), **n} for c, n in counts.items()},
            "dead_webhooks": [{**d, "since": d["since"].isoformat()} for d in dead],
        }
        print(json.dumps(out))
        return 0
    header = f"{'channel':<14} {'webhook':<15}" + "".join(f" {s:>14}" for s in STATUSES)
    print(header)
    for channel, n in counts.items():
        print(f"{channel:<14} {states.get(channel, 'unknown'):<15}" + "".join(f" {n.get(s, 0):>14}" for s in STATUSES))
    for d in dead:
        print(f"dead webhook for {d['channel']} since {d['since']:%Y-%m-%d %H:%M} UTC: {d['reason']}")
    return 0
