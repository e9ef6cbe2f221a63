"""Broker: environment, account, balances and last sync; positions at the broker and in the engine side by
side with the differences highlighted; external positions with an "adopt" action through the risk gate."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import actions, data, ui

KIND_COLORS = {"external": "background-color: rgba(241, 196, 15, 0.25)",
               "missing_at_broker": "background-color: rgba(231, 76, 60, 0.25)",
               "quantity": "background-color: rgba(231, 76, 60, 0.25)"}

POSITION_CONFIG = {
    "instrument": st.column_config.TextColumn("Instrument"),
    "underlying": st.column_config.TextColumn("Underlying"),
    "instrument_type": st.column_config.TextColumn("Type"),
    "broker_quantity": st.column_config.NumberColumn("Broker qty", format="%d"),
    "engine_quantity": st.column_config.NumberColumn("Engine qty", format="%d"),
    "difference": st.column_config.NumberColumn("Difference", format="%d"),
    "kind": st.column_config.TextColumn("Status"),
    "average_open_price": ui.number_col("Avg open"),
}


def _highlight(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    return frame.style.apply(lambda row: [KIND_COLORS.get(row["kind"], "")] * len(row), axis=1)


def adopt_section(external: pd.DataFrame) -> None:
    st.subheader("External positions")
    st.caption("Held at the broker, not opened by the engine: they count in every risk limit and the engine "
               "never manages or closes them until you adopt them. Adopting passes the risk gate like an entry.")
    if external.empty:
        ui.empty("No external positions.")
        return
    st.dataframe(external, hide_index=True, width="stretch",
                 column_config={"underlying": "Underlying", "legs": "Legs", "risk": ui.dollar_col("Risk counted")})
    c = st.columns([2, 3, 1], vertical_alignment="bottom")
    underlying = c[0].selectbox("Underlying", external["underlying"].tolist(), key="adopt_underlying")
    reason = c[1].text_input("Reason", key="adopt_reason", placeholder="why the engine should manage it")
    if c[2].button("Adopt", key="adopt", type="primary", width="stretch"):
        try:
            st.session_state["broker_flash"] = ("success", actions.adopt_external(underlying, reason))
        except (ValueError, LookupError) as exc:
            st.session_state["broker_flash"] = ("error", str(exc))
        st.rerun()


def render() -> None:
    ui.page_header("Broker")
    flash = st.session_state.pop("broker_flash", None)
    if flash:
        (st.success if flash[0] == "success" else st.error)(flash[1])
    overview, side_by_side, external = data.broker_overview()
    if overview["broker"] == "paper" and not overview["synced"]:
        ui.empty("Paper trading: the built-in paper broker is the account (see Positions and Orders). Set "
                 "QM_BROKER to a real broker and run `python -m engine sync --broker NAME` to see its account.")
        return
    if not overview["synced"]:
        ui.empty(f"No sync of {overview['broker']} yet: run `python -m engine sync --broker {overview['broker']}` "
                 "(the nightly job does it too).")
        return
    b = overview["balances"]
    m = st.columns(5)
    m[0].metric("Net liquidating value", ui.money(b.get("net_liquidating_value")))
    m[1].metric("Cash", ui.money(b.get("cash_balance")))
    m[2].metric("Buying power", ui.money(b.get("buying_power")))
    m[3].metric("Differences", len(overview["differences"]))
    m[4].metric("Last sync", ui.ny(overview["last_sync_at"]))
    st.caption(f"{overview['transactions_total']:,} transactions stored · newest {ui.ny(overview.get('last_txn_at'))}")
    st.subheader("Positions: broker vs engine")
    if side_by_side.empty:
        ui.empty("No positions at the broker or in the engine.")
    else:
        st.dataframe(_highlight(side_by_side), hide_index=True, width="stretch", column_config=POSITION_CONFIG)
    adopt_section(external)


if __name__ == "__main__":
    render()
