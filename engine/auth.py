"""Operator authentication for the console: scrypt-hashed password, constant-time check, lock-out.

The password comes from QM_OPERATOR_PASSWORD / .streamlit/secrets.toml, or is set on first run from
the login page. Only its hash is stored. Failed attempts are counted in the database so a restart of
the console does not reset a lock-out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from engine.db import session_scope
from engine.models import OperatorAuth, utcnow

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    message: str
    locked_until: datetime | None = None


def _row(session) -> OperatorAuth:  # type: ignore[no-untyped-def]
    row = session.get(OperatorAuth, 1)
    if row is None:
        row = OperatorAuth(id=1)
        session.add(row)
    return row


def ensure_password(engine: Engine, configured: str | None) -> bool:
    """Make the stored hash match a configured password; True when a password is set."""
    with session_scope(engine) as session:
        row = _row(session)
        stale = row.password_hash is None or not verify_password(configured or "", row.password_hash)
        if configured and stale:
            row.password_hash = hash_password(configured)
            row.updated_at = utcnow()
        return row.password_hash is not None


def set_password(engine: Engine, password: str) -> None:
    """First-run set-up (only when no password exists yet)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    with session_scope(engine) as session:
        row = _row(session)
        if row.password_hash is not None:
            raise PermissionError("an operator password is already set")
        row.password_hash = hash_password(password)
        row.updated_at = utcnow()


def check_login(engine: Engine, password: str, now: datetime | None = None) -> LoginResult:
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        row = _row(session)
        locked = row.locked_until
        if locked is not None and now < locked:
            return LoginResult(False, f"too many failed attempts; locked until {locked:%H:%M:%S} UTC", locked)
        if row.password_hash is None:
            return LoginResult(False, "no operator password is set")
        if verify_password(password, row.password_hash):
            row.failed_attempts = 0
            row.locked_until = None
            return LoginResult(True, "ok")
        row.failed_attempts += 1
        if row.failed_attempts >= MAX_FAILURES:
            row.failed_attempts = 0
            row.locked_until = now + LOCKOUT
            return LoginResult(False, f"wrong password; locked for {LOCKOUT.seconds // 60} minutes", row.locked_until)
        left = MAX_FAILURES - row.failed_attempts
        return LoginResult(False, f"wrong password ({left} attempts left before a lock-out)")
