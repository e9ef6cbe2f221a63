"""Health checks: heartbeat, jobs, data freshness, reconciliation."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

from sqlalchemy import and_, not_, or_
from sqlmodel import Session, col, select

from engine.clock import NEW_YORK
from engine.config import Settings
from engine.data import calendar
from engine.models import (
    Heartbeat,
    JobRun,
    ReconciliationRun,
)
from engine.notify.embeds import GREEN, RED, Message
from engine.notify.reports.format import (
    HEARTBEAT_STALE,
    TOP_LIST,
    Report,
    _day_bounds,
    _lines,
    duration,
    hhmm,
    market_date,
    plural,
)
from engine.schedule import JOB_IDS, POSTMARKET_DELAY


@dataclass(frozen=True)
class Check:
    name: str
    text: str
    problems: list[str]


def heartbeat_check(session: Session, wall_now: datetime) -> Check:
    """Age of each component's last beat (wall clock). Only the scheduler's is a problem when stale: the
    console beats only while someone has it open. Missed job runs (a stalled scheduler) are job_check's."""
    rows = session.exec(select(Heartbeat).order_by(Heartbeat.component)).all()
    lines, problems = [], []
    for hb in rows:
        age = wall_now - hb.at  # type: ignore[operator]
        market = hb.info.get("market_time")
        text = f"{hb.component} ({hb.instance_id}): last beat {duration(age)} ago"
        if market:
            text += f", market time {market}"
        lines.append(text)
        if hb.component == "scheduler" and age > HEARTBEAT_STALE:
            problems.append(f"{hb.component} heartbeat is {duration(age)} old (limit {duration(HEARTBEAT_STALE)})")
    return Check("Heartbeats", _lines(lines, "No heartbeats recorded."), problems)


def _run_times(session: Session, day: date) -> list[tuple[str, datetime, str]]:
    """(job, when it was due, outcome) of the day's job runs: a replay's trigger carries its market time,
    a live run's start is its wall time (UTC)."""
    start, end = _day_bounds(day, UTC)
    prefix = f"replay@{day.isoformat()}"
    rows = session.exec(select(JobRun.job_id, JobRun.trigger, JobRun.started_at, JobRun.outcome).where(
        col(JobRun.job_id).in_(JOB_IDS),
        or_(col(JobRun.trigger).like(prefix + "%"),
            and_(not_(col(JobRun.trigger).like("replay@%")), JobRun.started_at >= start, JobRun.started_at < end)),
    )).all()
    out = []
    for job_id, trigger, started, outcome in rows:
        at = datetime.fromisoformat(trigger.removeprefix("replay@")) if trigger.startswith("replay@") else \
            started
        out.append((job_id, at, outcome))  # type: ignore[arg-type]
    return sorted(out, key=lambda r: r[1])


def job_check(session: Session, now: datetime, expect: Sequence[str], intraday_gaps: bool = True) -> Check:
    """Which of the day's jobs ran, and (``intraday_gaps``) gaps in the intraday cycle: a stopped or stalled
    scheduler between heartbeats shows as missing cycles."""
    today = market_date(now)
    runs = _run_times(session, today)
    counts = Counter(job for job, _, _ in runs)
    failures = sum(1 for _, _, outcome in runs if outcome == "error")
    problems: list[str] = []
    lines = [", ".join(f"{job} {counts.get(job, 0)}" for job in ("premarket", "intraday", "postmarket", "nightly"))
             + f"; failures {failures} (each alerted when it happened)"]
    times = calendar.session_times(today)
    if times is None:
        return Check("Job runs today", lines[0] + "\nNo session today.", problems)
    open_, close = times
    for job in expect:
        if not counts.get(job):
            problems.append(f"{job} did not run today")
    if not intraday_gaps:
        return Check("Job runs today", lines[0], problems)
    intraday = [at for job, at, _ in runs if job == "intraday" and open_ <= at <= close]
    end = min(now, close)
    if now > open_ and not intraday:
        problems.append(f"no intraday cycle ran between {hhmm(open_)} and {hhmm(end)}")
    elif intraday:
        steps = [b - a for a, b in pairwise(intraday)]
        cadence = statistics.median(steps) if steps else timedelta(minutes=5)
        allowed = max(2 * cadence, timedelta(minutes=10))
        marks = [open_, *intraday] + ([end] if now >= close else [])
        gaps = [(a, b) for a, b in pairwise(marks) if b - a > allowed]
        largest = max((b - a for a, b in pairwise(marks)), default=timedelta(0))
        lines.append(f"intraday cycles {hhmm(intraday[0])} to {hhmm(intraday[-1])}, every {duration(cadence)}, "
                     f"largest gap {duration(largest)}")
        for a, b in gaps[:5]:
            problems.append(f"no intraday cycle {hhmm(a)} to {hhmm(b)} ({duration(b - a)})")
    return Check("Job runs today", "\n".join(lines), problems)


