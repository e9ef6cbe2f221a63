"""Formatting and small display helpers shared by the pages: money, percentages, times, colours."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

NEW_YORK = ZoneInfo("America/New_York")
MINUS = "−"  # a real minus sign: easier to read in figures than a hyphen

GAIN = "#2ecc71"
LOSS = "#e74c3c"
ZONE_COLORS = {
    "below_trend": "#7f8c8d",
    "entry": "#2ecc71",
    "extended": "#f1c40f",
    "scale_out": "#e67e22",
    "exhausted": "#e74c3c",
    "excluded": "#34495e",
}
ZONE_ICONS = {"below_trend": "⚪", "entry": "🟢", "extended": "🟡", "scale_out": "🟠", "exhausted": "🔴",
              "excluded": "⚫", "n/a": "⚫"}
STATUS_ICONS = {"proposed": "🕓", "approved": "👍", "submitting": "📤", "submitted": "📨", "partially_filled": "◑",
                "filled": "✅", "cancelled": "✖️", "rejected": "⛔", "expired": "⌛", "sent": "✅", "pending": "🕓",
                "failed": "⛔", "not_configured": "🔌", "sending": "📤", "ok": "✅", "error": "⛔", "running": "⏳",
                "skipped": "⏭", "applied": "✅"}


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def money(x: Any, signed: bool = False, decimals: int = 2) -> str:
    """$1,234.56; −$1,234.56; +$1,234.56 when ``signed``; "–" for nothing."""
    v = _finite(x)
    if v is None:
        return "–"
    if round(v, decimals) == 0:
        v = 0.0
    sign = MINUS if v < 0 else ("+" if signed and v > 0 else "")
    return f"{sign}${abs(v):,.{decimals}f}"


def pct(x: Any, signed: bool = False, decimals: int = 2) -> str:
    v = _finite(x)
    if v is None:
        return "–"
    if round(v, decimals) == 0:
        v = 0.0
    sign = MINUS if v < 0 else ("+" if signed and v > 0 else "")
    return f"{sign}{abs(v):,.{decimals}f}%"


def delta(text: str) -> str:
    """A st.metric delta whose arrow and colour follow its sign: Streamlit reads only an ASCII "-" as negative,
    so the typographic minus our formatters print would show a negative change as a green up arrow."""
    return "-" + text[1:] if text.startswith(MINUS) else text


def num(x: Any, decimals: int = 2, signed: bool = False) -> str:
    v = _finite(x)
    if v is None:
        return "–"
    return (f"{v:+,.{decimals}f}" if signed and round(v, decimals) != 0 else f"{v:,.{decimals}f}").replace("-", MINUS)


def ny(ts: datetime | None, seconds: bool = False) -> str:
    """A timestamp in exchange time (New York)."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)) or ts is pd.NaT:
        return "–"
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    if not isinstance(ts, datetime):
        return str(ts)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=ZoneInfo("UTC"))
    return ts.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S ET" if seconds else "%Y-%m-%d %H:%M ET")


def ny_iso(text: str | None) -> str:
    """An ISO timestamp string (as heartbeats carry) in exchange time."""
    if not text:
        return "–"
    try:
        return ny(datetime.fromisoformat(str(text)))
    except ValueError:
        return str(text)


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 90 * 60:
        return f"{s / 60:.0f} min ago"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} days ago"


def day(d: date | None) -> str:
    return "–" if d is None else f"{d:%a %Y-%m-%d}"


def colored(text: str, value: Any) -> str:
    """Markdown text in green for gains and red for losses."""
    v = _finite(value)
    if v is None or v == 0:
        return text
    return f":green[{text}]" if v > 0 else f":red[{text}]"


def pnl_style(value: Any) -> str:
    """CSS for a gain or loss cell (Styler.map)."""
    v = _finite(value)
    if v is None or v == 0:
        return ""
    return f"color: {GAIN}" if v > 0 else f"color: {LOSS}"


def zone_label(zone: str | None) -> str:
    if zone is None or (isinstance(zone, float) and math.isnan(zone)):
        return "⚫ n/a"
    return f"{ZONE_ICONS.get(zone, '')} {zone}"


def status_label(status: str | None) -> str:
    return "–" if not status else f"{STATUS_ICONS.get(status, '')} {status}"


def empty(message: str, icon: str = "ℹ️") -> None:
    """An empty state that says what to do next."""
    st.info(message, icon=icon)


def to_local(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Timestamp columns converted to New York time without the zone (tables show exchange time)."""
    out = frame.copy()
    for c in columns:
        if c in out.columns:
            out[c] = pd.to_datetime(out[c], utc=True).dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    return out


def page_header(title: str, caption: str | None = None) -> None:
    st.title(title)
    environment_line()
    if caption:
        st.caption(caption)


ENV_ICONS = {"paper": "🧪", "sandbox": "🧪", "production": "🔴", "live": "🔴"}


def environment_line() -> None:
    """Which money this console is looking at, on every page: broker, environment and account."""
    from app import data

    h = data.broker_header()
    icon = ENV_ICONS.get(h["environment"], "🔌")
    st.caption(f"{icon} **{h['environment'].upper()}** · broker {h['broker']} · account {h['account']} · "
               f"trading mode {h['trading_mode']}")


def dollar_col(label: str | None = None, help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label, format="dollar", help=help)


def number_col(label: str | None = None, fmt: str = "%.2f", help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label, format=fmt, help=help)


def percent_col(label: str | None = None, help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label, format="%.2f%%", help=help)


def time_col(label: str | None = None) -> Any:
    return st.column_config.DatetimeColumn(label, format="YYYY-MM-DD HH:mm")


NEUTRAL: dict[str, Any] = {"delta_color": "off", "delta_arrow": "off"}  # st.metric deltas that are context, not change
