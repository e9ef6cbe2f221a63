"""Backtests: launch a run through the engine (progress with ETA, the console stays responsive), then per
run the metrics, equity and drawdown, monthly returns heatmap, trades on the price chart (entry, stop and
exit markers; options trades on the underlying's chart), a run-versus-run comparison, and a parameter heatmap
for searches (two chosen parameters against the objective, from the stored trials)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state, ui
from engine.backtest import jobs
from engine.backtest.metrics import drawdown_curve, monthly_returns
from engine.backtest.report import format_metrics, run_bars, trade_markers
from engine.backtest.runner import MODES, SOURCES, STRATEGIES, BacktestSpec
from engine.backtest.store import list_runs, load_trades


def launcher() -> None:
    with st.form("bt_launch"):
        c = st.columns(6)
        strategy = c[0].selectbox("Strategy", STRATEGIES, index=1)
        mode = c[1].selectbox("Mode", MODES, index=1)
        source = c[2].selectbox("Data", SOURCES)
        symbols = c[3].number_input("Symbols", 1, 40_000, 100)
        start = c[4].date_input("Start", date(2023, 1, 3))
        end = c[5].date_input("End", date(2025, 12, 31))
        if st.form_submit_button("Run backtest", type="primary"):
            try:
                spec = BacktestSpec(strategy=strategy, mode=mode, source=source, symbols=int(symbols), start=start,
                                    end=end)
            except ValueError as exc:
                st.error(str(exc))
            else:
                jobs.launch(spec, state.db(), state.settings())
                st.toast(f"{strategy}/{mode} started")


@st.fragment(run_every=1.0)
def running() -> None:
    for job in jobs.status()[:5]:
        label = f"{job.spec.strategy}/{job.spec.mode} on {job.spec.source}, {job.spec.start}..{job.spec.end}"
        if job.error:
            st.error(f"{label}: {job.error}")
        elif job.finished:
            st.success(f"{label}: stored as run {job.run_id}")
        else:
            eta = job.eta_seconds
            st.progress(job.fraction, text=f"{label}: {job.done}/{job.total} sessions"
                        + (f", ETA {eta:.0f}s" if eta is not None else ""))


def _curve(run) -> pd.Series:  # type: ignore[no-untyped-def]
    eq = run.equity or {}
    return pd.Series(eq.get("equity", []), index=pd.to_datetime(eq.get("dates", [])), dtype=float)


def run_view(run) -> None:  # type: ignore[no-untyped-def]
    st.code(format_metrics(run.metrics, f"run {run.id}: {run.strategy} {run.mode} on {run.data_source} "
                                        f"({run.n_symbols} symbols, code {run.code_version})"), language=None)
    curve = _curve(run)
    if curve.empty:
        return
    fig = go.Figure(go.Scatter(x=curve.index, y=curve.values, name="equity"))
    fig.update_layout(height=280, margin={"t": 20, "b": 20}, title="Equity")
    st.plotly_chart(fig, key=f"eq_{run.id}")
    dd = drawdown_curve(curve.to_numpy())
    fig = go.Figure(go.Scatter(x=curve.index, y=100 * dd, fill="tozeroy", name="drawdown %"))
    fig.update_layout(height=200, margin={"t": 20, "b": 20}, title="Drawdown (%)")
    st.plotly_chart(fig, key=f"dd_{run.id}")
    table = monthly_returns(curve.index.values, curve.to_numpy()).dropna(axis=1, how="all") * 100
    fig = go.Figure(go.Heatmap(z=table.values, x=[str(m) for m in table.columns], y=[str(y) for y in table.index],
                               colorscale="RdYlGn", zmid=0, texttemplate="%{z:.1f}"))
    fig.update_layout(height=60 + 30 * len(table), margin={"t": 20, "b": 20}, title="Monthly returns (%)")
    st.plotly_chart(fig, key=f"mo_{run.id}")
    trades = load_trades(state.reader(), run.id)
    if trades.empty:
        st.info("No trades in this run.")
        return
    st.dataframe(trades.drop(columns=["detail", "run_id", "id"], errors="ignore"), hide_index=True,
                 key=f"tr_{run.id}")
    symbol = st.selectbox("Trades on the price chart", sorted(trades["symbol"].unique()), key=f"sym_{run.id}")
    price_chart(run, trades[trades["symbol"] == symbol], symbol)


def price_chart(run, trades: pd.DataFrame, symbol: str) -> None:  # type: ignore[no-untyped-def]
    fig = go.Figure()
    bars = run_bars(run, symbol, state.settings().bar_store_dir)
    if bars is not None:
        fig.add_trace(go.Candlestick(x=bars.index, open=bars["open"], high=bars["high"], low=bars["low"],
                                     close=bars["close"], name=symbol))
    m = trade_markers(run, trades, bars)
    fig.add_trace(go.Scatter(x=m["entry"]["x"], y=m["entry"]["y"], mode="markers", name="entry",
                             marker={"symbol": "triangle-up", "size": 10, "color": "green"}))
    fig.add_trace(go.Scatter(x=m["stop"]["x"], y=m["stop"]["y"], mode="markers", name="stop",
                             marker={"symbol": "line-ew-open", "size": 12, "color": "red"}))
    fig.add_trace(go.Scatter(x=m["exit"]["x"], y=m["exit"]["y"], mode="markers", name="exit",
                             marker={"symbol": "triangle-down", "size": 10, "color": "black"}, text=m["exit"]["text"]))
    fig.update_layout(height=380, margin={"t": 20, "b": 20}, xaxis_rangeslider_visible=False)
    st.plotly_chart(fig, key=f"px_{run.id}")


def search_view() -> None:
    """Parameter heatmap of a stored search: the mean objective over two chosen parameters' values."""
    from engine.backtest.trials import heatmap_table, study_names, trials_frame

    try:
        storage = state.studies()
    except RuntimeError as exc:  # Optuna's tables were written by another optuna version
        st.error(f"Stored searches cannot be read: {exc}")
        return
    studies = study_names(storage)
    if not studies:
        st.caption("No parameter searches stored yet (`python -m engine search ...`).")
        return
    study = st.selectbox("Search (study)", studies, key="bt_study")
    trials = trials_frame(storage, study)
    params = [c for c in trials.columns if c not in ("trial", "value")]
    if trials.empty or len(params) < 2:
        st.info(f"{study}: {len(trials)} finished trials over {len(params)} parameter(s); a heatmap needs two.")
        if not trials.empty:
            st.dataframe(trials, hide_index=True, key="bt_trials")
        return
    c = st.columns(2)
    x = c[0].selectbox("Parameter (x)", params, index=0, key="bt_hx")
    y = c[1].selectbox("Parameter (y)", params, index=1, key="bt_hy")
    if x == y:
        st.warning("Choose two different parameters.")
        return
    table = heatmap_table(trials, x, y)
    fig = go.Figure(go.Heatmap(z=table.values, x=[str(v) for v in table.columns], y=[str(v) for v in table.index],
                               colorscale="Viridis", texttemplate="%{z:.3f}", colorbar={"title": "objective"}))
    fig.update_layout(height=120 + 30 * len(table), margin={"t": 30, "b": 20}, xaxis_title=x, yaxis_title=y,
                      title=f"{study}: mean objective of {len(trials)} trials")
    st.plotly_chart(fig, key="bt_heatmap")


