"""Scanner: the latest ATR Matrix scan as a filterable table, the matrix picture of the whole universe,
a chart per symbol with its levels, and "Scan now"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import actions, data, ui
from app.state import effective

VIEWS = ("Table", "Matrix", "Chart")
TABLE_COLUMNS = ["rank", "symbol", "sector", "zone_label", "score", "signal", "close", "atr_distance", "atr_pct",
                 "ma_aligned", "range_pos_20", "dollar_volume_20", "stop", "target_1", "target_4", "excluded_reason"]


def run_scan() -> None:
    bar = st.progress(0.02, text="Starting the scan…")
    steps = {"loading": 0.15, "scanning": 0.55}

    def progress(message: str) -> None:
        fraction = next((v for k, v in steps.items() if message.startswith(k)), 0.5)
        bar.progress(fraction, text=message[:1].upper() + message[1:] + "…")

    try:
        outcome = actions.scan_now(progress)
    except LookupError as exc:
        bar.empty()
        st.error(f"Cannot scan: {exc}", icon="⚠️")
        return
    bar.progress(1.0, text="Scan stored")
    run = outcome.run
    st.toast(f"Scan of {run.data_date}: {run.n_scanned:,} symbols, {run.n_signals} signals"
             + (" (already computed: same data and parameters)" if outcome.cache_hit else ""), icon="✅")
    st.session_state["scanner_view"] = "Table"


def filters(frame: pd.DataFrame) -> pd.DataFrame:
    c = st.columns([2, 3, 2, 2, 2])
    text = c[0].text_input("Symbol or sector", key="scan_text", placeholder="e.g. NVDA or Energy")
    zones = c[1].multiselect("Zones", ["entry", "extended", "scale_out", "exhausted", "below_trend"],
                             default=[], key="scan_zones", placeholder="all zones")
    min_score = c[2].slider("Min score", 0.0, 1.0, 0.0, 0.05, key="scan_min_score")
    signals_only = c[3].toggle("Signals only", key="scan_signals_only")
    show_excluded = c[4].toggle("Show excluded", key="scan_show_excluded",
                                help="symbols the data gate or liquidity rules left out, with the reason")
    mask = np.ones(len(frame), dtype=bool)
    if not show_excluded:
        mask &= frame["excluded_reason"].isna().to_numpy()
    if text.strip():
        t = text.strip().upper()
        mask &= (frame["symbol"].str.upper().str.contains(t, regex=False)
                 | frame["sector"].str.upper().str.contains(t, regex=False)).to_numpy()
    if zones:
        mask &= frame["zone"].isin(zones).to_numpy()
    if min_score > 0:
        mask &= (frame["score"].fillna(-1) >= min_score).to_numpy()
    if signals_only:
        mask &= frame["signal"].to_numpy()
    return frame[mask]


def table_view(frame: pd.DataFrame) -> None:
    shown = filters(frame)
    st.caption(f"{len(shown):,} of {len(frame):,} symbols · click a column header to sort")
    if shown.empty:
        ui.empty("No symbol matches these filters.")
        return
    st.dataframe(
        shown.assign(zone_label=shown["zone"].map(ui.zone_label)), hide_index=True, width="stretch", height=560,
        column_order=TABLE_COLUMNS, key="scan_table",
        column_config={
            "rank": st.column_config.NumberColumn("Rank", format="%d"),
            "symbol": st.column_config.TextColumn("Symbol"),
            "sector": st.column_config.TextColumn("Sector"),
            "zone_label": st.column_config.TextColumn("Zone"),
            "score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="%.2f"),
            "signal": st.column_config.CheckboxColumn("Signal"),
            "close": ui.dollar_col("Close"),
            "atr_distance": ui.number_col("ATR distance", help="(close − SMA50) / ATR"),
            "atr_pct": ui.percent_col("ATR %", help="100 × ATR / close"),
            "ma_aligned": st.column_config.CheckboxColumn("Aligned", help="EMA10 ≥ SMA20 ≥ SMA50 ≥ SMA100 ≥ SMA200"),
            "range_pos_20": ui.number_col("Range pos 20", "%.0f"),
            "dollar_volume_20": st.column_config.NumberColumn("Liquidity $/day", format="compact",
                                                              help="20-day mean dollar volume"),
            "stop": ui.dollar_col("Stop"),
            "target_1": ui.dollar_col("Target 1"),
            "target_4": ui.dollar_col("Target 4"),
            "excluded_reason": st.column_config.TextColumn("Excluded because"),
        },
    )


def matrix_view(frame: pd.DataFrame) -> None:
    included = frame[frame["excluded_reason"].isna() & frame["atr_distance"].notna() & frame["atr_pct"].notna()]
    if included.empty:
        ui.empty("No symbol has ATR values yet.")
        return
    y_cap = float(np.nanpercentile(included["atr_pct"], 99.5)) * 1.1
    p = effective().strategy
    # Wide enough for every zone band, even when few symbols are out there; outliers stay off the scale.
    x_lo = max(float(np.nanpercentile(included["atr_distance"], 0.2)), -15.0)
    x_hi = min(max(float(np.nanpercentile(included["atr_distance"], 99.9)), p.scale_out_max_distance + 1.5), 25.0)
    fig = go.Figure()
    for zone, color in ui.ZONE_COLORS.items():
        part = included[included["zone"] == zone]
        if part.empty:
            continue
        fig.add_trace(go.Scattergl(
            x=part["atr_distance"].to_numpy(), y=part["atr_pct"].to_numpy(), mode="markers", name=zone,
            text=part["symbol"].to_numpy(), marker={"color": color, "size": 4, "opacity": 0.65},
            hovertemplate="%{text}<br>distance %{x:.2f} ATR<br>ATR %{y:.2f}%<extra>" + zone + "</extra>"))
    signals = included[included["signal"]]
    if not signals.empty:
        fig.add_trace(go.Scattergl(
            x=signals["atr_distance"].to_numpy(), y=signals["atr_pct"].to_numpy(), mode="markers", name="signal",
            text=signals["symbol"].to_numpy(),
            marker={"color": "rgba(0,0,0,0)", "size": 10, "line": {"color": "#ffffff", "width": 1.5}},
            hovertemplate="%{text} · SIGNAL<br>distance %{x:.2f} ATR<br>ATR %{y:.2f}%<extra></extra>"))
    for x, label in ((p.entry_min_distance, "0"), (p.entry_max_distance, "entry ≤ 4"),
                     (p.extended_max_distance, "extended ≤ 7"), (p.scale_out_max_distance, "scale-out ≤ 10")):
        fig.add_vline(x=x, line={"color": "#95a5a6", "width": 1, "dash": "dot"}, annotation_text=label,
                      annotation_position="top")
    fig.add_hline(y=p.min_atr_pct, line={"color": "#95a5a6", "width": 1, "dash": "dot"},
                  annotation_text=f"min ATR {p.min_atr_pct:g}%", annotation_position="bottom left")
    fig.update_layout(height=560, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": 1.06},
                      xaxis={"title": "ATR distance: (close − SMA50) / ATR", "range": [x_lo, x_hi], "zeroline": False},
                      yaxis={"title": "ATR % of price", "range": [0, y_cap]})
    st.plotly_chart(fig, width="stretch", key="scan_matrix")
    st.caption(f"{len(included):,} symbols (WebGL). Zones are bands of ATR distance; white rings mark signals.")


def _chart_choices(frame: pd.DataFrame) -> list[str]:
    signals = frame.loc[frame["signal"], "symbol"].tolist()
    top = frame.loc[frame["excluded_reason"].isna(), "symbol"].head(300).tolist()
    return list(dict.fromkeys([*signals, *top]))


def chart_view(frame: pd.DataFrame, data_date) -> None:  # type: ignore[no-untyped-def]
    choices = _chart_choices(frame)
    signals = set(frame.loc[frame["signal"], "symbol"])
    c = st.columns([2, 2, 3])
    picked = c[0].selectbox("Signals (★) and top-ranked", choices, key="chart_pick",
                            format_func=lambda s: f"{s} ★" if s in signals else s)
    typed = c[1].text_input("…or any symbol", key="chart_symbol", placeholder="type a symbol").strip().upper()
    symbol = typed or picked
    if not symbol:
        ui.empty("Pick a symbol.")
        return
    row = frame[frame["symbol"] == symbol]
    if row.empty:
        st.warning(f"{symbol} is not in this scan.")
        return
    r = row.iloc[0]
    bars = data.symbol_bars(symbol, data_date)
    if bars.empty:
        st.warning(f"No stored bars for {symbol}.")
        return
    c[2].markdown(
        f"**{symbol}** · {r['sector'] or 'no sector'} · {ui.zone_label(r['zone'])} · score {ui.num(r['score'])}"
        f"{' · **signal**' if r['signal'] else ''}  \n"
        f"close {ui.money(r['close'])} · ATR {ui.money(r['atr'])} ({ui.pct(r['atr_pct'])}) · "
        f"distance {ui.num(r['atr_distance'])} ATR" + (f"  \n:orange[excluded: {r['excluded_reason']}]"
                                                        if isinstance(r["excluded_reason"], str) else ""))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.03)
    x = bars.index
    fig.add_trace(go.Candlestick(x=x, open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"],
                                 name=symbol, increasing_line_color=ui.GAIN, decreasing_line_color=ui.LOSS), 1, 1)
    for col, color in (("sma20", "#f1c40f"), ("sma50", "#3498db"), ("sma200", "#9b59b6")):
        fig.add_trace(go.Scatter(x=x, y=bars[col], name=col.upper(), line={"color": color, "width": 1.4}), 1, 1)
    for k, color in ((4, "#2ecc71"), (7, "#e67e22"), (10, "#e74c3c")):
        for side in ("up", "dn"):
            fig.add_trace(go.Scatter(x=x, y=bars[f"band_{side}_{k}"], name=f"SMA50 ± {k} ATR",
                                     legendgroup=f"band{k}", showlegend=side == "up",
                                     line={"color": color, "width": 1, "dash": "dot"}), 1, 1)
    levels = [("stop", r["stop"], ui.LOSS)] + [(f"T{i}", r[f"target_{i}"], "#1abc9c") for i in (1, 2, 3, 4)]
    for label, level, color in levels:
        if pd.notna(level):
            fig.add_hline(y=float(level), line={"color": color, "width": 1.2, "dash": "dash"}, row=1, col=1,
                          annotation_text=f"{label} {float(level):,.2f}", annotation_position="right")
    fig.add_trace(go.Bar(x=x, y=bars["volume"], name="volume", marker_color="#7f8c8d", showlegend=False), 2, 1)
    lo, hi = float(bars["low"].min()), float(bars["high"].max())
    for v in (r["stop"], r["target_4"]):
        if pd.notna(v):
            lo, hi = min(lo, float(v)), max(hi, float(v))
    fig.update_layout(height=620, margin={"l": 10, "r": 90, "t": 10, "b": 10}, xaxis_rangeslider_visible=False,
                      legend={"orientation": "h", "y": 1.04}, hovermode="x unified")
    fig.update_yaxes(range=[lo * 0.97, hi * 1.03], row=1, col=1, tickprefix="$")
    fig.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}])
    st.plotly_chart(fig, width="stretch", key="symbol_chart")
    st.caption("Stop and targets T1–T4 (a quarter of the position sold at each) are the setup's levels from the scan; "
               "dotted bands are SMA50 ± 4, 7 and 10 ATR, the matrix zones.")


def render() -> None:
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    with left:
        ui.page_header("Scanner")
    with right:
        clicked = st.button("Scan now", key="scan_now", type="primary", icon="🔄", width="stretch",
                            help="Runs the ATR Matrix scan over the stored bars in this process, as the scheduler does")
    if clicked:
        run_scan()
    scan = data.latest_scan()
    if scan is None:
        ui.empty("No scan yet — press Scan now or start the scheduler (its pre-market job scans every trading day).")
        return
    st.caption(f"ATR Matrix scan of **{ui.day(scan['data_date'])}** ({scan['data_source']}) · "
               f"finished {ui.ny(scan['finished_at'])} in {scan['seconds']:.1f} s")
    b = scan["breadth"]
    m = st.columns(5)
    m[0].metric("Scanned", f"{scan['n_scanned']:,}")
    m[1].metric("Signals", f"{scan['n_signals']:,}")
    m[2].metric("Entry zone", ui.pct(100 * b.get("entry_zone", 0.0), decimals=1))
    m[3].metric("Above SMA50", ui.pct(100 * b.get("above_sma50", 0.0), decimals=1))
    m[4].metric("Excluded", f"{scan['n_excluded']:,}",
                help=", ".join(f"{k}: {v:,}" for k, v in sorted(scan["excluded_by_reason"].items(),
                                                                    key=lambda kv: -kv[1])) or None)
    frame = data.scan_results(scan["id"])
    view = st.segmented_control("View", VIEWS, default="Table", key="scanner_view", required=True,
                                label_visibility="collapsed")
    if view == "Matrix":
        matrix_view(frame)
    elif view == "Chart":
        chart_view(frame, scan["data_date"])
    else:
        table_view(frame)


if __name__ == "__main__":
    render()
