"""Options candidates: the structure chosen for each signal (legs, greeks, max loss and profit, breakevens,
payoff at expiry and today) and the contracts the chain filters rejected, each with its reason."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, ui
from engine import queries


def pick(frame: pd.DataFrame) -> int | None:
    c = st.columns([1, 2, 3])
    chosen_only = c[0].toggle("Chosen only", value=True, key="cand_chosen_only",
                              help="the structure picked for each signal; off shows the alternatives too")
    text = c[1].text_input("Symbol", key="cand_symbol", placeholder="filter by symbol").strip().upper()
    shown = frame[frame["chosen"]] if chosen_only else frame
    if text:
        shown = shown[shown["symbol"].str.contains(text, regex=False)]
    order = [ui.status_label(o) if isinstance(o, str) else f"no order (signal {s})"
             for o, s in zip(shown["order_status"], shown["signal_status"], strict=True)]
    st.dataframe(
        shown.assign(order=order), hide_index=True, width="stretch",
        height=min(38 + 35 * len(shown), 320), key="cand_table",
        column_order=["candidate_id", "data_date", "symbol", "structure", "expiry", "score", "net_mid", "max_loss",
                      "max_profit", "breakevens", "iv_rank", "delta", "theta", "rejected", "order"],
        column_config={"candidate_id": st.column_config.NumberColumn("#", format="%d"),
                       "data_date": st.column_config.DateColumn("Signal date"),
                       "symbol": st.column_config.TextColumn("Symbol"),
                       "structure": st.column_config.TextColumn("Structure"),
                       "expiry": st.column_config.DateColumn("Expiry"),
                       "breakevens": st.column_config.TextColumn("Breakevens"),
                       "score": ui.number_col("Score"), "net_mid": ui.number_col("Net mid", help="+ debit, − credit"),
                       "max_loss": ui.dollar_col("Max loss"), "max_profit": ui.dollar_col("Max profit"),
                       "iv_rank": ui.number_col("IV rank", "%.0f"), "delta": ui.number_col("Δ", "%.1f"),
                       "theta": ui.number_col("Θ/day", "%.2f"), "rejected": st.column_config.NumberColumn("Rejected"),
                       "order": st.column_config.TextColumn("Order")})
    if shown.empty:
        ui.empty("No candidate matches the filter.")
        return None
    labels = {int(r.candidate_id): f"#{r.candidate_id} {r.symbol} {r.structure} ({r.data_date})"
              for r in shown.itertuples()}
    return c[2].selectbox("Candidate", list(labels), format_func=labels.get, key="cand_pick")


def payoff_chart(detail: dict) -> None:  # type: ignore[type-arg]
    curve = data.payoff(int(detail["id"]))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve["price"], y=curve["at_expiry"], name="at expiry",
                             line={"color": "#3498db", "width": 2.5},
                             hovertemplate="underlying $%{x:,.2f}<br>P&L $%{y:,.0f}<extra>at expiry</extra>"))
    if curve["today"].notna().any():
        fig.add_trace(go.Scatter(x=curve["price"], y=curve["today"], name="today (model)",
                                 line={"color": "#f39c12", "width": 2, "dash": "dash"},
                                 hovertemplate="underlying $%{x:,.2f}<br>P&L $%{y:,.0f}<extra>today</extra>"))
    fig.add_hline(y=0, line={"color": "#7f8c8d", "width": 1})
    spot = detail["greeks"].get("underlying_price")
    marks = [("spot", spot, "#ecf0f1")] + [(f"BE {b:,.2f}", b, "#95a5a6") for b in detail["breakevens"]]
    sig = detail.get("signal") or {}
    if sig.get("stop"):
        marks.append(("stop", sig["stop"], ui.LOSS))
    for i, t in enumerate(sig.get("targets") or [], start=1):
        if i in (1, 4):
            marks.append((f"T{i}", t, "#1abc9c"))
    lo, hi = float(curve["price"].min()), float(curve["price"].max())
    for label, x, color in marks:
        if x is not None and math.isfinite(float(x)) and lo <= float(x) <= hi:
            fig.add_vline(x=float(x), line={"color": color, "width": 1, "dash": "dot"}, annotation_text=label,
                          annotation_position="top")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
                      xaxis={"title": "underlying price", "tickformat": "$,.0f"},
                      yaxis={"title": "P&L per contract", "tickformat": "$,.0f"}, legend={"orientation": "h", "y": 1.1})
    st.plotly_chart(fig, width="stretch", key="payoff")


def detail_view(candidate_id: int) -> None:
    detail = data.candidate_detail(candidate_id)
    if detail is None:
        st.warning(f"Candidate {candidate_id} no longer exists.")
        return
    sig = detail.get("signal") or {}
    st.subheader(f"{detail['symbol']} · {detail['structure'].replace('_', ' ')}"
                 + (" · chosen" if detail["chosen"] else " · alternative"))
    debit = detail["net_mid"] >= 0
    m = st.columns(6)
    m[0].metric("Net debit" if debit else "Net credit", ui.money(abs(detail["net_mid"])),
                f"natural {ui.money(abs(detail['net_natural']))}", **ui.NEUTRAL, help="per share, at mid")
    m[1].metric("Max loss", ui.money(detail["max_loss"]), help="per contract, at the natural price")
    m[2].metric("Max profit", ui.money(detail["max_profit"]) if detail["max_profit"] is not None else "unlimited",
                help="per contract")
    m[3].metric("Breakeven", ", ".join(ui.money(b) for b in detail["breakevens"]) or "–")
    m[4].metric("IV rank", ui.num(detail["iv_rank"], 0))
    m[5].metric("Underlying", ui.money(detail["greeks"].get("underlying_price")))
    g = detail["greeks"]
    gm = st.columns(4)
    gm[0].metric("Delta", ui.num(g.get("delta"), 1), help="per contract (shares equivalent)")
    gm[1].metric("Gamma", ui.num(g.get("gamma"), 2))
    gm[2].metric("Theta", ui.money(g.get("theta"), signed=True), help="per contract per day")
    gm[3].metric("Vega", ui.money(g.get("vega"), signed=True), help="per contract per vol point")
    if sig:
        st.caption(f"Signal of {ui.day(sig['data_date'])}: score {ui.num(sig['score'])}, zone {sig['zone']}, "
                   f"entry {ui.money(sig['entry_price'])}, ATR {ui.money(sig['atr'])}, stop {ui.money(sig['stop'])}, "
                   f"targets {', '.join(ui.money(t) for t in sig['targets'])} · signal {sig['status']}")
    notes = detail["reasons"].get("notes") or []
    if notes:
        st.caption("Why this structure: " + "; ".join(notes))
    legs = pd.DataFrame(detail["legs"])
    if not legs.empty:
        legs["side"] = legs["qty"].map(lambda q: "buy" if q > 0 else "sell")
        st.dataframe(legs, hide_index=True, width="stretch", key="cand_legs",
                     column_order=["side", "qty", "occ_symbol", "right", "strike", "expiry", "dte", "bid", "ask", "iv",
                                   "delta", "gamma", "theta", "vega"],
                     column_config={"side": "Side", "qty": "Qty", "occ_symbol": "Contract", "right": "Right",
                                    "expiry": "Expiry", "strike": ui.dollar_col("Strike"), "bid": ui.dollar_col("Bid"),
                                    "ask": ui.dollar_col("Ask"), "iv": st.column_config.NumberColumn("IV",
                                                                                                     format="percent"),
                                    "dte": ui.number_col("DTE", "%.0f"), "delta": ui.number_col("Δ", "%.3f"),
                                    "gamma": ui.number_col("Γ", "%.4f"), "theta": ui.number_col("Θ", "%.3f"),
                                    "vega": ui.number_col("Vega", "%.3f")})
    payoff_chart(detail)
    others = [a for a in detail["alternatives"] if a["id"] != detail["id"]]
    if others:
        st.caption("Other structures built for this signal: "
                   + ", ".join(f"#{a['id']} {a['structure']}{' (chosen)' if a['chosen'] else ''}" for a in others))
    rejected_view(detail["rejected"])


def rejected_view(rejected: list) -> None:  # type: ignore[type-arg]
    st.subheader("Rejected contracts")
    if not rejected:
        st.caption("The chain filter rejected no contract (or the chain was empty).")
        return
    frame = queries.rejected_frame(rejected)
    counts = frame.groupby("rule").size().sort_values(ascending=False)
    c = st.columns([1, 2])
    with c[0]:
        st.dataframe(counts.rename("contracts").reset_index(), hide_index=True, width="stretch", key="rej_counts",
                     column_config={"rule": "Rejected by", "contracts": "Contracts"})
    with c[1]:
        rule = st.selectbox("Rule", ["all", *counts.index.tolist()], key="rej_rule")
        shown = frame if rule == "all" else frame[frame["rule"] == rule]
        st.dataframe(shown[["occ_symbol", "reason"]], hide_index=True, width="stretch", height=300, key="rej_table",
                     column_config={"occ_symbol": "Contract", "reason": "Reason"})


def render() -> None:
    ui.page_header("Options candidates",
                   "For each signal the engine reads the option chain, filters contracts and builds structures; "
                   "the first is chosen.")
    frame = data.candidates()
    if frame.empty:
        ui.empty("No option candidates yet. They are built from the top signals by the pre-market job: start the "
                 "scheduler, or run a scan on the Scanner page and let the next pre-market job pick it up.")
        return
    candidate_id = pick(frame)
    if candidate_id is not None:
        detail_view(int(candidate_id))


if __name__ == "__main__":
    render()
