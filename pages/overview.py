"""Overview: equity curve, today's and total P&L, open risk against its limit, modes, kill switch,
scheduler heartbeat and next jobs, last reconciliation."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, ui
from app.state import effective


@st.fragment(run_every="15s")
def live_figures() -> None:
    acct = data.account_summary()
    limits = effective().risk
    heat_pct = 100 * acct["open_risk"] / acct["equity"] if acct["equity"] else 0.0
    pending = data.pending_count()
    cols = st.columns(4)
    cols[0].metric("Equity", ui.money(acct["equity"]), border=True,
                   help="from the newest account snapshot (written after each close)")
    cols[1].metric("Today's P&L", ui.money(acct["day_pnl"], signed=True),
                   ui.delta(ui.pct(acct["day_pnl_pct"], signed=True)),
                   border=True, help=f"trading date {ui.day(acct['trade_date'])}")
    cols[2].metric("Total P&L", ui.money(acct["total_pnl"], signed=True),
                   ui.delta(ui.pct(acct["total_pnl_pct"], signed=True)),
                   border=True, help=f"since the starting cash of {ui.money(acct['starting_cash'])}")
    cols[3].metric("Open risk", ui.money(acct["open_risk"]),
                   f"{ui.pct(heat_pct)} of {ui.pct(limits.max_heat_pct, decimals=0)} limit", **ui.NEUTRAL,
                   border=True, help="sum of the open positions' max loss (heat)")
    row = st.columns([1, 1, 2], vertical_alignment="center")
    row[0].metric("Open positions", f"{acct['open_positions']}", f"limit {limits.max_open_positions}",
                  **ui.NEUTRAL, border=True)
    row[1].metric("Waiting for approval", f"{pending}", "see Approvals" if pending else None, **ui.NEUTRAL,
                  border=True)
    row[2].progress(min(1.0, heat_pct / limits.max_heat_pct) if limits.max_heat_pct else 0.0,
                    text=f"Heat {ui.pct(heat_pct)} of {ui.pct(limits.max_heat_pct, decimals=0)} allowed")
    if not acct["has_snapshot"]:
        ui.empty("No account snapshot yet: figures show the starting cash. The post-market job writes one after "
                 "each close (start the scheduler with `python scheduler.py`, or replay days with "
                 "`python -m engine run-day`).")


@st.fragment(run_every="15s")
def engine_health() -> None:
    sched = data.scheduler()
    st.subheader("Scheduler")
    if sched["alive"]:
        st.success(f"Alive · last heartbeat {ui.ago(sched['age_seconds'])} · mode {sched['mode']}", icon="🟢")
    elif sched["seen"]:
        st.error(f"No heartbeat for {ui.ago(sched['age_seconds']).removesuffix(' ago')}: is `python scheduler.py` "
                 "running?", icon="🔴")
    else:
        st.warning("The scheduler has not run against this database yet. Start it with `python scheduler.py` "
                   "(or `make run`).", icon="⚪")
    if sched["paused"]:
        st.caption(f"Paused jobs: {', '.join(sched['paused'])}")
    if sched.get("market_time"):
        st.caption(f"Scheduler clock: {ui.ny_iso(sched['market_time'])}")
    jobs = data.next_jobs()
    if not jobs.empty:
        until = jobs["in_minutes"].map(lambda m: f"{m / 60:.1f} h" if m >= 90 else f"{m:.0f} min")
        shown = jobs.assign(next_run=jobs["next_run"].map(lambda t: t.strftime("%a %H:%M ET")), **{"in": until})
        st.dataframe(shown[["job", "next_run", "in"]], hide_index=True, width="stretch",
                     column_config={"job": "Job", "next_run": "Next run", "in": "In"})

    st.subheader("Reconciliation")
    rec = data.last_reconciliation()
    if rec is None:
        st.caption("No reconciliation yet: the engine reconciles with the broker at start and before each "
                   "order cycle.")
    elif rec["ok"]:
        checked = rec["orders_checked"]
        st.success(f"Books match the broker · {ui.ny(rec['at'])} · {checked} order{'' if checked == 1 else 's'} "
                   "checked",
                   icon="✅")
    else:
        st.error(f"{len(rec['differences'])} difference(s) with the broker at {ui.ny(rec['at'])}", icon="⚠️")
        st.json(rec["differences"][:10], expanded=False)


def equity_chart() -> None:
    history = data.account_history()
    st.subheader("Equity")
    if history.empty:
        ui.empty("No equity history yet: one point is added after each session's close by the post-market job.")
        return
    st.plotly_chart(equity_figure(history), width="stretch", key="equity_curve")


def equity_figure(history: pd.DataFrame) -> go.Figure:
    """Equity line and day-P&L bars over the sessions, on a date axis (also with a single session)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=history["trade_date"], y=history["equity"], mode="lines+markers", name="equity",
                             line={"color": "#3498db", "width": 2}, fill="tozeroy", fillcolor="rgba(52,152,219,0.08)",
                             hovertemplate="%{x|%a %Y-%m-%d}<br>equity $%{y:,.2f}<extra></extra>"))
    # One bar per session, 60% of a day wide (plotly measures bar widths on a date axis in milliseconds):
    # left to itself it stretches a lone bar across the plot.
    fig.add_trace(go.Bar(x=history["trade_date"], y=history["day_pnl"], name="day P&L", yaxis="y2",
                         width=[0.6 * 86_400_000] * len(history),
                         marker_color=[ui.GAIN if v >= 0 else ui.LOSS for v in history["day_pnl"]], opacity=0.6,
                         hovertemplate="%{x|%a %Y-%m-%d}<br>day P&L $%{y:,.2f}<extra></extra>"))
    first, last = pd.Timestamp(history["trade_date"].min()), pd.Timestamp(history["trade_date"].max())
    pad_days = max(1.0, (7 - (last - first).days) / 2)  # a week at least, so one point is not a sub-second axis
    fig.update_xaxes(type="date", tickformat="%b %d", range=[first - pd.Timedelta(days=pad_days),
                                                             last + pd.Timedelta(days=pad_days)])
    lo, hi = float(history["equity"].min()), float(history["equity"].max())
    pad = max((hi - lo) * 0.15, hi * 0.002)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, hovermode="x unified",
                      yaxis={"title": "equity", "tickformat": "$,.0f", "range": [lo - pad, hi + pad]},
                      yaxis2={"title": "day P&L", "overlaying": "y", "side": "right", "tickformat": "$,.0f",
                              "showgrid": False},
                      legend={"orientation": "h", "y": 1.08})
    return fig