def freshness_check(newest_bar: date | None, now: datetime, job_id: str) -> Check:
    """Newest stored daily bar against the session it must cover: the previous session after the post-market
    (today's bar may still be on its way), the last completed session after the nightly backfill."""
    today = market_date(now)
    expected = calendar.previous_session(today) if job_id == "postmarket" else calendar.last_completed_session(now)
    if newest_bar is None:
        return Check("Data freshness", "No daily bars stored.", ["no daily bars stored"])
    text = f"bars stored through {newest_bar.isoformat()}; required {expected.isoformat()}"
    if job_id == "postmarket" and calendar.is_session(today):
        text += "; today's bars " + ("stored" if newest_bar >= today else "not stored yet (the nightly backfills)")
    if newest_bar >= expected:
        return Check("Data freshness", text + ": current", [])
    behind = len(calendar.sessions(calendar.next_session(newest_bar), expected))
    return Check("Data freshness", text + f": {plural(behind, 'session')} behind",
                 [f"daily bars end {newest_bar.isoformat()}, {plural(behind, 'session')} behind "
                  f"{expected.isoformat()}"])


def reconciliation_check(session: Session, since: datetime, until: datetime) -> Check:
    runs = session.exec(select(ReconciliationRun).where(ReconciliationRun.at >= since, ReconciliationRun.at <= until)
                        .order_by(col(ReconciliationRun.id))).all()
    if not runs:
        return Check("Reconciliation", "No reconciliation runs in this window.", [])
    bad = [r for r in runs if r.differences]
    if not bad:
        return Check("Reconciliation", f"{plural(len(runs), 'run')}, the engine and the broker agree.", [])
    distinct = Counter(json.dumps(d, sort_keys=True, default=str) for r in bad for d in r.differences)
    shown = [f"• {text} (in {plural(n, 'run')})" for text, n in distinct.most_common(5)]
    if len(distinct) > 5:
        shown.append(f"... and {len(distinct) - 5} more")
    problem = f"{len(bad)} of {len(runs)} reconciliation runs found differences ({len(distinct)} distinct)"
    return Check("Reconciliation", problem + "\n" + "\n".join(shown), [problem])


def health_report(session: Session, settings: Settings, now: datetime, job_id: str, newest_bar: date | None,
                  wall_now: datetime) -> Report | None:
    """Post-market: the daily health check, always sent (a missing one is itself a signal).
    Nightly: sent only when a check fails (after the bar backfill, and reconciliations after the post-market)."""
    today = market_date(now)
    start, _ = _day_bounds(today, now.tzinfo)
    times = calendar.session_times(today)
    if job_id == "nightly":
        # after the post-market's own reconciliation (reported by the post-market check)
        # What the post-market check could not see: its own run, and reconciliations after it. Its findings
        # (missed cycles, the morning's reconciliations) are not repeated.
        since = (times[1] + POSTMARKET_DELAY + timedelta(minutes=1)).astimezone(now.tzinfo) if times else start
        jobs = job_check(session, now, ("postmarket",) if times else (), intraday_gaps=False)
    else:
        since, jobs = start, job_check(session, now, ("premarket",))
    checks = [heartbeat_check(session, wall_now), jobs,
              freshness_check(newest_bar, now, job_id), reconciliation_check(session, since, max(now, since))]
    problems = [p for c in checks for p in c.problems]
    if job_id == "nightly" and not problems:
        return None
    label = "nightly" if job_id == "nightly" else "post-market"
    key = f"health-nightly:{today.isoformat()}" if job_id == "nightly" else f"health:{today.isoformat()}"
    description = ("All checks passed." if not problems else
                   f"**{len(problems)} problem{'s' if len(problems) > 1 else ''}:**\n"
                   + "\n".join(f"• {p}" for p in problems[:TOP_LIST]))
    return Report("system_status", key, Message(
        title=f"System health ({label}): {today.isoformat()}", description=description,
        fields=[(c.name, c.text, False) for c in checks], color=RED if problems else GREEN,
        footer=f"market time {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET", timestamp=now, kind="health",
    ))
