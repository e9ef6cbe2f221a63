"""Scheduler, jobs, data freshness, outbox and operator-command queries (System page family)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.config import Settings
from engine.data.sources import bar_store
from engine.models import (
    Heartbeat,
    Instrument,
    JobRun,
    NotificationOutbox,
    OperatorCommand,
)


def heartbeats(engine: Engine, now: datetime | None = None) -> pd.DataFrame:
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        rows = session.exec(select(Heartbeat)).all()
    return pd.DataFrame(
        [
            {
                "component": r.component,
                "instance": r.instance_id,
                "last_beat": r.at,
                "age_seconds": (now - r.at).total_seconds(),
                **{k: v for k, v in r.info.items() if isinstance(v, str | int | float)},
            }
            for r in rows
        ],
        columns=["component", "instance", "last_beat", "age_seconds"] if not rows else None,
    )


def scheduler_status(engine: Engine, now: datetime | None = None,
                     max_age: timedelta = timedelta(minutes=2)) -> dict[str, Any]:
    """The scheduler's last heartbeat: alive (beat within ``max_age``), age, mode, paused jobs."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        row = session.get(Heartbeat, "scheduler")
    if row is None:
        return {"seen": False, "alive": False, "age_seconds": None, "instance": None, "mode": None,
                "paused": [], "market_time": None, "last_beat": None}
    at = row.at
    age = (now - at).total_seconds() if at else None
    info = row.info or {}
    return {"seen": True, "alive": age is not None and age <= max_age.total_seconds(), "age_seconds": age,
            "instance": row.instance_id, "mode": info.get("mode"), "paused": list(info.get("paused") or []),
            "market_time": info.get("market_time"), "last_beat": at}


def universe_summary(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(Instrument)).one()
        tradable = session.exec(
            select(func.count()).select_from(Instrument).where(Instrument.tradable, Instrument.active)
        ).one()
        by_sector = dict(
            session.exec(select(Instrument.sector, func.count()).group_by(Instrument.sector)).all()
        )
    return {"instruments": int(total), "tradable": int(tradable), "by_sector": by_sector}


def bar_coverage(settings: Settings) -> dict[str, Any]:
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) == 0:
        return {"sessions": 0, "first": None, "last": None, "size_mb": 0.0, "source": store.source}
    return {
        "sessions": len(dates),
        "first": dates[0].astype(object),
        "last": dates[-1].astype(object),
        "size_mb": store.size_bytes() / 1e6,
        "source": store.source,
    }


