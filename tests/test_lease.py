from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.lease import acquire, holder_of, release

T0 = datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)
TTL = timedelta(seconds=90)


def test_second_holder_is_refused_until_the_lease_expires(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    assert acquire(migrated_sqlite, "scheduler", "a", TTL, now=T0)
    assert not acquire(migrated_sqlite, "scheduler", "b", TTL, now=T0 + timedelta(seconds=30))
    # a renews: b still refused after a's original expiry
    assert acquire(migrated_sqlite, "scheduler", "a", TTL, now=T0 + timedelta(seconds=60))
    assert not acquire(migrated_sqlite, "scheduler", "b", TTL, now=T0 + timedelta(seconds=100))
    # a crashes (stops renewing): b takes over once the lease has expired
    assert acquire(migrated_sqlite, "scheduler", "b", TTL, now=T0 + timedelta(seconds=151))
    assert holder_of(migrated_sqlite, "scheduler", now=T0 + timedelta(seconds=152)) == "b"
    # and a, coming back, is refused
    assert not acquire(migrated_sqlite, "scheduler", "a", TTL, now=T0 + timedelta(seconds=153))


def test_release_frees_the_lease_only_for_its_holder(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    assert acquire(migrated_sqlite, "scheduler", "a", TTL, now=T0)
    release(migrated_sqlite, "scheduler", "b")
    assert holder_of(migrated_sqlite, "scheduler", now=T0) == "a"
    release(migrated_sqlite, "scheduler", "a")
    assert holder_of(migrated_sqlite, "scheduler", now=T0) is None
