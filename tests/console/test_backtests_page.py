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
