"""Overview: the state of the market data, the universe and the engine process."""

from __future__ import annotations

import streamlit as st

from app.state import db, settings
from engine import queries


@st.cache_data(ttl=60, show_spinner=False)
def _coverage() -> dict:
    return queries.bar_coverage(settings())


@st.cache_data(ttl=60, show_spinner=False)
def _proxies():  # type: ignore[no-untyped-def]
    return queries.index_proxies(settings())


def render() -> None:
    cfg = settings()
    st.title("Overview")
    st.caption(
        f"mode **{cfg.trading_mode.value}** · approvals **{cfg.approval_mode.value}** · "
        f"data **{cfg.data_source.value}** · broker **{cfg.broker.value}**"
    )
    universe = queries.universe_summary(db())
    coverage = _coverage()
    cols = st.columns(4)
    cols[0].metric("Instruments", f"{universe['instruments']:,}")
    cols[1].metric("Tradable", f"{universe['tradable']:,}")
    cols[2].metric("Sessions of bars", f"{coverage['sessions']:,}")
    cols[3].metric("Latest bar", str(coverage["last"] or "none"))
    if universe["instruments"] == 0:
        st.info("The database has no instruments yet: run `python -m engine init` (or `make run`) to seed it.")

    st.subheader("Index proxies")
    proxies = _proxies()
    if proxies.empty:
        st.info("No index-proxy bars in the store yet.")
    else:
        st.dataframe(
            proxies,
            hide_index=True,
            column_config={
                "close": st.column_config.NumberColumn("Close", format="$%.2f"),
                "change_pct": st.column_config.NumberColumn("Change", format="%+.2f%%"),
            },
        )

    st.subheader("Engine process")
    beats = queries.heartbeats(db())
    if beats.empty:
        st.warning("No heartbeat from the scheduler yet. It starts with `make run` (or `python scheduler.py`).")
    else:
        for row in beats.itertuples():
            state = "🟢" if row.age_seconds < 120 else "🔴"
            st.write(f"{state} **{row.component}** ({row.instance}) last beat {row.age_seconds:,.0f} s ago")