def compare(runs) -> None:  # type: ignore[no-untyped-def]
    chosen = st.multiselect("Compare runs", [r.id for r in runs], max_selections=4, key="bt_compare")
    picked = [r for r in runs if r.id in chosen]
    if len(picked) < 2:
        return
    fig = go.Figure()
    for r in picked:
        c = _curve(r)
        if not c.empty:
            fig.add_trace(go.Scatter(x=c.index, y=c / c.iloc[0], name=f"run {r.id}"))
    fig.update_layout(height=280, margin={"t": 20, "b": 20}, title="Equity, rebased to 1")
    st.plotly_chart(fig, key="bt_cmp_chart")
    keys = ["total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "trades"]
    st.dataframe(pd.DataFrame({f"run {r.id}": [r.metrics.get(k) for k in keys] for r in picked}, index=keys),
                 key="bt_cmp_table")


def render() -> None:
    ui.page_header("Backtests")
    launcher()
    running()
    runs = list_runs(state.reader())
    if not runs:
        st.info("No backtests stored yet: run one above or with `python -m engine backtest ...`.")
    else:
        runs_view(runs)
    search_view()


def runs_view(runs) -> None:  # type: ignore[no-untyped-def]
    labels = {r.id: f"run {r.id}: {r.strategy}/{r.mode} {r.data_source} {r.start}..{r.end} "
                    f"(sharpe {np.round(r.metrics.get('sharpe') or np.nan, 2)})" for r in runs}
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="bt_run")
    run_view(next(r for r in runs if r.id == run_id))
    compare(runs)


if __name__ == "__main__":
    render()
