"""Tax lots: open lots with unrealized P&L and holding-period start; closed lots with realized P&L by year
and term; wash sales with the replacement lot; differences from the broker's own realized figures.

The lots are rebuilt by ``python -m engine lots report`` and ``python -m engine sync --broker ibkr``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import ui
from app.state import db_key, reader
from engine.queries import tax_lots as q

TTL = 30


@st.cache_data(ttl=TTL, show_spinner=False)
def _open(key: str) -> pd.DataFrame:
    return q.open_lots(reader())


@st.cache_data(ttl=TTL, show_spinner=False)
def _closed(key: str) -> pd.DataFrame:
    return q.closed_lots(reader())


@st.cache_data(ttl=TTL, show_spinner=False)
def _by_year(key: str) -> pd.DataFrame:
    return q.realized_by_year_and_term(reader())


@st.cache_data(ttl=TTL, show_spinner=False)
def _wash(key: str) -> pd.DataFrame:
    return q.wash_sales(reader())


@st.cache_data(ttl=TTL, show_spinner=False)
def _diffs(key: str) -> tuple[pd.DataFrame, dict[str, int]]:
    db = reader()
    return q.broker_differences(db), q.broker_check_counts(db)


MONEY = st.column_config.NumberColumn(format="dollar")


def _year_chart(by_year: pd.DataFrame) -> None:
    fig = go.Figure()
    for term in ("short", "long"):
        part = by_year[by_year["term"] == term]
        fig.add_bar(x=part["year"].astype(str), y=part["allowed"], name=f"{term}-term (after wash sales)")
    fig.update_layout(barmode="group", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title="Realized P&L by tax year and term")
    st.plotly_chart(fig, width="stretch")


def render() -> None:
    ui.page_header("Tax lots")
    key = db_key()
    open_, closed, by_year = _open(key), _closed(key), _by_year(key)
    if open_.empty and closed.empty:
        st.info("No tax lots yet. Import history with `python -m engine flex import FILE...` or "
                "`python -m engine lots import-trades FILE --account NAME`, then run "
                "`python -m engine lots report` (or `sync --broker ibkr`) to rebuild the lots.")
        return
    st.subheader("Open lots")
    st.dataframe(open_, hide_index=True, width="stretch", key="open_lots",
                 column_config={"basis": MONEY, "wash_sale_adjustment": MONEY, "mark": MONEY, "unrealized": MONEY})
    st.subheader("Closed lots")
    years = sorted({d.year for d in closed["sold"]}, reverse=True) if not closed.empty else []
    year = st.selectbox("Tax year", ["all", *years], key="tax_year")
    shown = closed if year == "all" else closed[[d.year == year for d in closed["sold"]]]
    st.dataframe(shown, hide_index=True, width="stretch", key="closed_lots",
                 column_config={"basis": MONEY, "proceeds": MONEY, "realized": MONEY, "wash_sale_disallowed": MONEY})
    if not by_year.empty:
        st.dataframe(by_year, hide_index=True, key="by_year",
                     column_config={"realized": MONEY, "disallowed": MONEY, "allowed": MONEY})
        _year_chart(by_year)
    st.subheader("Wash sales")
    wash = _wash(key)
    if wash.empty:
        st.caption("No wash sales.")
    else:
        st.dataframe(wash, hide_index=True, width="stretch", key="wash", column_config={"disallowed": MONEY})
    st.subheader("Differences from the broker's realized P&L")
    diffs, counts = _diffs(key)
    st.caption(f"{counts['checked']} closing executions with a broker figure: {counts['matched']} match to the "
               f"cent, {counts['different']} differ (each with its cause).")
    if not diffs.empty:
        st.dataframe(diffs, hide_index=True, width="stretch", key="diffs",
                     column_config={"broker_pnl": MONEY, "our_pnl": MONEY, "difference": MONEY})


if __name__ == "__main__":
    render()
