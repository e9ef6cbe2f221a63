"""The Backtests page on a stored run: metrics, charts, trades; a run-vs-run comparison needs two runs."""

from __future__ import annotations

from datetime import date

from engine.backtest.runner import BacktestSpec, run_backtest
from engine.config import get_settings
from engine.db import get_engine, migrate


def test_backtests_page_shows_a_stored_run(empty, console) -> None:  # type: ignore[no-untyped-def]
    url = get_settings().db_url
    migrate(url)
    engine = get_engine(url)
    spec = BacktestSpec(strategy="ref_sma_atr", mode="stock", source="sim", symbols=12, start=date(2024, 1, 2),
                        end=date(2024, 12, 31))
    run_id = run_backtest(spec, store=engine).run_id
    at = console().open("backtests")
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Backtests"
    text = "\n".join(str(c.value) for c in at.code)
    assert f"run {run_id}: ref_sma_atr stock on sim (12 symbols" in text and "sharpe" in text
    assert len(at.dataframe) >= 1  # the trade list


def test_search_view_shows_a_parameter_heatmap_from_stored_trials(empty, console) -> None:  # type: ignore[no-untyped-def]
    import optuna

    from engine.backtest.studies import study_storage
    from engine.backtest.trials import heatmap_table, trials_frame

    storage = study_storage(get_settings().db_url)
    study = optuna.create_study(study_name="wf-fold1", storage=storage, direction="maximize")
    # objective = fast + 10 * stop_atr: a 2 x 2 grid with a repeated cell (mean of 12 and 14 = 13)
    for fast, stop, value in ((10, 1.0, 20.0), (10, 2.0, 30.0), (20, 1.0, 12.0), (20, 1.0, 14.0), (20, 2.0, 40.0)):
        study.enqueue_trial({"fast": fast, "stop_atr": stop})
        trial = study.ask({"fast": optuna.distributions.IntDistribution(5, 30),
                           "stop_atr": optuna.distributions.FloatDistribution(0.5, 3.0)})
        study.tell(trial, value)
    table = heatmap_table(trials_frame(storage, "wf-fold1"), "fast", "stop_atr")
    assert table.loc[1.0, 10] == 20.0 and table.loc[1.0, 20] == 13.0 and table.loc[2.0, 20] == 40.0
    at = console().open("backtests")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="bt_study").value == "wf-fold1"
    assert (at.selectbox(key="bt_hx").value, at.selectbox(key="bt_hy").value) == ("fast", "stop_atr")
    charts = [c for c in at.get("plotly_chart") if "Heatmap" in str(c.proto.spec) or "heatmap" in str(c.proto.spec)]
    assert charts, "no parameter heatmap rendered"


def test_options_trades_are_marked_on_the_underlying() -> None:
    import pandas as pd

    from pages.backtests import trade_markers

    class Run:
        mode = "options"

    trades = pd.DataFrame({
        "entry_date": pd.to_datetime(["2024-03-04", "2024-05-06"]), "entry_price": [2.15, 1.10],
        "exit_date": pd.to_datetime(["2024-03-15", "2024-06-28"]), "exit_price": [3.40, 1.10],
        "exit_reason": ["target 1 of 4", "open"], "stop": [95.5, 101.0],
        "detail": [{"structure": "call_debit_spread", "underlying_entry": 100.25},
                   {"structure": "long_call", "underlying_entry": 104.0}]})
    bars = pd.DataFrame({"close": [99.0, 107.5]}, index=pd.to_datetime(["2024-03-14", "2024-03-15"]))
    m = trade_markers(Run(), trades, bars)
    # premiums (2.15, 3.40) are not underlying prices: the markers use the underlying's levels
    assert m["entry"]["y"].tolist() == [100.25, 104.0]
    assert m["stop"]["y"].tolist() == [95.5, 101.0]
    assert m["exit"]["y"].tolist() == [107.5] and "call_debit_spread" in m["exit"]["text"].iloc[0]
