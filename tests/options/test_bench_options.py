"""`bench options` runs end to end at a small size and reports the American figures beside the European ones
(no timing is asserted: speed is judged by the benchmark itself)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("QuantLib")


def test_bench_options_reports_american_iv_next_to_european(capsys):
    from engine.bench.options import bench_options

    out = bench_options(quotes=3000, runs=1, sample=40, american_quotes=2000, american_sample=20, verbose=True)
    json.dumps(out)  # the CLI prints it as the last line
    printed = capsys.readouterr().out
    assert "american_implied_vol" in printed and "implied_vol" in printed
    for key in ("iv_seconds", "max_abs_iv_error", "american_iv_seconds", "american_greeks_seconds",
                "american_max_abs_iv_error", "american_max_abs_iv_error_traded", "american_quantlib_seconds_per_quote",
                "american_ratio"):
        assert key in out, key
    assert out["american_quotes"] == 2000 and out["american_compared"] >= 15
    assert 0.0 < out["american_puts_fraction"] < 1.0  # both puts and dividend calls
    assert math.isfinite(out["american_median_abs_iv_error"]) and out["american_median_abs_iv_error"] < 0.01
    assert "american_max_rel_iv_error_traded" in out["passed"]
