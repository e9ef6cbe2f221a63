"""The engine process's jobs, operator commands and its two drivers: live (APScheduler on the wall
clock) and replay (the same plan on a simulated clock, X seconds of market time per real second)."""

from __future__ import annotations

import logging
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine import pipeline
from engine.clock import NEW_YORK, ReplayClock
from engine.config import Settings, SettingsError
from engine.context import EngineContext
from engine.data import calendar
from engine.db import session_scope
from engine.execution.reconcile import reconcile
from engine.heartbeat import beat
from engine.models import OperatorCommand, utcnow
from engine.notify import Message, enqueue
from engine.notify.hooks import after_job
from engine.operator import pending_commands, set_approval_mode, set_kill_switch
from engine.schedule import INTRADAY_EVERY, JOB_IDS, PlannedRun, plan_range, record_run
from engine.settings_store import effective_settings

log = logging.getLogger(__name__)


def intraday_cycle(ctx: EngineContext) -> pipeline.StepReport:
    """Send what is approved, manage positions, send the exits they produced."""
    first = pipeline.execute_orders(ctx)
    managed = pipeline.manage_positions(ctx)
    second = pipeline.execute_orders(ctx)
    merged = pipeline.StepReport("intraday", first.at, first.lines + managed.lines + second.lines)
    for part in (first, managed, second):
        for k, v in part.counts.items():
            merged.count(k, v)
    return merged


def nightly(ctx: EngineContext) -> pipeline.StepReport:
    """Upkeep: bars through the last completed session, and WAL checkpoint on SQLite."""
    report = pipeline.StepReport("nightly", ctx.now)
    today = ctx.now.astimezone(NEW_YORK).date()
    last = today if calendar.is_session(today) else calendar.previous_session(today)
    update = getattr(ctx.market, "update", None)
    if update is not None:  # Massive: incremental grouped-daily update plus split checks, into its store
        fill = update()
        report.add(f"data update: {fill}")
    else:
        report.count("sessions_stored", pipeline.refresh_bars(ctx, last))
    if ctx.db.url.get_backend_name() == "sqlite":
        raw = ctx.db.raw_connection()  # outside a transaction: a checkpoint cannot run inside one
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()
    _sync_broker(ctx, report)
    return report


def _sync_broker(ctx: EngineContext, report: pipeline.StepReport) -> None:
    """A real broker's account: positions, balances, transactions (last, so a broker outage fails the job
    visibly after the data upkeep is done)."""
    from engine.portfolio.sync import SyncableBroker, sync

    if isinstance(ctx.broker, SyncableBroker):
        done = sync(ctx.db, ctx.broker, ctx.now)
        report.add(f"broker sync {done.broker} {done.account}: {len(done.positions)} positions, "
                   f"{done.transactions_new} new transactions, {len(done.differences)} differences")
        report.count("transactions_new", done.transactions_new)


JOBS: dict[str, Callable[[EngineContext], Any]] = {
    "premarket": pipeline.run_premarket,
    "intraday": intraday_cycle,
    "postmarket": pipeline.run_postmarket,
    "nightly": nightly,
}


@dataclass
class RuntimeState:
    instance: str
    paused: set[str] = field(default_factory=set)
    run_now: list[str] = field(default_factory=list)
    mode: str = "live"
    lease_ttl: timedelta = timedelta(seconds=90)
    base_settings: Settings | None = None  # from the environment; console changes are applied on top


def refresh_settings(ctx: EngineContext, state: RuntimeState) -> None:
    """Apply the operator's stored setting changes before each job (a bad stored value keeps the last good)."""
    state.base_settings = state.base_settings or ctx.settings
    try:
        with session_scope(ctx.db) as session:
            ctx.settings = effective_settings(session, state.base_settings)
    except SettingsError as exc:
        log.error("stored settings are invalid, keeping the previous ones: %s", exc)


def alert_failure(ctx: EngineContext) -> Callable[[str, str], None]:
    def _alert(job_id: str, error: str) -> None:
        message = Message(title=f"Job {job_id} failed", description=error[:3500], color=0xE74C3C,
                          kind="job_failure")
        enqueue(ctx.db, "system_status", message, f"job-failure:{job_id}:{utcnow().isoformat()}",
                settings=ctx.settings)
    return _alert


def run_job(ctx: EngineContext, state: RuntimeState, job_id: str, trigger: str) -> None:
    if job_id in state.paused and trigger != "operator":
        log.info("job %s is paused; skipped", job_id)
        return
    refresh_settings(ctx, state)
    run = record_run(ctx.db, job_id, trigger, lambda: JOBS[job_id](ctx), on_failure=alert_failure(ctx), now=None)
    if run.outcome == "ok":
        # Reports and alerts are built from what the job stored; a failure here never fails the job.
        record_run(ctx.db, f"notify:{job_id}", trigger, lambda: after_job(ctx, job_id), now=None)


