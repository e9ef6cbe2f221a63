"""The engine process's jobs, operator commands and its two drivers: live (APScheduler on the wall
clock) and replay (the same plan on a simulated clock, X seconds of market time per real second)."""

from __future__ import annotations

import logging
import threading
import time as _time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine import pipeline
from engine.clock import NEW_YORK, ReplayClock
from engine.config import Settings, SettingsError
from engine.context import EngineContext
from engine.data import calendar
from engine.data.refresh import refresh_reference_data
from engine.db import read_scope, session_scope
from engine.execution.reconcile import reconcile
from engine.heartbeat import beat
from engine.models import OperatorCommand, utcnow
from engine.notify import Message, OutboxNotifier
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
    refresh_reference_data(ctx, report)  # Massive: universe, sectors and gap repair, within the plan's budget
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
    lease: Any = None  # engine.leasekeeper.LeaseKeeper when a scheduler process holds the lease
    stopping: threading.Event = field(default_factory=threading.Event)
    # One guard per job id for every trigger (schedule, catch-up, operator run-now): never two at once.
    running: dict[str, threading.Lock] = field(default_factory=lambda: {j: threading.Lock() for j in JOB_IDS})
    inline_run_now: bool = True  # replay: run-now inline; live: on its own thread (commands keep flowing)
    # live run-now threads: a stop waits for them (wait_for_run_now) before the lease is released
    run_now_threads: list[threading.Thread] = field(default_factory=list)


def refresh_settings(ctx: EngineContext, state: RuntimeState) -> None:
    """Apply the operator's stored setting changes before each job (a bad stored value keeps the last good)."""
    state.base_settings = state.base_settings or ctx.settings
    try:
        with read_scope(ctx.db) as session:
            ctx.settings = effective_settings(session, state.base_settings)
    except SettingsError as exc:
        log.error("stored settings are invalid, keeping the previous ones: %s", exc)


def _failure_streak(ctx: EngineContext, job_id: str, before_id: int | None = None) -> tuple[int, str, int]:
    """Failed runs of ``job_id`` since its last good one: how many, the newest error, and the id of the
    streak's first failed run (what its alert and its recovery message are keyed on), from the job-run table."""
    from sqlmodel import col, func, select

    from engine.models import JobRun

    with read_scope(ctx.db) as session:
        last_ok = session.exec(select(func.max(JobRun.id)).where(
            JobRun.job_id == job_id, JobRun.outcome == "ok",
            *([col(JobRun.id) < before_id] if before_id is not None else []))).one() or 0
        query = select(JobRun).where(JobRun.job_id == job_id, JobRun.outcome == "error", col(JobRun.id) > last_ok)
        if before_id is not None:
            query = query.where(col(JobRun.id) < before_id)
        errors = session.exec(query.order_by(col(JobRun.id))).all()
        # read inside the scope: a read scope's rows are detached once it ends
        if not errors:
            return 0, "", 0
        return len(errors), errors[-1].error or "", int(errors[0].id or 0)


def _send_alert(ctx: EngineContext, message: Message, key: str, replayed: bool) -> None:
    """Live alerts go to system status; a replay's go to the playground, marked, under their own keys (never
    to the live status channel)."""
    notifier = OutboxNotifier(ctx.db, ctx.settings)
    if replayed:
        notifier.notify("playground", replace(message, title=f"[REPLAY] {message.title}"), f"replay:{key}")
    else:
        notifier.notify("system_status", message, key)


def alert_failure(ctx: EngineContext, replayed: bool = False) -> Callable[[str, str], None]:
    """One system-status alert per failure streak of a job (a failing intraday cycle would otherwise alert
    ~78 times a day); it carries the running count of failures, and :func:`alert_recovery` says when it works
    again. Keyed on the streak's first failed run, so a job that fails again after recovering alerts again."""
    def _alert(job_id: str, error: str) -> None:
        count, _, first = _failure_streak(ctx, job_id)
        message = Message(title=f"Job {job_id} failed", color=0xE74C3C, kind="job_failure",
                          description=(f"{error[:3300]}\n\nFailure {count} in a row. Further failures of {job_id} "
                                       "are counted, not alerted again; a recovery message follows when it "
                                       "succeeds."))
        _send_alert(ctx, message, f"job-failure:{job_id}:streak-{first}", replayed)
    return _alert


