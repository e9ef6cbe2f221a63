"""`python -m engine backtest`: trades CSV, the JSON metrics line, the stored run and its trades."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from engine.backtest.runner import parse_params
from engine.backtest.store import load_run, load_trades
from engine.cli import main
from engine.config import get_settings
from engine.db import get_engine


def test_backtest_command_writes_csv_json_and_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "trades.csv"
    code = main(["backtest", "--strategy", "ref_sma_atr", "--mode", "stock", "--source", "sim", "--symbols", "30",
                 "--start", "2024-01-02", "--end", "2024-12-31", "--param", "stop_atr=2.5", "--trades-csv",
                 str(csv), "--json", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(out[-1])
    trades = pd.read_csv(csv)
    assert list(trades.columns) == ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "quantity",
                                    "exit_reason"]
    assert len(trades) == metrics["trades"] > 0
    assert set(trades["exit_reason"]) <= {"stop", "trend", "open"}
    assert trades["entry_date"].min() >= "2024-01-03"  # first signal at the close of the start day
    engine = get_engine(get_settings().db_url)
    run = load_run(engine, metrics["run_id"])
    assert run is not None and run.strategy == "ref_sma_atr" and run.mode == "stock" and run.data_source == "sim"
    assert run.params["stop_atr"] == 2.5 and run.n_symbols == 30
    assert run.data_start is not None and run.data_start < run.start and str(run.data_end) == "2024-12-31"
    assert run.code_version and run.code_version != "unknown"
    assert run.metrics["sharpe"] == metrics["sharpe"]
    assert len(run.equity["equity"]) == metrics["sessions"]
    stored = load_trades(engine, run.id)
    assert len(stored) == len(trades)
    assert sorted(stored["fill_source"].unique()) == ["bars"]


def test_bad_params_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter.*known: notional"):
        parse_params("ref_sma_atr", "stock", ["nope=1"])
    with pytest.raises(ValueError, match=r"--param fast='x': expected a int"):
        parse_params("ref_sma_atr", "stock", ["fast=x"])
    assert parse_params("ref_sma_atr", "stock", ["fast=20", "stop_atr=3"]) == {"fast": 20, "stop_atr": 3.0}


def test_backtest_command_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--strategy", "ref_sma_atr", "--mode", "stock", "--start", "2024-02-01", "--end",
                 "2024-01-01", "--no-store", "--quiet"]) == 2
    assert "end 2024-01-01 is before start 2024-02-01" in capsys.readouterr().err
