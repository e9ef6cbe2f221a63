"""The engine process: ``python scheduler.py``. Runs the trading day on the exchange calendar.

Only one scheduler may run against a database: it holds a lease that it renews with each heartbeat;
a second instance waits until the lease is free (or expired, if the first one crashed).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from datetime import timedelta

from apscheduler.schedulers.blocking import BlockingScheduler

from engine.config import SettingsError, get_settings
from engine.db import get_engine, migrate
from engine.heartbeat import beat
from engine.lease import acquire, release

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=90)
HEARTBEAT_SECONDS = 15

log = logging.getLogger("quantmatrix.scheduler")


def _heartbeat(engine, instance: str) -> None:  # type: ignore[no-untyped-def]
    if not acquire(engine, LEASE_NAME, instance, LEASE_TTL):
        log.error("lost the scheduler lease to another instance; stopping")
        os._exit(3)  # never keep trading without the lease
    beat(engine, "scheduler", instance, {"pid": os.getpid(), "host": socket.gethostname()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="QuantMatrix scheduler (engine process)")
    parser.add_argument("--wait-for-lease", type=float, default=300.0,
                        help="seconds to wait for another instance's lease to expire")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    migrate(settings.db_url)
    engine = get_engine(settings.db_url)
    instance = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + args.wait_for_lease
    while not acquire(engine, LEASE_NAME, instance, LEASE_TTL):
        if time.monotonic() > deadline:
            log.error("another scheduler holds the lease; giving up")
            return 3
        log.warning("another scheduler holds the lease; waiting")
        time.sleep(5)
    log.info("scheduler %s holds the lease", instance)
    scheduler = BlockingScheduler(
        timezone="America/New_York",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    scheduler.add_job(_heartbeat, "interval", seconds=HEARTBEAT_SECONDS, id="heartbeat",
                      args=(engine, instance))
    _heartbeat(engine, instance)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        release(engine, LEASE_NAME, instance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
