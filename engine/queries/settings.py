"""Settings page: effective settings, overrides, live-mode status."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config import Settings
from engine.models import (
    SettingOverride,
)


def _range_text(field_info: Any) -> str:
    bounds = []
    for m in getattr(field_info, "metadata", []) or []:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v:g}" if isinstance(v, int | float) else f"{sym} {v}")
    return ", ".join(bounds)


def settings_fields(base: Settings, effective: Settings,
                    overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The console-editable settings: key, section, current value, value from the environment, range."""
    import dataclasses

    from engine.settings_store import EDITABLE_SECTIONS, EDITABLE_TOP_LEVEL

    overrides = overrides or {}
    out: list[dict[str, Any]] = []
    for section in EDITABLE_SECTIONS:
        eff, env = getattr(effective, section), getattr(base, section)
        if dataclasses.is_dataclass(eff):
            names = [f.name for f in dataclasses.fields(eff)]
            infos: dict[str, Any] = {}
        else:
            names = list(type(eff).model_fields)
            infos = dict(type(eff).model_fields)
        for name in names:
            value = getattr(eff, name)
            out.append({"key": f"{section}.{name}", "section": section, "field": name, "value": value,
                        "environment": getattr(env, name), "type": type(value).__name__,
                        "range": _range_text(infos.get(name)), "overridden": f"{section}.{name}" in overrides})
    for name in EDITABLE_TOP_LEVEL:
        info = type(base).model_fields[name]
        value = getattr(effective, name)
        out.append({"key": name, "section": "general", "field": name, "value": value,
                    "environment": getattr(base, name), "type": type(value).__name__, "range": _range_text(info),
                    "overridden": name in overrides})
    return out


def setting_overrides(engine: Engine) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(SettingOverride).order_by(SettingOverride.key)).all()
    return pd.DataFrame([{"key": r.key, "value": r.value.get("value"), "updated_by": r.updated_by,
                          "updated_at": r.updated_at} for r in rows],
                        columns=["key", "value", "updated_by", "updated_at"])


LIVE_CREDENTIALS = {
    "tastytrade": ("QM_TASTYTRADE__CLIENT_SECRET", "QM_TASTYTRADE__REFRESH_TOKEN", "QM_TASTYTRADE__ACCOUNT_NUMBER",
                   "QM_TASTYTRADE__SANDBOX", "QM_TASTYTRADE__API_URL"),
    "ibkr": ("QM_IBKR__HOST", "QM_IBKR__PORT"),
}


def live_mode_status(settings: Settings) -> dict[str, Any]:
    """What live trading would need, each item checked against the environment (never showing values)."""
    tasty = settings.tastytrade.configured
    checks = [
        {"requirement": "QM_TRADING_MODE=live", "met": settings.trading_mode.value == "live"},
        {"requirement": "QM_LIVE_TRADING_CONFIRMED=true", "met": bool(settings.live_trading_confirmed)},
        {"requirement": "QM_BROKER=tastytrade or ibkr", "met": settings.broker.value != "paper"},
        {"requirement": "broker credentials (tastytrade: QM_TASTYTRADE__CLIENT_SECRET, QM_TASTYTRADE__REFRESH_TOKEN, "
                        "QM_TASTYTRADE__SANDBOX=false for production; "
                        "IBKR: TWS/Gateway at QM_IBKR__HOST:QM_IBKR__PORT)",
         "met": tasty or settings.broker.value == "ibkr"},
    ]
    return {"trading_mode": settings.trading_mode.value, "broker": settings.broker.value, "checks": checks,
            "all_met": all(c["met"] for c in checks), "adapter_available": _live_adapter_available(settings)}


def _live_adapter_available(settings: Settings) -> bool:
    """Whether this build ships a live broker adapter at all (engine/execution/brokers/<broker>.py)."""
    import importlib.util

    return any(importlib.util.find_spec(f"engine.execution.brokers.{name}") is not None
               for name in ("tastytrade", "ibkr"))
