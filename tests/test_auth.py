from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session

from engine import auth
from engine.models import OperatorAuth


def test_hash_is_salted_and_verifies_only_the_right_password() -> None:
    a, b = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert a != b  # different salts
    assert "correct horse" not in a
    assert auth.verify_password("correct horse", a) and auth.verify_password("correct horse", b)
    assert not auth.verify_password("correct hors", a)
    assert not auth.verify_password("x", "not-a-hash")


def test_configured_password_is_stored_only_as_hash(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    assert auth.ensure_password(migrated_sqlite, "s3cret-pass") is True
    with Session(migrated_sqlite) as s:
        row = s.get(OperatorAuth, 1)
        assert row is not None and row.password_hash and "s3cret-pass" not in row.password_hash
    assert auth.check_login(migrated_sqlite, "s3cret-pass").ok
    assert not auth.check_login(migrated_sqlite, "wrong-pass").ok


def test_first_run_sets_a_password_once(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    assert auth.ensure_password(migrated_sqlite, None) is False
    with pytest.raises(ValueError, match="at least 8"):
        auth.set_password(migrated_sqlite, "short")
    auth.set_password(migrated_sqlite, "long-enough")
    with pytest.raises(PermissionError):
        auth.set_password(migrated_sqlite, "another-one")
    assert auth.check_login(migrated_sqlite, "long-enough").ok


def test_lockout_after_repeated_failures_even_for_the_right_password(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    auth.ensure_password(migrated_sqlite, "right-password")
    t0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
    for i in range(auth.MAX_FAILURES - 1):
        result = auth.check_login(migrated_sqlite, "nope", now=t0)
        assert not result.ok and result.locked_until is None, i
    locked = auth.check_login(migrated_sqlite, "nope", now=t0)
    assert not locked.ok and locked.locked_until == t0 + auth.LOCKOUT
    during = auth.check_login(migrated_sqlite, "right-password", now=t0 + auth.LOCKOUT - timedelta(seconds=1))
    assert not during.ok and "locked" in during.message
    after = auth.check_login(migrated_sqlite, "right-password", now=t0 + auth.LOCKOUT + timedelta(seconds=1))
    assert after.ok
