"""Settings: strategy, options, risk and exit parameters (validated by the engine: a bad value names the
field and its allowed range and changes nothing), the approval mode, and what live trading would need."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import streamlit as st

from app import actions, data, ui
from app.state import effective, settings
from engine import queries
from engine.config import SettingsError

SECTIONS = {"risk": "Risk", "strategy": "Strategy (ATR Matrix)", "options": "Options", "exits": "Exits",
            "fees": "Fees", "general": "General"}
MODES = {"manual": "manual: every order waits for approval",
         "semi": "semi: auto within the semi-auto risk limit, approval above it",
         "auto": "auto: every order that passes the risk gate goes out"}


def _decimals(value: float) -> int:
    text = f"{value:.6f}".rstrip("0")
    return min(6, max(2, len(text.split(".")[1]) if "." in text else 0))


def field_input(f: dict[str, Any]) -> Any:
    """One input per setting; no bounds on the widget: the engine's validation is the only judge."""
    key, value = f["key"], f["value"]
    label = f["field"].replace("_", " ")
    hint = f"range {f['range']}" if f["range"] else None
    if f["overridden"]:
        hint = (hint + " · " if hint else "") + f"changed from the environment's {f['environment']!r}"
    widget_key = f"set_{key}"
    if isinstance(value, bool):
        return st.checkbox(label, value=value, key=widget_key, help=hint)
    if isinstance(value, int):
        return st.number_input(label, value=value, step=1, key=widget_key, help=hint)
    if isinstance(value, Decimal | float):
        v = float(value)
        return st.number_input(label, value=v, step=None, format=f"%.{_decimals(v)}f", key=widget_key, help=hint)
    if value is None:
        return st.number_input(label, value=None, step=1, key=widget_key, help=(hint or "") + " (empty: none)")
    if isinstance(value, tuple | list):
        text = st.text_input(label, value=", ".join(str(v) for v in value), key=widget_key,
                             help=(hint + " · " if hint else "") + "comma-separated")
        return tuple(_parse_item(t) for t in text.split(",") if t.strip())
    return st.text_input(label, value=str(value), key=widget_key, help=hint)


def _parse_item(text: str) -> Any:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _changed(old: Any, new: Any) -> bool:
    if isinstance(old, Decimal):
        return new is not None and Decimal(str(new)) != old
    if isinstance(old, float) and isinstance(new, int | float):
        return abs(float(new) - old) > 1e-12
    if isinstance(old, tuple | list) and isinstance(new, tuple | list):
        return list(old) != list(new)
    return old != new


def parameters() -> None:
    base, eff = settings(), effective()
    stored = data.overrides()
    keys = set(stored["key"]) if not stored.empty else set()
    fields = queries.settings_fields(base, eff, {k: True for k in keys})
    tabs = st.tabs([SECTIONS[s] for s in SECTIONS])
    for tab, section in zip(tabs, SECTIONS, strict=True):
        with tab:
            mine = [f for f in fields if f["section"] == section]
            with st.form(f"settings_{section}"):
                values: dict[str, Any] = {}
                cols = st.columns(3)
                for i, f in enumerate(mine):
                    with cols[i % 3]:
                        values[f["key"]] = field_input(f)
                submitted = st.form_submit_button(f"Save {SECTIONS[section].lower()}", type="primary",
                                                  key=f"save_{section}")
            if submitted:
                changes = {f["key"]: _jsonable(values[f["key"]]) for f in mine
                           if _changed(f["value"], values[f["key"]])}
                if not changes:
                    st.info("Nothing changed.", icon="ℹ️")
                else:
                    try:
                        actions.save_settings(changes)
                    except (SettingsError, KeyError) as exc:
                        st.error(f"Not saved — nothing changed:\n\n{exc}", icon="⛔")
                    else:
                        st.session_state["settings_flash"] = (
                            f"Saved {', '.join(changes)}. The scheduler applies it before its next job.")
                        st.rerun()


def stored_overrides() -> None:
    stored = data.overrides()
    editable = stored[~stored["key"].isin(["kill_switch", "approval_mode"])] if not stored.empty else stored
    st.subheader("Changes stored from the console")
    if editable.empty:
        st.caption("None: every parameter has its value from the environment (.env, QM_* variables) or default.")
        return
    st.dataframe(ui.to_local(editable.assign(value=editable["value"].astype(str)), ["updated_at"]), hide_index=True,
                 width="stretch", key="overrides", column_config={"updated_at": ui.time_col("Changed (ET)")})
    c = st.columns([3, 1])
    keys = c[0].multiselect("Reset to the environment's value", editable["key"].tolist(), key="reset_keys")
    if c[1].button("Reset", key="reset_settings", disabled=not keys, width="stretch"):
        actions.reset_settings(keys)
        st.session_state["settings_flash"] = f"Reset {', '.join(keys)}."
        st.rerun()


def approval_mode() -> None:
    mode = data.mode()
    st.subheader("Approval mode")
    c = st.columns([3, 1], vertical_alignment="bottom")
    choice = c[0].radio("Orders need approval", list(MODES), index=list(MODES).index(mode["approval_mode"]),
                        format_func=MODES.get, key="approval_mode_choice", horizontal=True)
    if c[1].button("Apply", key="apply_mode", disabled=choice == mode["approval_mode"], width="stretch"):
        st.session_state["settings_flash"] = actions.set_approval_mode(str(choice))
        st.rerun()
    st.caption(f"In force: **{mode['approval_mode']}** (from the {mode['approval_mode_source']}). The engine reads it "
               "for every new order.")


def live_mode() -> None:
    st.subheader("Live trading")
    status = queries.live_mode_status(settings())
    st.markdown(f"This console runs in **{status['trading_mode']}** mode with the **{status['broker']}** broker. "
                "Live mode is chosen in the environment when the processes start, never from this page: it needs "
                "all of the following, and then a confirmation.")
    st.markdown("\n".join(f"- {'✅' if c['met'] else '❌'} {c['requirement']}" for c in status["checks"]))
    if not status["adapter_available"]:
        st.warning("**This build has no live broker adapter** (tastytrade and Interactive Brokers adapters are not "
                   "included yet): orders can only go to the built-in paper broker. The console cannot switch to live "
                   "trading and does not pretend to.", icon="🚧")
    st.checkbox("I confirm that real money will be traded", value=False, disabled=True, key="live_confirm")
    st.button("Switch to live", key="live_switch", disabled=True,
              help="Unavailable: set the variables above and use a build with a live broker adapter")


def render() -> None:
    ui.page_header("Settings", "Parameter changes are validated by the engine as a whole; a value outside its range "
                   "is refused with the field and range named, and nothing is stored.")
    flash = st.session_state.pop("settings_flash", None)
    if flash:
        st.success(flash, icon="✅")
    approval_mode()
    st.subheader("Parameters")
    parameters()
    stored_overrides()
    live_mode()


if __name__ == "__main__":
    render()
