"""Operator authentication for the console: scrypt-hashed password, constant-time check, per-client slow-down.

The password comes from QM_OPERATOR_PASSWORD / .streamlit/secrets.toml or is set on the command line
(``python -m engine operator set-password``); never from the login page, so whoever reaches the page first
cannot claim the console. Only its hash is stored. Failed attempts slow down the client that makes them
(``FREE_FAILURES`` free, then a doubling wait up to ``MAX_DELAY``), counted in the database so a console
restart does not reset them; no client can lock the operator out. A successful login issues a signed session
token (``issue_token``) that survives a browser reload for ``session_hours``; changing the password voids
every token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from engine.db import read_scope, session_scope
from engine.models import LoginThrottle, OperatorAuth, utcnow

FREE_FAILURES = 3  # mistyped passwords cost nothing
FIRST_DELAY = timedelta(seconds=2)  # then each failure doubles the client's wait ...
MAX_DELAY = timedelta(minutes=5)  # ... up to this
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
    """Make the stored hash match a configured password; True when a password is set. The console calls this
    on every reload: the stored hash is read and checked (scrypt) with no write lock held, and written in a
    short transaction only when the configured password changed."""
    stored = _stored_hash(engine)
    if not configured:
        return stored is not None
    if stored is not None and verify_password(configured, stored):
        return True
    new_hash = hash_password(configured)
    with session_scope(engine) as session:
        row = _row(session)
        if row.password_hash == stored:  # else another process stored it meanwhile; the next reload checks it
            row.password_hash = new_hash
            row.updated_at = utcnow()
    return True


def set_password(engine: Engine, password: str, replace: bool = False) -> None:
    """Set the operator password (the command line; ``replace`` to change an existing one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    with session_scope(engine) as session:
        row = _row(session)
        if row.password_hash is not None and not replace:
            raise PermissionError("an operator password is already set (use --replace to change it)")
        row.password_hash = hash_password(password)
        row.updated_at = utcnow()


def delay_after(failures: int) -> timedelta:
    """How long a client waits after its ``failures``-th failure in a row."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - FREE_FAILURES))


def check_login(engine: Engine, password: str, now: datetime | None = None, client: str = "unknown") -> LoginResult:
    now = now or datetime.now(UTC)
    client = (client if isinstance(client, str) and client else "unknown")[:128]
    with session_scope(engine) as session:
        existing = session.get(LoginThrottle, client)
        throttle = existing or LoginThrottle(client=client, updated_at=now)
        wait_until = throttle.next_allowed_at
        if wait_until is not None and now < wait_until:
            left = (wait_until - now).total_seconds()
            return LoginResult(False, f"too many failed attempts from this client; try again in {left:.0f} s",
                               wait_until)
        row = _row(session)
        if row.password_hash is None:
            return LoginResult(False, "no operator password is set: run `python -m engine operator set-password` "
                                      "or set QM_OPERATOR_PASSWORD")
        if verify_password(password, row.password_hash):
            if existing is not None:
                session.delete(existing)  # a success clears this client's slow-down
            return LoginResult(True, "ok")
        throttle.failures += 1
        delay = delay_after(throttle.failures)
        throttle.next_allowed_at = now + delay if delay else None
        throttle.updated_at = now
        session.add(throttle)
        if delay:
            return LoginResult(False, f"wrong password; this client waits {delay.total_seconds():.0f} s before "
                                      "the next attempt", throttle.next_allowed_at)
        return LoginResult(False, "wrong password")


# --- a login that survives a browser reload ------------------------------------------------------------


def _token_key(password_hash: str) -> bytes:
    # Keyed by the stored hash: a password change voids every token; the hash never leaves the database.
    return hashlib.sha256(b"qm-session-token:" + password_hash.encode()).digest()


def _stored_hash(engine: Engine) -> str | None:
    # Every console reload checks its token: a read, so no write lock (a job's write transaction would make
    # the reload wait, and the reload would make the job wait).
    with read_scope(engine) as session:
        row = session.get(OperatorAuth, 1)
        return row.password_hash if row is not None else None


def issue_token(engine: Engine, hours: float, now: datetime | None = None) -> str | None:
    """A signed "operator until <expiry>" token for the session cookie; None without a password."""
    now = now or datetime.now(UTC)
    stored = _stored_hash(engine)
    if stored is None:
        return None
    expiry = int((now + timedelta(hours=hours)).timestamp())
    nonce = secrets.token_hex(8)
    body = f"{expiry}.{nonce}"
    mac = hmac.new(_token_key(stored), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def verify_token(engine: Engine, token: str | None, now: datetime | None = None) -> bool:
    if not token or token.count(".") != 2:
        return False
    now = now or datetime.now(UTC)
    expiry, nonce, mac = token.split(".")
    stored = _stored_hash(engine)
    if stored is None or not expiry.isdigit():
        return False
    good = hmac.new(_token_key(stored), f"{expiry}.{nonce}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(good, mac) and now.timestamp() < int(expiry)
