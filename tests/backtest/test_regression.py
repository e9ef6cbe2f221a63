"""Regression statistics: fixed simulated-market backtests must keep their stored stats and trade-list hash.

A failure here means a change altered what the backtester (or the live rules it calls) does. If that is
intended, regenerate with ``.venv/bin/python -m engine.backtest.regression --update`` and commit the new
expected files together with the change.
"""

from __future__ import annotations

import json

import pytest

from engine.backtest.regression import CASES, EXPECTED_DIR, compute


@pytest.mark.parametrize("name", sorted(CASES))
def test_regression_case(name: str) -> None:
    expected = json.loads((EXPECTED_DIR / f"{name}.json").read_text())
    got = compute(name)
    for key, value in expected["stats"].items():
        assert got["stats"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["trades_sha256"] == expected["trades_sha256"], "trade list changed"
