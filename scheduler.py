"""The engine process: ``python scheduler.py [--replay START..END --speed X | --auto]``.

Runs the trading day of DESIGN §3 on the NYSE calendar. Only one scheduler may run against a database:
it holds a lease that it renews with every heartbeat, and a second instance waits until the lease is
free, or expired if the first one crashed. Modes:

- live (default): APScheduler on the wall clock, America/New_York.
- ``--replay START..END --speed X``: the same jobs on a simulated clock over those sessions.
- ``--auto`` (what ``make run`` uses): when the market is closed, first replay the last few sessions
  that have not been replayed yet, so the console fills with activity within a minute; then live.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from engine import runtime
from engine.clock import NEW_YORK, ReplayClock
from engine.config import SettingsError, get_settings
from engine.context import build_context
from engine.data import calendar
from engine.db import migrate
from engine.lease import acquire, release
from engine.notify import run_worker
from engine.schedule import plan_day

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=90)
HEARTBEAT_SECONDS = 15
COMMAND_POLL_SECONDS = 5

log = logging.getLogger("quantmatrix.scheduler")


def _parse_range(text: str) -> tuple[date, date]:
    try:
        first, last = text.split("..", 1)
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--replay wants START..END as YYYY-MM-DD..YYYY-MM-DD, got {text!r}") from None


def _hold_lease(ctx, state, wait_seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + wait_seconds
    while not acquire(ctx.db, LEASE_NAME, state.instance, state.lease_ttl):
        if time.monotonic() > deadline:
            return False
        log.warning("another scheduler holds the lease; waiting")
        time.sleep(min(5.0, state.lease_ttl.total_seconds() / 3))
    return True


def _renew(ctx, state) -> None:  # type: ignore[no-untyped-def]
    if not acquire(ctx.db, LEASE_NAME, state.instance, state.lease_ttl):
        log.error("lost the scheduler lease to another instance; stopping")
        os._exit(3)  # never keep trading without the lease
    runtime.heartbeat(ctx, state)


def _schedule_day(scheduler: BlockingScheduler, ctx, state, day: date) -> None:  # type: ignore[no-untyped-def]
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


def _catch_up(ctx, state) -> None:  # type: ignore[no-untyped-def]
    """Started during a session after the pre-market time: run today's pre-market now."""
    now = datetime.now(NEW_YORK)
    times = calendar.session_times(now.date())
    premarket = next((r.at for r in plan_day(now.date()) if r.job_id == "premarket"), None)
    if times and premarket and premarket < now < times[1]:
        runtime.run_job(ctx, state, "premarket", "catch-up")


def run_live(ctx, state) -> None:  # type: ignore[no-untyped-def]
    state.mode = "live"
    scheduler = BlockingScheduler(
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
    _catch_up(ctx, state)
    scheduler.start()


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
        migrate(settings.db_url)
        ctx = build_context(settings, clock=clock)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    state = runtime.RuntimeState(instance=f"{socket.gethostname()}:{os.getpid()}",
                                 lease_ttl=timedelta(seconds=args.lease_seconds))
    if not _hold_lease(ctx, state, args.wait_for_lease):
        log.error("another scheduler holds the lease; giving up")
        return 3
    log.info("scheduler %s holds the lease", state.instance)
    runtime.heartbeat(ctx, state)
    stop = threading.Event()
    threading.Thread(target=run_worker, args=(ctx.db, settings, stop), name="notify-worker", daemon=True).start()
    threading.Thread(target=_keep_lease, args=(ctx, state, stop), name="lease", daemon=True).start()
    try:
        runtime.startup_reconcile(ctx)
        if args.replay or args.auto:
            first, last = args.replay or runtime.recent_sessions(datetime.now(timezone.utc), args.sessions)
            clock.freeze()
            done = runtime.replay(ctx, clock, state, first, last, args.speed, stop=stop,
                                  on_run=lambda r: log.info("replay %s at %s", r.job_id, r.at.isoformat()))
            log.info("replayed %d job runs over %s..%s", done, first, last)
            if args.replay:
                return 0
            clock.follow_wall_clock()
            runtime.startup_reconcile(ctx)
        run_live(ctx, state)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        release(ctx.db, LEASE_NAME, state.instance)
    return 0


def _keep_lease(ctx, state, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """Renew the lease and beat from a thread, so a long replay or job never lets the lease lapse."""
    while not stop.wait(min(HEARTBEAT_SECONDS, state.lease_ttl.total_seconds() / 3)):
        _renew(ctx, state)


if __name__ == "__main__":
    raise SystemExit(main())
