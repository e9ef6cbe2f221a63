"""Walk-forward search on a 2-worker Dask local cluster: killed midway, rerun, the study resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.backtest.runner import param_defaults
from engine.backtest.search import ParamRange, SearchSpec, _folds, parse_range

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["search", "--study", "wf", "--symbols", "30", "--start", "2021-01-04", "--end", "2023-12-29",
        "--trials", "10", "--folds", "2", "--is-sessions", "252", "--oos-sessions", "126", "--sampler", "tpe",
        "--param-range", "fast=20:80:5", "--param-range", "stop_atr=1.0:4.0", "--workers", "2", "--json"]


def _completed(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_folds_roll_and_ranges_parse() -> None:
    spec = SearchSpec(study="s", start=__import__("datetime").date(2021, 1, 4),
                      end=__import__("datetime").date(2023, 12, 29), folds=2, is_sessions=252, oos_sessions=126,
                      ranges=(ParamRange("fast", 20, 80, 5, True),))
    (a0, a1, a2, a3), (b0, _, b2, _) = _folds(spec)
    assert a0.isoformat() == "2021-01-04" and a1 < a2 <= a3 and b0 > a0 and b2 > a3
    r = parse_range("fast=20:80:10", param_defaults("ref_sma_atr", "stock"))
    assert r.integer and r.grid() == [20, 30, 40, 50, 60, 70, 80]
    with pytest.raises(ValueError, match="unknown parameter"):
        parse_range("nope=1:2", param_defaults("ref_sma_atr", "stock"))


@pytest.mark.slow
def test_killed_search_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "QM_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    db = tmp_path / "quantmatrix.db"  # the project database holds the study
    cmd = [sys.executable, "-m", "engine", *ARGS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while _completed(db) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, all at once
    proc.wait()
    before = _completed(db)
    assert 4 <= before < 20
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert _completed(db) == 20  # 10 per fold: the killed run's trials were kept, not redone
    assert [f["trials"] >= 10 for f in result["folds"]] == [True, True]
    assert result["oos_metrics"]["sessions"] == 2 * 126
    assert set(result["parameter_stability"]) == {"fast", "stop_atr"}
    assert not (tmp_path / "optuna.sqlite").exists()
