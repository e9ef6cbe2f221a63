"""Operator changes to settings from the console, stored in the database and validated like the rest.

Keys are dotted paths of the Settings model ("risk.max_heat_pct", "strategy.min_atr_pct",
"options.min_open_interest", "approval_mode"). Only these sections are editable from the console:
secrets, connections and the trading mode stay in the environment, where an operator must change them
deliberately. A change is validated by building the whole Settings object with it: a bad value raises
with the field and the allowed range, and nothing is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from engine.config import Settings, SettingsError, format_validation_error
from engine.models import SettingOverride

EDITABLE_SECTIONS = ("risk", "strategy", "options", "exits", "fees")
EDITABLE_TOP_LEVEL = ("scan_top_n", "risk_free_rate")
RESERVED_KEYS = ("kill_switch", "approval_mode")  # written by engine.operator, applied at the gate


def _overrides(session: Session) -> dict[str, Any]:
    rows = session.exec(select(SettingOverride)).all()
    return {r.key: r.value.get("value") for r in rows if r.key not in RESERVED_KEYS}


def _merged(base: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    data = base.model_dump()
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        if field:
            section_data = data[section]
            if not isinstance(section_data, dict):  # dataclass sections dump as dicts already
                section_data = dict(section_data.__dict__)
            data[section] = {**section_data, field: value}
        else:
            data[section] = value
    return data


def effective_settings(session: Session, base: Settings) -> Settings:
    """``base`` with the operator's stored changes applied (validated again)."""
    overrides = _overrides(session)
    if not overrides:
        return base
    try:
        return Settings.model_validate(_merged(base, overrides))
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None


def check_key(key: str) -> None:
    section, _, field = key.partition(".")
    if field and section in EDITABLE_SECTIONS:
        return
    if not field and key in EDITABLE_TOP_LEVEL:
        return
    raise KeyError(f"{key!r} cannot be changed from the console (editable: {', '.join(EDITABLE_SECTIONS)} "
                   f"parameters and {', '.join(EDITABLE_TOP_LEVEL)})")


def set_values(session: Session, base: Settings, changes: dict[str, Any], actor: str, now: datetime) -> Settings:
    """Validate all ``changes`` together, then store them; returns the new effective settings."""
    for key in changes:
        check_key(key)
    overrides = {**_overrides(session), **changes}
    try:
        new = Settings.model_validate(_merged(base, overrides))
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
    for key, value in changes.items():
        row = session.get(SettingOverride, key) or SettingOverride(key=key)
        row.value = {"value": value}
        row.updated_by = actor
        row.updated_at = now
        session.add(row)
    return new


def reset(session: Session, keys: list[str]) -> None:
    for key in keys:
        row = session.get(SettingOverride, key)
        if row is not None and key not in RESERVED_KEYS:
            session.delete(row)
