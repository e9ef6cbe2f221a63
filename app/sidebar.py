"""The sidebar under the page menu: trading mode, approvals waiting, kill switch, scheduler, log out."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import data, ui


@st.fragment(run_every="15s")
def _status() -> None:
    mode = data.mode()
    live = mode["trading_mode"] == "live"
    st.markdown(f"**{'🔴 LIVE' if live else '🧪 PAPER'}** · approvals **{mode['approval_mode']}**")
    if mode["kill_switch"]:
        st.error("Kill switch ON: no new entries", icon="🛑")
    waiting = data.pending_count()
    if waiting:
        st.warning(f"{waiting} order{'s' if waiting != 1 else ''} waiting for approval", icon="🕓")
    sched = data.scheduler()
    if sched["alive"]:
        st.caption(f"🟢 scheduler {ui.ago(sched['age_seconds'])}" + (f" · paused: {', '.join(sched['paused'])}"
                                                                     if sched["paused"] else ""))
    elif sched["seen"]:
        st.caption(f"🔴 scheduler silent since {ui.ago(sched['age_seconds'])}")
    else:
        st.caption("⚪ scheduler not started yet")


def render_sidebar(logout: Callable[[], None]) -> None:
    with st.sidebar:
        _status()
        if st.button("Log out", key="logout", icon="🔒", width="stretch"):
            logout()