def alert_recovery(ctx: EngineContext, job_id: str, replayed: bool = False) -> None:
    """After a good run that follows failures: say it recovered and how many runs failed (once per streak)."""
    from sqlmodel import col, func, select

    from engine.models import JobRun

    with read_scope(ctx.db) as session:
        newest_ok = session.exec(select(func.max(JobRun.id)).where(JobRun.job_id == job_id,
                                                                   JobRun.outcome == "ok")).one()
        previous = session.exec(select(JobRun.outcome).where(JobRun.job_id == job_id,
                                                             col(JobRun.outcome).in_(("ok", "error")),
                                                             col(JobRun.id) < (newest_ok or 0))
                                .order_by(col(JobRun.id).desc())).first()
    if previous != "error" or newest_ok is None:
        return
    count, last_error, first = _failure_streak(ctx, job_id, before_id=newest_ok)
    message = Message(title=f"Job {job_id} recovered", color=0x2ECC71, kind="job_recovery",
                      description=f"{job_id} ran successfully again after {count} failed run(s). "
                                  f"Last error: {last_error[:1500]}")
    _send_alert(ctx, message, f"job-recovery:{job_id}:streak-{first}", replayed)


def run_job(ctx: EngineContext, state: RuntimeState, job_id: str, trigger: str) -> Any:
    """Run one job through the guards every trigger shares: its JobRun, or None when it did not run."""
    if job_id in state.paused and trigger != "operator":
        log.info("job %s is paused; skipped", job_id)
        return None
    if state.stopping.is_set():
        log.info("job %s not started: the scheduler is stopping", job_id)
        return None
    guard = state.running.setdefault(job_id, threading.Lock())
    if not guard.acquire(blocking=False):
        log.warning("job %s (%s) not started: the same job is still running", job_id, trigger)
        return None
    try:
        if state.lease is not None:
            from engine.leasekeeper import LeaseLost

            try:
                state.lease.confirm(f"run {job_id}")
            except LeaseLost as exc:
                log.error("job %s not started: %s", job_id, exc)
                return None
        refresh_settings(ctx, state)
        run = record_run(ctx.db, job_id, trigger, lambda: JOBS[job_id](ctx),
                         on_failure=alert_failure(ctx, replayed=state.mode == "replay"), now=None)
        if run.outcome == "ok":
            alert_recovery(ctx, job_id, replayed=state.mode == "replay")
        if run.outcome in ("ok", "error"):
            # Reports and alerts are built from what the job stored, so a pre-market that failed after
            # placing orders still announces them; a failure here never fails the job.
            record_run(ctx.db, f"notify:{job_id}", trigger,
                       lambda: after_job(ctx, job_id, replayed=state.mode == "replay"), now=None)
        return run
    finally:
        guard.release()


def mark_abandoned(ctx: EngineContext) -> int:
    """Job runs left "running" by a killed process (we hold the lease, so none is really running)."""
    from sqlalchemy import update

    from engine.models import JobRun

    with session_scope(ctx.db) as session:
        result = session.execute(update(JobRun).where(JobRun.outcome == "running")
                                 .values(outcome="abandoned", finished_at=utcnow(),
                                         error="the process running it stopped before it finished"))
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        log.warning("marked %d job run(s) left running by a stopped scheduler as abandoned", count)
    return count