def render() -> None:
    mode = data.mode()
    # environment, broker, account and trading mode are in the header line every page shows
    badges = [
        f"approvals **{mode['approval_mode']}** ({mode['approval_mode_source']})",
        f"data **{mode['data_source']}**",
        "🛑 **KILL SWITCH ON**" if mode["kill_switch"] else "kill switch off",
    ]
    ui.page_header("Overview", " · ".join(badges))
    if mode["kill_switch"]:
        st.error(f"Kill switch is ON (set by {mode['kill_switch_by']} at {ui.ny(mode['kill_switch_at'])}): "
                 "the risk gate refuses every new entry. Turn it off on the Risk page.", icon="🛑")
    live_figures()
    left, right = st.columns([2, 1], gap="large")
    with left:
        equity_chart()
        scan = data.latest_scan()
        if scan is None:
            st.subheader("Latest scan")
            ui.empty("No scan yet — press Scan now on the Scanner page or start the scheduler.")
        else:
            st.subheader(f"Latest scan · {ui.day(scan['data_date'])}")
            b = scan["breadth"]
            c = st.columns(4)
            c[0].metric("Symbols scanned", f"{scan['n_scanned']:,}")
            c[1].metric("Signals", f"{scan['n_signals']:,}")
            c[2].metric("In entry zone", ui.pct(100 * b.get("entry_zone", 0.0), decimals=1))
            c[3].metric("Above SMA50", ui.pct(100 * b.get("above_sma50", 0.0), decimals=1))
    with right:
        engine_health()


if __name__ == "__main__":
    render()