def data_freshness(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Bar-store coverage against the NYSE calendar: last stored session vs the last completed one,
    sessions missing inside the stored range, and how many sessions the store is behind."""
    from engine.bootstrap import last_completed_session
    from engine.data import calendar

    store = bar_store(settings)
    dates = store.stored_dates()
    expected_last = last_completed_session(now)
    out: dict[str, Any] = {"source": store.source, "sessions": len(dates), "first": None, "last": None,
                           "expected_last": expected_last, "behind": None, "gaps": 0, "gap_dates": [],
                           "size_mb": round(store.size_bytes() / 1e6, 1) if len(dates) else 0.0}
    if len(dates) == 0:
        return out
    first, last = dates[0].astype(object), dates[-1].astype(object)
    expected = calendar.sessions(first, last)
    gaps = np.setdiff1d(expected, dates)
    behind = len(calendar.sessions(last, expected_last)) - 1 if expected_last > last else 0
    out.update({"first": first, "last": last, "behind": int(max(behind, 0)), "gaps": len(gaps),
                "gap_dates": [str(d) for d in gaps[:20]]})
    return out


def scheduler_alive(engine: Engine, max_age: timedelta = timedelta(minutes=2)) -> bool:
    return bool(scheduler_status(engine, max_age=max_age)["alive"])


def next_jobs(now: datetime | None = None, days: int = 7) -> pd.DataFrame:
    """The next planned run of each scheduler job after ``now`` (New York times)."""
    from engine.clock import NEW_YORK
    from engine.schedule import JOB_IDS, plan_day

    now = now or datetime.now(UTC)
    today = now.astimezone(NEW_YORK).date()
    found: dict[str, datetime] = {}
    for offset in range(days + 1):
        for run in plan_day(today + timedelta(days=offset)):
            if run.at > now and run.job_id not in found:
                found[run.job_id] = run.at
        if len(found) == len(JOB_IDS):
            break
    rows = [{"job": job, "next_run": found[job], "in_minutes": (found[job] - now).total_seconds() / 60}
            for job in JOB_IDS if job in found]
    return pd.DataFrame(rows, columns=["job", "next_run", "in_minutes"]).sort_values("next_run")


# --- account and mode ------------------------------------------------------------------------------------


def outbox_counts(engine: Engine) -> pd.DataFrame:
    from engine.notify import status_counts

    counts = status_counts(engine)
    frame = pd.DataFrame.from_dict(counts, orient="index").fillna(0).astype(int)
    frame.index.name = "channel"
    return frame.reset_index()


def outbox_rows(engine: Engine, status: str | None = None, channel: str | None = None,
                limit: int = 300) -> pd.DataFrame:
    from engine.notify.outbox import DEAD_WEBHOOK, preview

    query = (select(NotificationOutbox).where(NotificationOutbox.kind != DEAD_WEBHOOK)
             .order_by(NotificationOutbox.id.desc()).limit(limit))  # type: ignore[union-attr]
    if status:
        query = query.where(NotificationOutbox.status == status)
    if channel:
        query = query.where(NotificationOutbox.channel == channel)
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["id", "created_at", "channel", "kind", "status", "attempts", "sent_at", "last_error", "preview"]
    return pd.DataFrame([{"id": r.id, "created_at": r.created_at, "channel": r.channel, "kind": r.kind,
                          "status": r.status, "attempts": r.attempts, "sent_at": r.sent_at,
                          "last_error": r.last_error or "", "preview": preview(r)} for r in rows], columns=cols)


def dead_webhooks(engine: Engine) -> list[dict[str, Any]]:
    from engine.notify.outbox import dead_webhooks as _dead

    return _dead(engine)


# --- jobs, commands -------------------------------------------------------------------------------------


def job_runs(engine: Engine, limit: int = 300, failures_only: bool = False) -> pd.DataFrame:
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if failures_only:
        query = query.where(JobRun.outcome == "error")
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["id", "job_id", "trigger", "started_at", "finished_at", "seconds", "outcome", "error", "traceback"]
    data = []
    for r in rows:
        started, finished = r.started_at, r.finished_at
        data.append({"id": r.id, "job_id": r.job_id, "trigger": r.trigger, "started_at": started,
                     "finished_at": finished,
                     "seconds": (finished - started).total_seconds() if started and finished else None,
                     "outcome": r.outcome, "error": r.error or "",
                     "traceback": (r.detail or {}).get("traceback", "")})
    return pd.DataFrame(data, columns=cols)


def job_summary(engine: Engine) -> pd.DataFrame:
    """Per job: runs, failures, the last run and its outcome."""
    from engine.schedule import JOB_IDS

    with Session(engine) as session:
        counts = session.exec(select(JobRun.job_id, JobRun.outcome, func.count())
                              .group_by(JobRun.job_id, JobRun.outcome)).all()
        last_ids = session.exec(select(func.max(JobRun.id)).group_by(JobRun.job_id)).all()
        last = {r.job_id: r for r in session.exec(select(JobRun).where(col(JobRun.id).in_(list(last_ids)))).all()} \
            if last_ids else {}
    jobs = list(dict.fromkeys([*JOB_IDS, *sorted({j for j, _, _ in counts})]))
    runs: dict[str, int] = {}
    errors: dict[str, int] = {}
    for job, outcome, n in counts:
        runs[job] = runs.get(job, 0) + int(n)
        if outcome == "error":
            errors[job] = errors.get(job, 0) + int(n)
    data = []
    for job in jobs:
        r = last.get(job)
        data.append({"job": job, "runs": runs.get(job, 0), "failures": errors.get(job, 0),
                     "last_started": r.started_at if r else None, "last_outcome": r.outcome if r else None,
                     "last_error": (r.error or "") if r else ""})
    return pd.DataFrame(data, columns=["job", "runs", "failures", "last_started", "last_outcome", "last_error"])


def operator_commands(engine: Engine, limit: int = 200) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(OperatorCommand).order_by(OperatorCommand.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    cols = ["id", "created_at", "kind", "payload", "created_by", "reason", "status", "applied_at", "applied_by",
            "result"]
    return pd.DataFrame([{"id": c.id, "created_at": c.created_at, "kind": c.kind,
                          "payload": ", ".join(f"{k}={v}" for k, v in (c.payload or {}).items()),
                          "created_by": c.created_by, "reason": c.reason, "status": c.status,
                          "applied_at": c.applied_at, "applied_by": c.applied_by or "",
                          "result": c.result or ""} for c in rows], columns=cols)


# --- settings -------------------------------------------------------------------------------------------