def missed_runs(ctx: EngineContext, now: datetime) -> list[PlannedRun]:
    """Planned runs of the previous and the current session (and the nightly upkeep of the days between)
    that are due, did not run, and still make sense now (each job's misfire rule):

    - premarket: only before its session's close (orders for a day that is over are meaningless);
    - intraday: never caught up (the next 5-minute cycle runs anyway);
    - postmarket, nightly: always, once (reconcile, snapshot, digest; data upkeep).
    """
    from sqlmodel import select

    from engine.models import JobRun

    today = now.astimezone(NEW_YORK).date()
    first = calendar.previous_session(today)
    due = [r for r in plan_range(first, today) if r.at <= now and r.job_id != "intraday"]
    with read_scope(ctx.db) as session:
        rows = session.exec(select(JobRun.job_id, JobRun.started_at).where(
            JobRun.outcome.in_(("ok", "error")), ~JobRun.trigger.like("replay@%"),
            JobRun.started_at >= min((r.at for r in due), default=now))).all()
    out = []
    for run in due:
        ran = any(job == run.job_id and started >= run.at for job, started in rows)
        if ran:
            continue
        if run.job_id == "premarket":
            times = calendar.session_times(run.at.date())
            if times is None or now >= times[1]:
                continue
        out.append(run)
    # one nightly is enough: it brings the data up to date however many were missed
    nightly = [r for r in out if r.job_id == "nightly"]
    return [r for r in out if r.job_id != "nightly" or r is nightly[-1]]


def catch_up(ctx: EngineContext, state: RuntimeState, now: datetime) -> list[PlannedRun]:
    """On start: run every missed job of the previous and current session once, in planned order, each as
    of its planned time: yesterday's post-market caught up this morning snapshots yesterday's session (the
    daily-loss limit measures from it) and stores no bar of a session that has not traded yet."""
    runs = missed_runs(ctx, now)
    for run in runs:
        if state.stopping.is_set():
            break
        log.info("catching up %s planned for %s", run.job_id, run.at.isoformat())
        with _as_of(ctx, run.at):
            run_job(ctx, state, run.job_id, f"catch-up@{run.at.isoformat()}")
    return runs


def _as_of(ctx: EngineContext, at: datetime) -> Any:
    """The engine's clock held at ``at`` while a caught-up job runs (the scheduler's clock is a ReplayClock
    that follows the wall clock and follows it again afterwards)."""
    if isinstance(ctx.clock, ReplayClock):
        return ctx.clock.held_at(at)
    log.warning("the clock cannot be set: catching up as of now, not as of %s", at.isoformat())
    return nullcontext()


def startup_reconcile(ctx: EngineContext, state: RuntimeState | None = None) -> None:
    """Crash-only start: learn what the broker did before doing anything else."""
    if state is not None and state.lease is not None:
        state.lease.check("reconcile")
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
    queued, state.run_now[:] = list(state.run_now), []
    for job_id in queued:
        if state.inline_run_now:
            run_job(ctx, state, job_id, "operator")
        else:  # its own thread, through the same per-job guard: the commands poll keeps applying the kill switch
            thread = threading.Thread(target=run_job, args=(ctx, state, job_id, "operator"),
                                      name=f"run-now-{job_id}", daemon=True)
            state.run_now_threads[:] = [t for t in state.run_now_threads if t.is_alive()]
            state.run_now_threads.append(thread)
            thread.start()
    return applied


def wait_for_run_now(state: RuntimeState) -> None:
    """Let the operator's run-now jobs finish (a stop lets a running job finish; they hold the lease too)."""
    for thread in list(state.run_now_threads):
        if thread.is_alive():
            log.info("waiting for %s to finish", thread.name)
        thread.join()
    state.run_now_threads.clear()


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
            if stop is not None and sleep is _time.sleep:
                stop.wait(min(wait, 60.0))  # a SIGTERM or a lost lease ends the wait at once
            else:
                sleep(min(wait, 60.0))
            if stop is not None and stop.is_set():
                break
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
    with read_scope(ctx.db) as session:
        rows = session.exec(select(JobRun.job_id, JobRun.trigger).where(
            JobRun.trigger.like("replay@%"), JobRun.outcome.in_(("ok", "error"))))
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
