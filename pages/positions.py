"""Positions: open positions with P&L, greeks, stop and targets and the next management action; closed
trades with R multiples; filters by symbol, strategy, structure and expiry."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, ui
from engine import queries

STYLE_LIMIT = 500  # rows: colouring gains and losses costs per cell; above this the table stays plain


def _options(open_: pd.DataFrame, closed: pd.DataFrame, column: str) -> list:  # type: ignore[type-arg]
    values = pd.concat([open_[column], closed[column]]).dropna().unique().tolist()
    return sorted(values)


def _filter(frame: pd.DataFrame, symbols: list[str], strategies: list[str], structures: list[str],
            expiries: list) -> pd.DataFrame:  # type: ignore[type-arg]
    if symbols:
        frame = frame[frame["symbol"].isin(symbols)]
    if strategies:
        frame = frame[frame["strategy"].isin(strategies)]
    if structures:
        frame = frame[frame["structure"].isin(structures)]
    if expiries:
        frame = frame[frame["expiry"].isin(expiries)]
    return frame


def _styled(frame: pd.DataFrame, columns: list[str]):  # type: ignore[no-untyped-def]
    if len(frame) > STYLE_LIMIT:
        return frame
    return frame.style.map(ui.pnl_style, subset=[c for c in columns if c in frame.columns])


OPEN_CONFIG = {
    "symbol": st.column_config.TextColumn("Symbol"),
    "structure": st.column_config.TextColumn("Structure"),
    "legs_text": st.column_config.TextColumn("Legs"),
    "expiry": st.column_config.DateColumn("Expiry"),
    "quantity": st.column_config.NumberColumn("Qty", format="%d"),
    "entry_price": ui.number_col("Entry"),
    "mark": ui.number_col("Mark"),
    "underlying_price": ui.dollar_col("Underlying"),
    "unrealized_pnl": ui.dollar_col("Unrealized"),
    "pnl_pct": ui.percent_col("P&L %"),
    "r_now": ui.number_col("R now", "%.2f", help="(unrealized + realized) / initial risk"),
    "max_loss": ui.dollar_col("At risk"),
    "delta": ui.number_col("Δ", "%.1f"),
    "gamma": ui.number_col("Γ", "%.2f"),
    "theta": ui.number_col("Θ/day", "%.2f"),
    "vega": ui.number_col("Vega", "%.2f"),
    "stop": ui.dollar_col("Stop"),
    "stop_distance_pct": ui.percent_col("To stop"),
    "targets": st.column_config.TextColumn("Targets"),
    "targets_hit": st.column_config.NumberColumn("Hit", format="%d"),
    "next_action": st.column_config.TextColumn("Next management action", width=360),
}
OPEN_ORDER = ["symbol", "structure", "expiry", "quantity", "unrealized_pnl", "pnl_pct", "r_now", "next_action",
              "underlying_price", "stop", "stop_distance_pct", "targets", "targets_hit", "entry_price", "mark",
              "max_loss", "delta", "gamma", "theta", "vega", "legs_text"]


def open_table(frame: pd.DataFrame) -> None:
    st.subheader(f"Open ({len(frame)})")
    if frame.empty:
        ui.empty("No open positions. Entries come from approved orders that fill; see Approvals and Orders.")
        return
    st.dataframe(_styled(frame, ["unrealized_pnl", "pnl_pct", "r_now"]), hide_index=True, width="stretch",
                 column_order=OPEN_ORDER, column_config=OPEN_CONFIG, key="open_positions",
                 height=min(38 + 35 * len(frame), 600))


def closed_table(frame: pd.DataFrame) -> None:
    st.subheader(f"Closed trades ({len(frame)})")
    if frame.empty:
        st.caption("No closed trades yet.")
        return
    shown = ui.to_local(frame, ["opened_at", "closed_at"])
    st.dataframe(_styled(shown, ["realized_pnl", "r_multiple"]), hide_index=True, width="stretch", key="closed",
                 height=min(38 + 35 * len(frame), 500),
                 column_order=["symbol", "structure", "legs_text", "expiry", "initial_quantity", "opened_at",
                               "closed_at", "days_held", "realized_pnl", "initial_risk", "r_multiple", "exit_reason"],
                 column_config={"symbol": "Symbol", "structure": "Structure",
                                "legs_text": st.column_config.TextColumn("Legs"),
                                "expiry": st.column_config.DateColumn("Expiry"),
                                "initial_quantity": st.column_config.NumberColumn("Qty"),
                                "opened_at": ui.time_col("Opened (ET)"), "closed_at": ui.time_col("Closed (ET)"),
                                "days_held": st.column_config.NumberColumn("Days"),
                                "realized_pnl": ui.dollar_col("Realized P&L"), "initial_risk": ui.dollar_col("1R"),
                                "r_multiple": ui.number_col("R multiple", "%+.2f"),
                                "exit_reason": st.column_config.TextColumn("Exit reason", width="large")})
    r = frame.dropna(subset=["r_multiple"]).sort_values("closed_at")
    if not r.empty:
        fig = go.Figure(go.Bar(x=r["symbol"] + " #" + r["id"].astype(str), y=r["r_multiple"],
                               marker_color=[ui.GAIN if v >= 0 else ui.LOSS for v in r["r_multiple"]],
                               hovertemplate="%{x}<br>%{y:+.2f} R<extra></extra>"))
        fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"title": "R multiple"},
                          xaxis={"title": None, "type": "category", "showticklabels": len(r) <= 30})
        st.plotly_chart(fig, width="stretch", key="r_multiples")


def render() -> None:
    ui.page_header("Positions", "Stock and option positions the engine manages: ATR stop, scale-outs at the four "
                   "targets, time exit before expiry.")
    open_ = data.open_positions()
    closed = data.closed_positions()
    c = st.columns(4)
    symbols = c[0].multiselect("Symbol", _options(open_, closed, "symbol"), key="pos_symbols", placeholder="all")
    strategies = c[1].multiselect("Strategy", _options(open_, closed, "strategy"), key="pos_strategies",
                                  placeholder="all")
    structures = c[2].multiselect("Structure", _options(open_, closed, "structure"), key="pos_structures",
                                  placeholder="all")
    expiries = c[3].multiselect("Expiry", _options(open_, closed, "expiry"), key="pos_expiries", placeholder="all")
    open_f = _filter(open_, symbols, strategies, structures, expiries)
    closed_f = _filter(closed, symbols, strategies, structures, expiries)

    unrealized = float(open_f["unrealized_pnl"].sum()) if not open_f.empty else 0.0
    stats = queries.trade_stats(closed_f)
    m = st.columns(5)
    m[0].metric("Open positions", f"{len(open_f)}")
    m[1].metric("Unrealized P&L", ui.money(unrealized, signed=True))
    m[2].metric("Realized (closed)", ui.money(stats["total_pnl"], signed=True))
    m[3].metric("Win rate", ui.pct(100 * stats["win_rate"], decimals=0) if stats["win_rate"] is not None else "–")
    m[4].metric("Average R", f"{ui.num(stats['avg_r'], signed=True)} R" if stats["avg_r"] is not None else "–")
    open_table(open_f)
    closed_table(closed_f)


if __name__ == "__main__":
    render()
