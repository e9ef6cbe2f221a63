"""Risk: every limit with its use, exposure by symbol and sector, net greeks, daily loss, and the kill
switch (with a confirmation step)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import actions, data, ui

ARM_KEY = "kill_switch_armed"


def kill_switch(on: bool) -> None:
    st.subheader("Kill switch")
    if on:
        st.error("ON: the risk gate refuses every new entry. Exits and scale-outs still go out.", icon="🛑")
    else:
        st.success("Off: entries that pass the other rules are allowed.", icon="🟢")
    armed = st.session_state.get(ARM_KEY)
    target = not on
    if armed is None or armed != target:
        label = "Turn kill switch ON…" if target else "Turn kill switch off…"
        if st.button(label, key="kill_arm", type="primary" if target else "secondary", icon="🛑" if target else "🟢"):
            st.session_state[ARM_KEY] = target
            st.rerun()
        return
    with st.container(border=True):
        if target:
            st.warning("Confirm: **stop all new entries** now. Orders already at the broker are not cancelled; "
                       "open positions keep being managed.", icon="⚠️")
        else:
            st.warning("Confirm: **allow new entries** again.", icon="⚠️")
        c = st.columns(2)
        if c[0].button("Confirm", key="kill_confirm", type="primary", width="stretch"):
            message = actions.set_kill_switch(target)
            st.session_state.pop(ARM_KEY, None)
            st.session_state["risk_flash"] = message
            st.rerun()
        if c[1].button("Cancel", key="kill_cancel", width="stretch"):
            st.session_state.pop(ARM_KEY, None)
            st.rerun()


def limits_table(limits: list[dict]) -> None:  # type: ignore[type-arg]
    frame = pd.DataFrame(limits)
    frame["status"] = frame["ok"].map(lambda ok: "✅" if ok else "❌")
    pairs = list(zip(frame["limit"], frame["used"], frame["unit"], strict=True))
    frame["limit_text"] = [f"{lim:g}%" if unit == "%" else f"{lim:g}" for lim, _, unit in pairs]
    frame["used_text"] = [f"{used:.2f}%" if unit == "%" else f"{used:g}" for _, used, unit in pairs]
    st.dataframe(frame, hide_index=True, width="stretch", key="limits",
                 column_order=["status", "rule", "what", "used_text", "limit_text", "use_of_limit", "detail"],
                 column_config={"status": st.column_config.TextColumn("", width="small"),
                                "rule": st.column_config.TextColumn("Limit"),
                                "what": st.column_config.TextColumn("Measured on"),
                                "used_text": st.column_config.TextColumn("Used"),
                                "limit_text": st.column_config.TextColumn("Allowed"),
                                "use_of_limit": st.column_config.ProgressColumn("Use of limit", min_value=0.0,
                                                                                max_value=1.0, format="percent"),
                                "detail": st.column_config.TextColumn("Detail", width="large")})


def exposure_charts(r: dict) -> None:  # type: ignore[type-arg]
    limits = data.effective_risk_limits()
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Risk by symbol")
        frame = r["by_symbol"]
        if frame.empty:
            st.caption("Nothing at risk.")
        else:
            top = frame.head(30).iloc[::-1]
            fig = go.Figure(go.Bar(x=top["risk_pct"], y=top["symbol"], orientation="h", marker_color="#3498db",
                                   customdata=top["risk"],
                                   hovertemplate="%{y}: $%{customdata:,.2f} (%{x:.2f}% of equity)<extra></extra>"))
            fig.add_vline(x=limits.max_symbol_risk_pct, line={"color": ui.LOSS, "dash": "dash"},
                          annotation_text=f"limit {limits.max_symbol_risk_pct:g}%")
            fig.update_layout(height=max(220, 22 * len(top) + 60), margin={"l": 10, "r": 10, "t": 20, "b": 10},
                              xaxis={"title": "% of equity at risk", "ticksuffix": "%"})
            st.plotly_chart(fig, width="stretch", key="risk_by_symbol")
    with right:
        st.subheader("Exposure by sector")
        frame = r["by_sector"]
        if frame.empty:
            st.caption("No exposure.")
        else:
            top = frame.iloc[::-1]
            fig = go.Figure(go.Bar(x=top["exposure_pct"], y=top["sector"], orientation="h", marker_color="#9b59b6",
                                   customdata=top["delta_dollars"],
                                   hovertemplate="%{y}: $%{customdata:,.0f} delta (%{x:.1f}% of equity)"
                                                 "<extra></extra>"))
            fig.add_vline(x=limits.max_sector_exposure_pct, line={"color": ui.LOSS, "dash": "dash"},
                          annotation_text=f"limit {limits.max_sector_exposure_pct:g}%")
            fig.update_layout(height=max(220, 26 * len(top) + 60), margin={"l": 10, "r": 10, "t": 20, "b": 10},
                              xaxis={"title": "delta dollars, % of equity", "ticksuffix": "%"})
            st.plotly_chart(fig, width="stretch", key="exposure_by_sector")


@st.fragment(run_every="15s")
def live_use() -> None:
    """Refreshes by itself: the scheduler changes these numbers all day."""
    r = data.risk()
    limits = data.effective_risk_limits()
    m = st.columns(5)
    m[0].metric("Equity", ui.money(r["equity"]))
    m[1].metric("Heat", ui.money(r["heat"]), ui.pct(100 * r["heat"] / r["equity"] if r["equity"] else 0),
                **ui.NEUTRAL, help="open positions' risk plus working entry orders")
    m[2].metric("Day P&L", ui.money(r["day_pnl"], signed=True),
                f"{ui.pct(r['daily_loss_pct'])} loss of {ui.pct(limits.daily_loss_limit_pct)} allowed", **ui.NEUTRAL)
    m[3].metric("Buying power", ui.money(r["buying_power"]))
    m[4].metric("Open positions", f"{r['open_positions']}")
    limits_table(r["limits"])
    st.subheader("Net greeks")
    g = r["greeks"]
    gm = st.columns(5)
    gm[0].metric("Delta (shares)", ui.num(g["delta"], 1))
    gm[1].metric("Delta dollars", ui.money(g["delta_dollars"], decimals=0))
    gm[2].metric("Gamma", ui.num(g["gamma"], 2))
    gm[3].metric("Theta / day", ui.money(g["theta"], signed=True))
    gm[4].metric("Vega / vol pt", ui.money(g["vega"], signed=True))


def render() -> None:
    ui.page_header("Risk", "One gate checks every order against these limits before any broker call; the numbers "
                   "below are today's use of each.")
    flash = st.session_state.pop("risk_flash", None)
    if flash:
        st.success(flash, icon="✅")
    live_use()
    r = data.risk()
    kill_switch(bool(r["kill_switch"]))
    exposure_charts(r)


if __name__ == "__main__":
    render()
