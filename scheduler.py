"""The engine process: ``python scheduler.py [--replay START..END --speed X | --auto]``.

Runs the trading day of DESIGN §3 on the NYSE calendar. Only one scheduler may run against a database:
it holds a lease (``engine.leasekeeper``) renewed from a thread that retries transient database errors,
and a second instance waits until the lease is free, or expired if the first one crashed. Every job
confirms the lease before it acts and every broker call checks it; a scheduler that loses it stops all
jobs and exits with status 3 (log line "LEASE LOST", system-status alert). SIGTERM (what
``scripts/run.sh`` sends) lets the running job finish, releases the lease and exits 0. Modes:

- live (default): APScheduler on the wall clock, America/New_York.
- ``--replay START..END --speed X``: the same jobs on a simulated clock over those sessions.
- ``--auto`` (what ``make run`` uses): when the market is closed, first replay the last few sessions
  that have not been replayed yet, so the console fills with activity within a minute; then live.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from engine import runtime
from engine.clock import NEW_YORK, ReplayClock
from engine.config import SettingsError, get_settings
from engine.context import build_context
from engine.db import migrate
from engine.execution import guard
from engine.execution.guard import GuardedBroker
from engine.lease import release
from engine.leasekeeper import LeaseKeeper
from engine.notify import Message, OutboxNotifier, run_worker
from engine.redact import install_log_redaction
from engine.replay_target import auto_replays, replay_settings
from engine.schedule import plan_day

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=90)
HEARTBEAT_SECONDS = 15
COMMAND_POLL_SECONDS = 5
LOST_LEASE_EXIT = 3

log = logging.getLogger("quantmatrix.scheduler")


def _parse_range(text: str) -> tuple[date, date]:
    try:
        first, last = text.split("..", 1)
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--replay wants START..END as YYYY-MM-DD..YYYY-MM-DD, got {text!r}") from None


def _hold_lease(keeper: LeaseKeeper, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if keeper.try_acquire():
                return True
            log.warning("another scheduler holds the lease; waiting")
        except Exception as exc:  # a database hiccup while waiting is not a reason to give up
            log.warning("could not read the lease (%s); retrying", str(exc).splitlines()[0])
        if time.monotonic() > deadline:
            return False
        time.sleep(min(5.0, keeper.ttl.total_seconds() / 3))


def _alert_lease_lost(ctx, state, reason: str) -> None:  # type: ignore[no-untyped-def]
    message = Message(title="Scheduler stopped: lease lost", color=0xE74C3C, kind="lease_lost",
                      description=f"Scheduler {state.instance} lost the scheduler lease ({reason}). It stopped "
                                  "all jobs and exited; a scheduler that holds the lease takes over.")
    try:
        OutboxNotifier(ctx.db, ctx.settings).notify("system_status", message, f"lease-lost:{state.instance}")
    except Exception as exc:  # the database may be what failed; the log line above still says it
        log.error("could not queue the lease-lost alert: %s", str(exc).splitlines()[0])


def _schedule_day(scheduler: BackgroundScheduler, ctx, state, day: date) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(timezone.utc)
    runs = [r for r in plan_day(day) if r.at > now]
    intraday = [r.at for r in runs if r.job_id == "intraday"]
    for run in runs:
        if run.job_id != "intraday":
            scheduler.add_job(runtime.run_job, "date", run_date=run.at, id=run.job_id, replace_existing=True,
                              args=(ctx, state, run.job_id, "schedule"))
    if intraday:
        scheduler.add_job(runtime.run_job, "interval", minutes=5, start_date=intraday[0],
                          end_date=intraday[-1] + timedelta(seconds=1), id="intraday", replace_existing=True,
                          args=(ctx, state, "intraday", "schedule"))
    log.info("planned %s: %s", day, ", ".join(sorted({r.job_id for r in runs})) or "nothing left today")


def run_live(ctx, state) -> None:  # type: ignore[no-untyped-def]
    """Catch up, then run the plan on the wall clock until ``state.stopping`` is set (SIGTERM, lost lease).

    The scheduler runs in the background and this (main) thread only waits for the stop: a stop that
    arrives while the catch-up is still running, or before the scheduler has started, is seen all the same,
    and the shutdown below lets a running job finish, an operator's run-now job included."""
    state.mode = "live"
    state.inline_run_now = False
    scheduler = BackgroundScheduler(
        timezone="America/New_York",
        # coalesce: a backlog of missed runs fires once; max_instances: never two copies of a job at once;
        # misfire grace: a run delayed by a busy machine still happens (the library default is 1 second).
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    scheduler.add_job(runtime.apply_commands, "interval", seconds=COMMAND_POLL_SECONDS, id="commands",
                      args=(ctx, state))
    scheduler.add_job(lambda: _schedule_day(scheduler, ctx, state, datetime.now(NEW_YORK).date()), "cron",
                      hour=0, minute=5, id="planner")
    _schedule_day(scheduler, ctx, state, datetime.now(NEW_YORK).date())
    runtime.catch_up(ctx, state, datetime.now(timezone.utc))
    if state.stopping.is_set():
        return
    scheduler.start()
    try:
        while not state.stopping.wait(1.0):  # a timed wait, so Ctrl-C reaches this thread too
            pass
    finally:
        scheduler.shutdown(wait=True)  # the scheduled job running now finishes ...
        runtime.wait_for_run_now(state)  # ... and so does an operator's run-now on its own thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="QuantMatrix scheduler (engine process)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replay", type=_parse_range, metavar="START..END", help="replay these sessions")
    mode.add_argument("--auto", action="store_true",
                      help="replay recent sessions not yet replayed when the market is closed, then run live")
    parser.add_argument("--speed", type=float, default=1800.0,
                        help="replay: seconds of market time per real second (0 = as fast as possible)")
    parser.add_argument("--sessions", type=int, default=5, help="--auto: how many recent sessions to replay")
    parser.add_argument("--wait-for-lease", type=float, default=300.0,
                        help="seconds to wait for another instance's lease to expire")
    parser.add_argument("--lease-seconds", type=float, default=LEASE_TTL.total_seconds(),
                        help="how long the lease outlives its last renewal (a crashed scheduler's lease expires)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock = ReplayClock(datetime.now(timezone.utc), speed=1.0)  # wall clock until a replay moves it
    try:
        settings = get_settings()
        install_log_redaction(settings)
        migrate(settings.db_url)
        ctx = build_context(settings, clock=clock)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    state = runtime.RuntimeState(instance=f"{socket.gethostname()}:{os.getpid()}",
                                 lease_ttl=timedelta(seconds=args.lease_seconds))
    stop = state.stopping
    exit_code = 0

    def stop_jobs(why: str) -> None:
        """Stop taking jobs: the replay loop, the catch-up and the live loop all watch ``stop``."""
        stop.set()
        log.info("stopping: %s", why)

    def on_lost(reason: str) -> None:
        nonlocal exit_code
        exit_code = LOST_LEASE_EXIT
        log.error("scheduler %s lost the scheduler lease (%s): stopping all jobs and exiting with status %d",
                  state.instance, reason, LOST_LEASE_EXIT)
        _alert_lease_lost(ctx, state, reason)
        stop_jobs("lease lost")
        # A job still running must be gone before the stored expiry lets another scheduler in: the lease
        # stopped being valid here ``margin`` seconds before that expiry, so exit hard within half of it.
        timer = threading.Timer(keeper.margin / 2, lambda: os._exit(LOST_LEASE_EXIT))
        timer.daemon = True
        timer.start()

    keeper = LeaseKeeper(ctx.db, LEASE_NAME, state.instance, state.lease_ttl, on_lost=on_lost)
    state.lease = keeper
    if not _hold_lease(keeper, args.wait_for_lease):
        log.error("another scheduler holds the lease; giving up")
        return 3
    log.info("scheduler %s holds the lease", state.instance)
    guard.register(keeper.check)
    ctx.broker = GuardedBroker(ctx.broker)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stop_jobs("SIGTERM"))
    runtime.heartbeat(ctx, state)
    worker_stop = threading.Event()
    threading.Thread(target=run_worker, args=(ctx.db, settings, worker_stop), name="notify-worker",
                     daemon=True).start()
    # renewal outlives a SIGTERM until the lease is released: the job finishing meanwhile still holds it
    threading.Thread(target=_keep_lease, args=(ctx, state, keeper, worker_stop), name="lease", daemon=True).start()
    try:
        runtime.mark_abandoned(ctx)
        runtime.startup_reconcile(ctx, state)
        wall = datetime.now(timezone.utc)
        if args.auto and not auto_replays(wall):
            log.info("--auto: the market is open, so no replay; trading live now")
        elif args.replay or args.auto:
            first, last = args.replay or runtime.recent_sessions(wall, args.sessions)
            clock.freeze()
            done = _replay(ctx, clock, state, first, last, args.speed, worker_stop)
            log.info("replayed %d job runs over %s..%s", done, first, last)
            if args.replay or stop.is_set():
                return exit_code
            clock.follow_wall_clock()
            runtime.startup_reconcile(ctx, state)
        run_live(ctx, state)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        worker_stop.set()
        guard.unregister(keeper.check)
        if exit_code == 0:
            try:
                release(ctx.db, LEASE_NAME, state.instance)
                log.info("released the scheduler lease; stopped cleanly")
            except Exception as exc:  # it expires on its own
                log.error("could not release the lease (%s); it expires in %s", exc, state.lease_ttl)
    return exit_code


def _replay(ctx, clock, state, first: date, last: date, speed: float,  # type: ignore[no-untyped-def]
            worker_stop: threading.Event) -> int:
    """Replay [first, last]; off the live book when live data or a real broker is configured."""
    target, folder = replay_settings(ctx.settings)
    if folder is not None:
        migrate(target.db_url)
        log.warning("replay kept apart from live (data source %s, broker %s): it runs on the simulated market "
                    "with a paper broker into %s; see it with QM_DATA_DIR=%s streamlit run app/console.py",
                    ctx.settings.data_source.value, ctx.settings.broker.value, target.db_url.split("///")[-1],
                    folder)
        replay_ctx = build_context(target, clock=clock)
        replay_ctx.broker = GuardedBroker(replay_ctx.broker)
        threading.Thread(target=run_worker, args=(replay_ctx.db, target, worker_stop), name="notify-replay",
                         daemon=True).start()
        runtime.mark_abandoned(replay_ctx)
        runtime.startup_reconcile(replay_ctx, state)
        base, state.base_settings = state.base_settings, target
        try:
            return runtime.replay(replay_ctx, clock, state, first, last, speed, stop=state.stopping,
                                  on_run=lambda r: log.info("replay %s at %s", r.job_id, r.at.isoformat()))
        finally:
            state.base_settings = base
    return runtime.replay(ctx, clock, state, first, last, speed, stop=state.stopping,
                          on_run=lambda r: log.info("replay %s at %s", r.job_id, r.at.isoformat()))


def _keep_lease(ctx, state, keeper: LeaseKeeper, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """Renew the lease and beat from a thread, so a long replay or job never lets the lease lapse; a
    database error is retried (LeaseKeeper.renew), never the end of the thread."""
    while not stop.wait(min(HEARTBEAT_SECONDS, keeper.renew_every)):
        if not keeper.renew():
            return
        try:
            runtime.heartbeat(ctx, state)
        except Exception as exc:  # a missed heartbeat is only a stale console line
            log.warning("heartbeat failed: %s", str(exc).splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
