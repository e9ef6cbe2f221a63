"""Alerts: the notification outbox per channel and status (sent, pending, failed, not configured) with a
preview of each message. Webhook URLs are never shown: only whether a channel has one."""

from __future__ import annotations

import streamlit as st

from app import data, ui
from app.state import settings
from engine.notify import CHANNELS

SHOWN_STATUSES = ("sent", "pending", "sending", "failed", "not_configured")


def render() -> None:
    ui.page_header("Alerts", "Every notification is written to the outbox first; the scheduler's worker sends it to "
                   "the channel's Discord webhook. Without a webhook it stays here as not configured.")
    counts = data.outbox_counts()
    totals = {s: int(counts[s].sum()) if s in counts.columns else 0 for s in SHOWN_STATUSES}
    m = st.columns(4)
    m[0].metric("Sent", f"{totals['sent']:,}")
    m[1].metric("Pending", f"{totals['pending'] + totals['sending']:,}")
    m[2].metric("Failed", f"{totals['failed']:,}")
    m[3].metric("Not configured", f"{totals['not_configured']:,}")

    cfg = settings()
    table = counts.copy()
    table["webhook"] = table["channel"].map(lambda c: "✅ configured" if cfg.webhook(c) is not None else "— none")
    st.dataframe(table, hide_index=True, width="stretch", key="outbox_counts",
                 column_order=["channel", "webhook", *[s for s in SHOWN_STATUSES if s in table.columns]],
                 column_config={"channel": "Channel", "webhook": "Webhook", "sent": "Sent", "pending": "Pending",
                                "sending": "Sending", "failed": "Failed", "not_configured": "Not configured"})
    dead = data.dead_webhooks()
    for d in dead:
        st.warning(f"Webhook for **{d['channel']}** is dead since {ui.ny(d['since'])}: {d['reason']}. Configure a "
                   "new URL; messages wait as not configured until then.", icon="🔌")

    c = st.columns(2)
    status = c[0].selectbox("Status", ["all", *SHOWN_STATUSES], key="alerts_status", format_func=ui.status_label)
    channel = c[1].selectbox("Channel", ["all", *CHANNELS], key="alerts_channel")
    rows = data.outbox_rows(None if status == "all" else status, None if channel == "all" else channel)
    if rows.empty:
        if sum(totals.values()) == 0:
            ui.empty("No notifications yet. The scheduler's jobs write the morning brew, signals, fills and job "
                     "failures here; add Discord webhooks (QM_DISCORD_WEBHOOK_<CHANNEL>) to have them sent.")
        else:
            st.caption("No notification matches these filters.")
        return
    shown = rows.assign(state=rows["status"].map(ui.status_label),
                        text=rows["preview"].str.replace("\n", " · ", regex=False).str.slice(0, 200))
    st.dataframe(ui.to_local(shown, ["created_at", "sent_at"]), hide_index=True, width="stretch", height=360,
                 key="outbox_rows",
                 column_order=["created_at", "channel", "kind", "state", "attempts", "sent_at", "text", "last_error"],
                 column_config={"created_at": ui.time_col("Created (ET)"), "sent_at": ui.time_col("Sent (ET)"),
                                "channel": "Channel", "kind": "Kind", "attempts": "Attempts",
                                "state": st.column_config.TextColumn("Status"),
                                "text": st.column_config.TextColumn("Preview", width="large"),
                                "last_error": st.column_config.TextColumn("Last error")})
    st.subheader("Latest messages")
    for r in rows.head(10).itertuples():
        with st.expander(f"{ui.status_label(r.status)} · {r.channel} · {r.kind or 'message'} · {ui.ny(r.created_at)}"):
            st.text(r.preview or "(empty message)")
            if r.last_error:
                st.caption(f"Last error: {r.last_error}")


if __name__ == "__main__":
    render()
