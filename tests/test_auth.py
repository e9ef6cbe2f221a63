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


def test_the_password_is_set_once_unless_replaced(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    assert auth.ensure_password(migrated_sqlite, None) is False
    with pytest.raises(ValueError, match="at least 8"):
        auth.set_password(migrated_sqlite, "short")
    auth.set_password(migrated_sqlite, "long-enough")
    with pytest.raises(PermissionError):
        auth.set_password(migrated_sqlite, "another-one")
    assert auth.check_login(migrated_sqlite, "long-enough").ok
    auth.set_password(migrated_sqlite, "another-one", replace=True)
    assert auth.check_login(migrated_sqlite, "another-one").ok


def test_repeated_failures_slow_down_that_client_only(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    auth.ensure_password(migrated_sqlite, "right-password")
    t0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
    for i in range(auth.FREE_FAILURES - 1):
        result = auth.check_login(migrated_sqlite, "nope", now=t0, client="10.0.0.9")
        assert not result.ok and result.locked_until is None, i
    slowed = auth.check_login(migrated_sqlite, "nope", now=t0, client="10.0.0.9")
    assert not slowed.ok and slowed.locked_until == t0 + timedelta(seconds=2)
    during = auth.check_login(migrated_sqlite, "right-password", now=t0 + timedelta(seconds=1), client="10.0.0.9")
    assert not during.ok and "try again" in during.message
    # the operator, from another client, is not locked out by someone else's guessing
    assert auth.check_login(migrated_sqlite, "right-password", now=t0 + timedelta(seconds=1), client="127.0.0.1").ok
    after = auth.check_login(migrated_sqlite, "right-password", now=t0 + timedelta(seconds=2), client="10.0.0.9")
    assert after.ok
