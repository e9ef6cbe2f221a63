"""What to announce after each job of the trading day (the report builders are in engine.notify.reports).

The runtime calls :func:`after_job` after every successful job. Each job enqueues:

- every job: the sweep of recent activity not announced yet: exit orders (signals), fills, scale-outs and
  closed positions (portfolio). Intraday is where they happen; the post-market adds expiry settlements and
  late broker fills.
- ``premarket``: the Morning Brew (morning_brew) and one message per entry signal of the day's scan (signals);
- ``postmarket``: the portfolio digest (portfolio), the post-market report (morning_brew) and the daily health
  check (system_status);
- ``nightly``: a health alert (system_status) only when a check fails.

Every message has a deterministic idempotency key (see engine.notify.reports), so running a job's hook again
enqueues nothing new. Reports are built inside one read-only session that is closed before anything is
enqueued (the outbox writes in its own transactions; SQLite allows one writer at a time).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.db import read_scope
from engine.models import NotificationOutbox
from engine.notify import reports
from engine.notify.outbox import OutboxNotifier
from engine.notify.ports import Notifier

log = logging.getLogger(__name__)

def build_reports(session: Session, settings: Any, job_id: str, now: datetime, newest_bar: date | None = None,
                  wall_now: datetime | None = None) -> list[reports.Report]:
    """The reports ``job_id`` produces at market time ``now``, in the order they should be posted."""
    out: list[reports.Report] = []
    if job_id == "premarket":
        out.append(reports.morning_brew(session, settings, now))
        out += reports.entry_signals(session, settings, now)
    out += reports.exit_orders(session, now)
    out += reports.fills(session, now)
    out += reports.scale_outs(session, now)
    out += reports.closed_positions(session, now)
    if job_id == "postmarket":
        out.append(reports.portfolio_digest(session, settings, now))
        out.append(reports.postmarket_report(session, settings, now))
    if job_id in ("postmarket", "nightly"):
        health = reports.health_report(session, settings, now, job_id, newest_bar, wall_now or datetime.now(UTC))
        if health is not None:
            out.append(health)
    return out


def newest_stored_bar(settings: Any, now: datetime) -> date | None:
    """The newest trading day in the bar store (its recent months only)."""
    from engine.data.sources import bar_store

    start = reports.market_date(now) - timedelta(days=120)
    dates = bar_store(settings).stored_dates(start=start)
    return dates[-1].astype(object) if len(dates) else None


def _enqueued(engine: Engine, keys: list[str]) -> set[str]:
    found: set[str] = set()
    with read_scope(engine) as session:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            found.update(session.exec(select(NotificationOutbox.idempotency_key)
                                      .where(col(NotificationOutbox.idempotency_key).in_(chunk))).all())
    return found


REPLAY_CHANNEL = "playground"
REPLAY_MARK = "[REPLAY]"


def as_replayed(report: reports.Report) -> reports.Report:
    """A replayed session's report: to the playground channel only, marked as replayed in title, text and
    key, so it can never be taken for (or collide with) a live message."""
    msg = report.message
    marked = replace(msg, title=f"{REPLAY_MARK} {msg.title}"[:256],
                     content=(f"{REPLAY_MARK} replayed session, not live trading. {msg.content}").strip()[:2000],
                     footer=f"replayed · {msg.footer}".strip(" ·")[:2048])
    return replace(report, channel=REPLAY_CHANNEL, message=marked, key=f"replay:{report.key}")


def after_job(ctx: Any, job_id: str, replayed: bool = False, notifier: Notifier | None = None) -> None:
    """Called by the scheduler after a job; queues its reports and alerts through the Notifier port (the
    outbox by default). ``replayed``: every report goes out as_replayed."""
    notifier = notifier or OutboxNotifier(ctx.db, ctx.settings)
    now = ctx.now
    newest = newest_stored_bar(ctx.settings, now) if job_id in ("postmarket", "nightly") else None
    with read_scope(ctx.db) as session:
        built = build_reports(session, ctx.settings, job_id, now, newest_bar=newest)
    if replayed:
        built = [as_replayed(r) for r in built]
    done = _enqueued(ctx.db, [r.key for r in built])
    fresh = [r for r in built if r.key not in done]
    for report in fresh:
        notifier.notify(report.channel, report.message, report.key)
    if fresh:
        log.info("%s: enqueued %d notifications (%s)", job_id, len(fresh),
                 ", ".join(sorted({r.key.split(":", 1)[0] for r in fresh})))
