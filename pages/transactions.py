"""Transactions of every broker account (the shared table, filled by the syncs): filters by date, symbol
and type, and a CSV export of what the filters show."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from app import data, ui
from engine.queries.broker import transactions_csv

CONFIG = {
    "executed_at": ui.time_col("Executed (NY)"),
    "broker": st.column_config.TextColumn("Broker"),
    "account": st.column_config.TextColumn("Account"),
    "type": st.column_config.TextColumn("Type"),
    "symbol": st.column_config.TextColumn("Symbol"),
    "underlying": st.column_config.TextColumn("Underlying"),
    "quantity": ui.number_col("Qty", fmt="%.4f"),
    "price": ui.number_col("Price", fmt="%.4f"),
    "amount": ui.dollar_col("Amount", help="cash effect, net of fees: + received, − paid"),
    "fees": ui.dollar_col("Fees"),
    "currency": st.column_config.TextColumn("Ccy"),
    "broker_txn_id": st.column_config.TextColumn("Broker id"),
}


def render() -> None:
    ui.page_header("Transactions", "Every broker's transactions, as synced (newest first).")
    c = st.columns([2, 2, 3])
    today = date.today()
    span = c[0].date_input("Dates", value=(today - timedelta(days=90), today), key="txn_dates")
    symbol = c[1].text_input("Symbol", key="txn_symbol", placeholder="e.g. SPY")
    types = c[2].multiselect("Type", data.transaction_types(), key="txn_types")
    start, end = (span if isinstance(span, tuple) and len(span) == 2 else (None, None))
    frame = data.transactions(start, end, symbol, types)
    if frame.empty:
        ui.empty("No transactions for these filters. `python -m engine sync --broker NAME` fills the table.")
        return
    st.caption(f"{len(frame):,} transactions · net amount {ui.money(frame['amount'].sum(), signed=True)} · "
               f"fees {ui.money(frame['fees'].sum())}")
    st.dataframe(ui.to_local(frame, ["executed_at"]), hide_index=True, width="stretch", column_config=CONFIG)
    st.download_button("Export CSV", transactions_csv(frame), file_name="transactions.csv", mime="text/csv",
                       icon="⬇️")


if __name__ == "__main__":
    render()
