"""Orders and fills: the order book with each order's client order id and event history; every fill."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, ui
from engine.execution.orders import WORKING_VALUES, OrderStatus

STATUSES = [s.value for s in OrderStatus]


def order_book(orders: pd.DataFrame) -> pd.DataFrame:
    c = st.columns([3, 1, 2])
    statuses = c[0].multiselect("Status", STATUSES, key="orders_status", placeholder="all statuses",
                                format_func=ui.status_label)
    intent = c[1].selectbox("Intent", ["all", "open", "close"], key="orders_intent")
    text = c[2].text_input("Symbol or client order id", key="orders_text").strip()
    shown = orders
    if statuses:
        shown = shown[shown["status"].isin(statuses)]
    if intent == "open":
        shown = shown[shown["intent"] == "open"]
    elif intent == "close":
        shown = shown[shown["intent"] != "open"]
    if text:
        needle = text.upper()
        shown = shown[shown["symbol"].str.upper().str.contains(needle, regex=False)
                      | shown["client_order_id"].str.upper().str.contains(needle, regex=False)]
    st.dataframe(ui.to_local(shown.assign(state=shown["status"].map(ui.status_label)), ["created_at", "updated_at"]),
                 hide_index=True, width="stretch", height=min(38 + 35 * max(len(shown), 1), 460), key="order_book",
                 column_order=["id", "created_at", "symbol", "structure", "intent", "state", "quantity",
                               "filled_quantity", "legs_filled", "approved_by", "limit_price", "avg_fill_price",
                               "max_loss", "client_order_id", "broker_order_id", "reason"],
                 column_config={"id": st.column_config.NumberColumn("#", format="%d"),
                                "symbol": "Symbol", "structure": "Structure", "intent": "Intent",
                                "created_at": ui.time_col("Created (ET)"),
                                "state": st.column_config.TextColumn("Status"),
                                "quantity": st.column_config.NumberColumn("Qty"),
                                "filled_quantity": st.column_config.NumberColumn("Filled"),
                                "legs_filled": st.column_config.TextColumn("Legs filled", width="medium"),
                                "approved_by": st.column_config.TextColumn("Approved by"),
                                "limit_price": ui.number_col("Limit", help="per unit: + debit, − credit"),
                                "avg_fill_price": ui.number_col("Avg fill"), "max_loss": ui.dollar_col("Max loss"),
                                "client_order_id": st.column_config.TextColumn("Client order id"),
                                "broker_order_id": st.column_config.TextColumn("Broker id"),
                                "reason": st.column_config.TextColumn("Reason", width="large")})
    return shown


def order_history(shown: pd.DataFrame) -> None:
    if shown.empty:
        return
    labels = {int(r.id): f"#{r.id} {r.symbol} {r.structure} {r.intent} · {r.status} · {r.client_order_id}"
              for r in shown.itertuples()}
    oid = st.selectbox("Order history", list(labels), format_func=labels.get, key="orders_pick")
    if oid is None:
        return
    events = data.order_events(int(oid))
    st.dataframe(ui.to_local(events.assign(to=events["to"].map(ui.status_label)), ["at"]), hide_index=True,
                 width="stretch", key="order_events",
                 column_config={"at": ui.time_col("At (ET)"), "from": "From", "to": "To", "actor": "Actor",
                                "reason": st.column_config.TextColumn("Reason", width="large")})
    fills = data.fills()
    mine = fills[fills["order_id"] == int(oid)]
    if not mine.empty:
        st.caption(f"{len(mine)} fill(s) for this order")
        st.dataframe(ui.to_local(mine, ["filled_at"]), hide_index=True, width="stretch", key="order_fills",
                     column_order=["filled_at", "instrument", "side", "quantity", "price", "commission", "fees"],
                     column_config={"filled_at": ui.time_col("Filled (ET)"), "instrument": "Instrument", "side": "Side",
                                    "quantity": "Qty", "price": ui.dollar_col("Price"),
                                    "commission": ui.dollar_col("Commission"), "fees": ui.dollar_col("Fees")})


def fills_table() -> None:
    fills = data.fills()
    st.subheader(f"Fills ({len(fills)})")
    if fills.empty:
        st.caption("No fills yet.")
        return
    st.dataframe(ui.to_local(fills, ["filled_at"]), hide_index=True, width="stretch", height=400, key="fills",
                 column_order=["filled_at", "order_id", "instrument", "side", "quantity", "price", "multiplier",
                               "notional", "commission", "fees", "client_order_id", "broker_fill_id"],
                 column_config={"filled_at": ui.time_col("Filled (ET)"),
                                "order_id": st.column_config.NumberColumn("Order", format="%d"),
                                "instrument": "Instrument", "side": "Side", "quantity": "Qty",
                                "multiplier": "Multiplier", "price": ui.dollar_col("Price"),
                                "notional": ui.dollar_col("Notional"), "commission": ui.dollar_col("Commission"),
                                "fees": ui.dollar_col("Fees"), "client_order_id": "Client order id",
                                "broker_fill_id": "Broker fill id"})


def render() -> None:
    ui.page_header("Orders and fills", "Every order keeps a deterministic client order id (stored before the broker "
                   "is called) and an append-only history of its transitions.")
    orders = data.orders()
    if orders.empty:
        ui.empty("No orders yet. The pre-market job proposes entries from the scan's signals; position management "
                 "proposes exits.")
        return
    counts = orders["status"].value_counts()
    m = st.columns(5)
    m[0].metric("Orders", f"{len(orders):,}")
    m[1].metric("Waiting approval", f"{int(counts.get('proposed', 0))}")
    working = sum(int(counts.get(s, 0)) for s in WORKING_VALUES)
    m[2].metric("Working", f"{working}")
    m[3].metric("Filled", f"{int(counts.get('filled', 0))}")
    m[4].metric("Rejected / expired", f"{int(counts.get('rejected', 0) + counts.get('expired', 0))}")
    shown = order_book(orders)
    order_history(shown)
    fills_table()


if __name__ == "__main__":
    render()