def startup_reconcile(ctx: EngineContext) -> None:
    """Crash-only start: learn what the broker did before doing anything else."""
    record_run(ctx.db, "reconcile", "startup",
               lambda: reconcile(ctx.db, ctx.broker, Decimal(str(ctx.settings.starting_cash)), ctx.now),
               on_failure=alert_failure(ctx))


def apply_commands(ctx: EngineContext, state: RuntimeState) -> list[OperatorCommand]:
    """Apply the console's pending commands and record that (and how) each was applied."""
    applied = []
    with session_scope(ctx.db) as session:
        for cmd in pending_commands(session):
            try:
                cmd.result = _apply(session, ctx, state, cmd)
                cmd.status = "applied"
            except (ValueError, KeyError) as exc:
                cmd.status, cmd.result = "failed", str(exc)
            cmd.applied_at = utcnow()
            cmd.applied_by = f"scheduler {state.instance}"
            session.add(cmd)
            applied.append(cmd)
    for job_id in state.run_now:
        run_job(ctx, state, job_id, "operator")
    state.run_now.clear()
    return applied


def _apply(session: Any, ctx: EngineContext, state: RuntimeState, cmd: OperatorCommand) -> str:
    job = cmd.payload.get("job_id")
    if cmd.kind in ("pause_job", "resume_job", "run_job") and job not in JOB_IDS:
        raise ValueError(f"unknown job {job!r}; jobs are {', '.join(JOB_IDS)}")
    if cmd.kind == "pause_job":
        state.paused.add(job)
        return f"{job} paused"
    if cmd.kind == "resume_job":
        state.paused.discard(job)
        return f"{job} resumed"
    if cmd.kind == "run_job":
        state.run_now.append(job)
        return f"{job} queued to run now"
    if cmd.kind == "kill_switch":
        on = bool(cmd.payload["on"])
        set_kill_switch(session, on, cmd.created_by, utcnow())
        return f"kill switch {'on' if on else 'off'}"
    if cmd.kind == "set_approval_mode":
        mode = str(cmd.payload["mode"])
        set_approval_mode(session, mode, cmd.created_by, utcnow())
        return f"approval mode {mode}"
    raise ValueError(f"unknown command {cmd.kind!r}")


def heartbeat(ctx: EngineContext, state: RuntimeState, extra: dict[str, Any] | None = None) -> None:
    beat(ctx.db, "scheduler", state.instance,
         {"mode": state.mode, "paused": sorted(state.paused), "market_time": ctx.now.isoformat(), **(extra or {})})


# --- replay ------------------------------------------------------------------------------------------


def replay(ctx: EngineContext, clock: ReplayClock, state: RuntimeState, start: date, end: date, speed: float,
           stop: threading.Event | None = None, on_run: Callable[[PlannedRun], None] | None = None,
           sleep: Callable[[float], None] = _time.sleep, intraday_every: timedelta = INTRADAY_EVERY) -> int:
    """Run the plan of [start, end] on ``clock``: ``speed`` seconds of market time per real second
    (0 = as fast as possible). Skips runs already recorded as done, so a restarted replay resumes."""
    state.mode = "replay"
    done = _done_runs(ctx, start)
    runs = [r for r in plan_range(start, end, intraday_every) if (r.job_id, r.at) not in done]
    if not runs:
        return 0
    clock.set(runs[0].at - timedelta(minutes=1))
    executed = 0
    for run in runs:
        if stop is not None and stop.is_set():
            break
        wait = (run.at - clock.now()).total_seconds() / speed if speed > 0 else 0.0
        if wait > 0:
            sleep(min(wait, 60.0))
        clock.set(run.at)
        apply_commands(ctx, state)
        heartbeat(ctx, state)
        if on_run:
            on_run(run)
        run_job(ctx, state, run.job_id, f"replay@{run.at.isoformat()}")
        executed += 1
    return executed


def _done_runs(ctx: EngineContext, since: date) -> set[tuple[str, datetime]]:
    from sqlmodel import select

    from engine.models import JobRun

    first = datetime.combine(since, datetime.min.time(), NEW_YORK)
    out = set()
    with session_scope(ctx.db) as session:
        rows = session.exec(select(JobRun.job_id, JobRun.trigger).where(JobRun.trigger.like("replay@%"),
                                                                         JobRun.outcome != "running"))
        for job_id, trigger in rows:
            at = datetime.fromisoformat(trigger.removeprefix("replay@"))
            if at >= first:
                out.add((job_id, at))
    return out


def recent_sessions(now: datetime, count: int) -> tuple[date, date]:
    """The last ``count`` completed sessions before ``now``: the default replay when the market is closed."""
    last = calendar.previous_session(now.astimezone(NEW_YORK).date())
    first = calendar.sessions_back(last, count)[0].astype(object)
    return first, last
