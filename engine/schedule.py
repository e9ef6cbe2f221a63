"""The trading day as a plan of jobs on the NYSE calendar, and the bookkeeping around every job run.

``plan_day`` is pure: for one date it lists when each job fires (New York time, so DST is the
calendar's business, not ours). Holidays get only the nightly upkeep; early closes move the end of
the intraday cycle and the post-market step with the close. The scheduler process (``scheduler.py``)
and the replay runner both execute this plan, so a replay is the live day with a different clock.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine

from engine.clock import NEW_YORK
from engine.data import calendar
from engine.db import session_scope
from engine.leasekeeper import LeaseLost
from engine.models import JobRun
from engine.redact import redact

log = logging.getLogger(__name__)

PREMARKET_AT = time(8, 30)
NIGHTLY_AT = time(20, 0)
INTRADAY_EVERY = timedelta(minutes=5)
POSTMARKET_DELAY = timedelta(minutes=30)
JOB_IDS = ("premarket", "intraday", "postmarket", "nightly")


@dataclass(frozen=True)
class PlannedRun:
    job_id: str
    at: datetime  # tz-aware, America/New_York


def plan_day(day: date, intraday_every: timedelta = INTRADAY_EVERY) -> list[PlannedRun]:
    """Every job run of ``day`` in time order."""
    runs: list[PlannedRun] = []
    times = calendar.session_times(day)
    if times is not None:
        open_, close = times
        runs.append(PlannedRun("premarket", datetime.combine(day, PREMARKET_AT, NEW_YORK)))
        t = open_ + timedelta(minutes=5)
        while t <= close - timedelta(minutes=5):
            runs.append(PlannedRun("intraday", t))
            t += intraday_every
        runs.append(PlannedRun("postmarket", close + POSTMARKET_DELAY))
    runs.append(PlannedRun("nightly", datetime.combine(day, NIGHTLY_AT, NEW_YORK)))
    return sorted(runs, key=lambda r: r.at)


def plan_range(start: date, end: date, intraday_every: timedelta = INTRADAY_EVERY) -> list[PlannedRun]:
    out: list[PlannedRun] = []
    d = start
    while d <= end:
        out.extend(plan_day(d, intraday_every))
        d += timedelta(days=1)
    return out


def record_run(engine: Engine, job_id: str, trigger: str, fn: Callable[[], Any],
               on_failure: Callable[[str, str], None] | None = None, now: datetime | None = None) -> JobRun:
    """Run ``fn`` as job ``job_id`` and record start, end, outcome and error; never raises."""
    started = now or datetime.now(timezone.utc)
    with session_scope(engine) as session:
        run = JobRun(job_id=job_id, trigger=trigger, started_at=started)
        session.add(run)
    detail: dict[str, Any] = {}
    try:
        result = fn()
        outcome, error = "ok", None
        if hasattr(result, "counts"):
            detail = {"counts": result.counts, "lines": result.lines[-50:]}
    except LeaseLost as exc:  # stopped by the lease rule, not failed: whoever holds the lease runs it again
        outcome, error = "abandoned", f"{type(exc).__name__}: {exc}"
        log.error("job %s abandoned: %s", job_id, exc)
    except Exception as exc:  # a failed job must not take the scheduler down
        outcome, error = "error", f"{type(exc).__name__}: {exc}"
        detail = {"traceback": traceback.format_exc()[-4000:]}
        log.exception("job %s failed", job_id)
    if error is not None:  # stored, shown on the System page and alerted: never with a secret in it
        error = redact(error)
        detail = {"traceback": redact(detail.get("traceback", ""))}
    with session_scope(engine) as session:
        row = session.get(JobRun, run.id)
        assert row is not None
        row.finished_at = datetime.now(timezone.utc) if now is None else now
        row.outcome, row.error, row.detail = outcome, error, detail
    if outcome == "error" and on_failure is not None:
        on_failure(job_id, error or "")
    return row
