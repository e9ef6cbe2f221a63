"""Heartbeats: each long-running component records that it is alive and what it is doing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from engine.db import session_scope
from engine.models import Heartbeat


def beat(engine: Engine, component: str, instance_id: str, info: dict[str, Any] | None = None,
         now: datetime | None = None) -> None:
    with session_scope(engine) as session:
        row = session.get(Heartbeat, component) or Heartbeat(component=component, instance_id=instance_id)
        row.instance_id = instance_id
        row.at = now or datetime.now(UTC)
        row.info = info or {}
        session.add(row)
