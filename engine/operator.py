"""Operator state shared by console and scheduler through the database: kill switch, commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from engine.models import OperatorCommand, SettingOverride

KILL_SWITCH_KEY = "kill_switch"
APPROVAL_MODE_KEY = "approval_mode"


def kill_switch_on(session: Session) -> bool:
    row = session.get(SettingOverride, KILL_SWITCH_KEY)
    return bool(row and row.value.get("value"))


def set_kill_switch(session: Session, on: bool, actor: str, now: datetime) -> None:
    row = session.get(SettingOverride, KILL_SWITCH_KEY) or SettingOverride(key=KILL_SWITCH_KEY)
    row.value = {"value": bool(on)}
    row.updated_by = actor
    row.updated_at = now
    session.add(row)


def enqueue_command(session: Session, kind: str, payload: dict[str, Any], actor: str, reason: str,
                    now: datetime) -> OperatorCommand:
    cmd = OperatorCommand(kind=kind, payload=payload, created_by=actor, reason=reason, created_at=now)
    session.add(cmd)
    session.flush()
    return cmd


def pending_commands(session: Session) -> list[OperatorCommand]:
    return list(session.exec(select(OperatorCommand).where(OperatorCommand.status == "pending")
                             .order_by(OperatorCommand.id)).all())


def set_approval_mode(session: Session, mode: str, actor: str, now: datetime) -> None:
    from engine.config import ApprovalMode

    try:
        ApprovalMode(mode)
    except ValueError:
        raise ValueError(f"approval mode must be one of manual, semi, auto; got {mode!r}") from None
    row = session.get(SettingOverride, APPROVAL_MODE_KEY) or SettingOverride(key=APPROVAL_MODE_KEY)
    row.value = {"value": mode}
    row.updated_by = actor
    row.updated_at = now
    session.add(row)


def approval_mode(session: Session, default: str) -> str:
    """The operator's approval mode if set from the console, else the configured one."""
    row = session.get(SettingOverride, APPROVAL_MODE_KEY)
    return str(row.value.get("value")) if row else default
