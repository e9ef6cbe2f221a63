"""The scheduler's lease, kept alive from a thread and checked before every job and broker call.

Safety rule: this process may act only while ``time.monotonic() < valid_until``, where ``valid_until`` is
the start of the last *successful* renewal plus the TTL minus a margin. Another scheduler can take the
lease only after the stored expiry (start of that renewal + TTL), so the two never act at the same time
even when the database is unreachable and this process cannot learn that it lost the lease.

Renewal retries transient database errors (a locked SQLite file, a dropped PostgreSQL connection) every
``retry_seconds`` until ``valid_until``; only then, or when another holder owns the row, is the lease
lost. Losing it calls ``on_lost`` once (the scheduler stops every job and exits non-zero).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from engine import failpoints
from engine.lease import acquire

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """This process no longer holds the scheduler lease: it must not act."""


class LeaseKeeper:
    def __init__(self, engine: Engine, name: str, holder: str, ttl: timedelta,
                 on_lost: Callable[[str], None] | None = None, retry_seconds: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.name, self.holder, self.ttl = engine, name, holder, ttl
        self.on_lost = on_lost
        self.retry_seconds = retry_seconds
        self._clock = clock
        self.margin = min(5.0, ttl.total_seconds() / 6)
        self.valid_until = 0.0
        self.lost_reason: str | None = None
        self._lock = threading.Lock()

    @property
    def renew_every(self) -> float:
        return self.ttl.total_seconds() / 3

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; raises on database errors."""
        started = self._clock()
        failpoints.fault("lease_renew")
        if not acquire(self.engine, self.name, self.holder, self.ttl):
            return False
        with self._lock:
            self.valid_until = max(self.valid_until, started + self.ttl.total_seconds() - self.margin)
        return True

    def renew(self) -> bool:
        """Renew, retrying transient errors while the lease is still ours; False (and ``on_lost``) if lost."""
        while self.lost_reason is None:
            try:
                if self.try_acquire():
                    return True
                self._lose("another scheduler holds the lease")
                return False
            except (OperationalError, DBAPIError) as exc:
                left = self.valid_until - self._clock()
                if left <= 0:
                    self._lose(f"could not renew before it expired: {type(exc).__name__}: {exc}".splitlines()[0])
                    return False
                log.warning("lease renewal failed (%s); retrying, %.1f s of lease left",
                            str(exc).splitlines()[0], left)
                time.sleep(min(self.retry_seconds, max(left, 0.01)))
        return False

    def check(self, what: str = "act") -> None:
        """Raise LeaseLost unless this process may still act (cheap: no database round trip)."""
        if self.lost_reason is not None:
            raise LeaseLost(f"refused to {what}: scheduler lease lost ({self.lost_reason})")
        if self._clock() >= self.valid_until:
            self._lose("not renewed in time")
            raise LeaseLost(f"refused to {what}: scheduler lease expired before it was renewed")

    def confirm(self, what: str) -> None:
        """Before a job: renew against the database (falling back to the local rule on a database error)."""
        try:
            if not self.try_acquire():
                self._lose("another scheduler holds the lease")
        except (OperationalError, DBAPIError) as exc:
            log.warning("lease check before %s hit a database error (%s); using the last renewal",
                        what, str(exc).splitlines()[0])
        self.check(what)

    def run(self, stop: threading.Event) -> None:
        """The renewal loop (a daemon thread): never dies on a database error."""
        while not stop.wait(self.renew_every):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # anything unexpected still must not leave the lease unwatched
                log.exception("lease renewal crashed")
                self._lose(f"renewal crashed: {type(exc).__name__}")
                return

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self.lost_reason is not None:
                return
            self.lost_reason = reason
        log.error("LEASE LOST: scheduler %s lost lease %r: %s; stopping all jobs", self.holder, self.name, reason)
        if self.on_lost is not None:
            self.on_lost(reason)
