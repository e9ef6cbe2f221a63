"""Database leases: at most one holder per name; a holder that stops renewing loses it on expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from engine.db import read_scope, session_scope
from engine.models import Lease


def acquire(engine: Engine, name: str, holder: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Take or renew the lease; False while another holder's lease has not expired."""
    now = now or datetime.now(UTC)
    try:
        with session_scope(engine) as session:
            # Row lock on PostgreSQL; SQLite already serialises writers (BEGIN IMMEDIATE).
            lease = session.get(Lease, name, with_for_update=True)
            if lease is None:
                session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
                return True
            if lease.holder != holder and lease.expires_at > now:
                return False
            if lease.holder != holder:
                lease.acquired_at = now
            lease.holder = holder
            lease.expires_at = now + ttl
            return True
    except IntegrityError:
        return False  # another instance inserted the row first


def release(engine: Engine, name: str, holder: str) -> None:
    with session_scope(engine) as session:
        lease = session.get(Lease, name)
        if lease is not None and lease.holder == holder:
            session.delete(lease)


def holder_of(engine: Engine, name: str, now: datetime | None = None) -> str | None:
    now = now or datetime.now(UTC)
    with read_scope(engine) as session:
        lease = session.get(Lease, name)
        if lease is None or lease.expires_at <= now:
            return None
        return lease.holder
