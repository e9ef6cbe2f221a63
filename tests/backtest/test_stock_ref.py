"""Stock mode, ``ref_sma_atr``: hand-worked rules on a tiny panel, exact ties, and equality with backtrader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import indicators as ind
from engine.backtest.exact import to_int_prices, window_sums
from engine.backtest.stock import RefSmaAtrParams, _signals, run_ref_sma_atr, run_ref_sma_atr_blocks
from engine.data.panel import Panel

# (open, high, low, close) per day; worked by hand with fast=2, slow=3, ATR(2) (see the comments)
_BARS = [
    (10.0, 10.0, 10.0, 10.0),   # d0
    (10.0, 11.0, 10.0, 11.0),   # d1 TR=1
    (11.0, 12.0, 11.0, 12.0),   # d2 TR=1, ATR=1; SMA2 11.5 > SMA3 11, close 12 > 11.5: signal, qty 833
    (12.5, 13.0, 12.0, 13.0),   # d3 buy 833 @ 12.5, stop 10.5 (live from d4); close 13 > SMA2 12.5
    (10.4, 14.0, 10.4, 14.0),   # d4 open 10.4 <= 10.5: stop fills at the open; ATR (1+3.6)/2=2.3; re-entry signal
    (14.0, 14.5, 13.5, 14.2),   # d5 buy 714 @ 14, stop 14 - 4.6 = 9.4
    (14.2, 14.3, 9.0, 9.5),     # d6 low 9.0 <= 9.4: stop fills at 9.4
    (9.5, 12.0, 9.5, 12.0),     # d7 SMA2 10.75 < SMA3 11.9: no signal
    (12.0, 13.0, 12.0, 13.0),   # d8 signal, qty 769, ATR 1.99375
    (13.1, 13.2, 9.0, 12.1),    # d9 buy 769 @ 13.1, stop 9.1125 not live yet (low 9.0); close < SMA2 12.55: exit
    (12.0, 12.5, 5.0, 12.4),    # d10 sell 769 @ 12.0 (trend); the cancelled stop does not fire on low 5
    (12.4, 13.0, 12.4, 13.0),   # d11 signal, qty 769, ATR 2.94921875
    (13.5, 14.0, 13.4, 13.9),   # d12 buy 769 @ 13.5, still open at the end
]
_HAND = RefSmaAtrParams(fast=2, slow=3, atr_period=2)


def _panel(bars: list[tuple[float, float, float, float]], symbols: int = 1) -> Panel:
    arr = np.array(bars, dtype=np.float64)
    dates = np.busday_offset(np.datetime64("2024-01-02"), np.arange(len(bars)), roll="forward").astype("datetime64[D]")
    cols = [np.repeat(arr[:, k : k + 1], symbols, axis=1) for k in range(4)]
    return Panel(dates, np.array([f"S{i}" for i in range(symbols)], dtype=object), *cols,
                 np.full((len(bars), symbols), 1e6))


def test_hand_worked_trades() -> None:
    panel = _panel(_BARS)
    trades = run_ref_sma_atr(panel, _HAND).trades
    d = [str(x) for x in panel.dates]
    got = [(str(r.entry_date.date()), r.entry_price, str(r.exit_date.date()), round(r.exit_price, 10), r.quantity,
            r.exit_reason) for r in trades.itertuples()]
    assert got == [
        (d[3], 12.5, d[4], 10.4, 833, "stop"),  # gap through the stop: filled at the open
        (d[5], 14.0, d[6], 9.4, 714, "stop"),  # intraday: filled at the stop
        (d[9], 13.1, d[10], 12.0, 769, "trend"),  # stop not live on the fill day; trend exit next open
        (d[12], 13.5, d[12], 13.9, 769, "open"),  # marked at the last close
    ]
    assert trades["stop"].round(10).tolist() == [10.5, 9.4, 9.1125, 13.5 - 2 * 2.94921875]


def test_symbols_are_independent_and_blocks_equal_one_run() -> None:
    rng = np.random.default_rng(3)
    n, days = 6, 600
    close = np.round(50 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (days, n)), axis=0)), 2)
    open_ = np.round(close * np.exp(rng.normal(0, 0.005, (days, n))), 2)
    high = np.maximum(open_, close) + 0.3
    low = np.minimum(open_, close) - 0.3
    dates = np.busday_offset(np.datetime64("2015-01-02"), np.arange(days), roll="forward").astype("datetime64[D]")
    panel = Panel(dates, np.array([f"S{i}" for i in range(n)], dtype=object), open_, high, low, close,
                  np.ones((days, n)))
    whole = run_ref_sma_atr(panel)
    assert len(whole.trades) > 20
    for sym in panel.symbols:
        alone = run_ref_sma_atr(panel.select([sym])).trades.drop(columns="symbol")
        pd.testing.assert_frame_equal(whole.trades[whole.trades.symbol == sym].drop(columns="symbol")
                                      .reset_index(drop=True), alone)
    blocks = run_ref_sma_atr_blocks(iter([panel.select(panel.symbols[:4]), panel.select(panel.symbols[4:])]))
    np.testing.assert_allclose(blocks.equity, whole.equity, rtol=1e-12)
    key = ["entry_date", "symbol"]
    pd.testing.assert_frame_equal(blocks.trades.sort_values(key).reset_index(drop=True),
                                  whole.trades.sort_values(key).reset_index(drop=True))


def test_exact_tie_is_a_tie_not_a_rounding_accident() -> None:
    # 1.1 + 1.3 + 1.2 = 3.6 exactly, so close 1.2 == SMA3; in floats the sum is 3.6000000000000005
    # and the mean 1.2000000000000002 > 1.2, which would call a trend exit that the rule does not make.
    closes = np.array([1.0, 1.1, 1.3, 1.2])
    assert closes[-1] < ind.sma(closes, 3)[-1]  # the float mean says "below"
    ip = to_int_prices(closes)
    sums, defined = window_sums(ip, 3)
    assert defined.tolist() == [False, False, True, True] and sums[-1] == 3 * 12_000
    bars = [(c, c + 0.05, c - 0.05, c) for c in closes]
    _, trend_exit, _, _ = _signals(_panel(bars), RefSmaAtrParams(fast=3, slow=4, atr_period=1))
    assert not trend_exit[-1, 0]


def test_off_grid_float64_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="not on the 1/10,000 grid"):
        to_int_prices(np.array([1.0, 1.00001234]))


def test_float32_prices_are_summed_exactly() -> None:
    x = np.array([[100.01], [99.99], [100.03]], dtype=np.float32)
    ip = to_int_prices(x)
    sums, _ = window_sums(ip, 3)
    assert sums[-1, 0] == sum(int(v) for v in (x.astype(np.float64)[:, 0] * 2**30))


@pytest.mark.slow
def test_same_trades_as_backtrader_on_real_stocks(sample_panel: Panel) -> None:
    from engine.bench.refengines import backtrader_trades

    ours = run_ref_sma_atr(sample_panel).trades
    theirs = pd.concat([backtrader_trades(sample_panel.frame(s), s) for s in sample_panel.symbols],
                       ignore_index=True)
    key = ["symbol", "entry_date"]
    ours = ours.sort_values(key).reset_index(drop=True)
    theirs = theirs.sort_values(key).reset_index(drop=True)
    assert len(ours) == len(theirs) == 299
    assert ours["exit_reason"].value_counts().to_dict() == {"trend": 257, "stop": 35, "open": 7}
    for col in ("symbol", "entry_date", "exit_date", "quantity", "exit_reason"):
        assert ours[col].astype(str).tolist() == theirs[col].astype(str).tolist(), col
    np.testing.assert_allclose(ours["entry_price"], theirs["entry_price"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["exit_price"], theirs["exit_price"], rtol=1e-12)
    np.testing.assert_allclose(ours["stop"], theirs["stop"], rtol=1e-12)


@pytest.mark.slow
def test_backtrader_default_submit_check_is_the_trap(sample_panel: Panel) -> None:
    """With its default submit check backtrader cannot cancel the fill-day stop: different trades."""
    from engine.bench.refengines import backtrader_trades

    frame = sample_panel.frame("AAPL")
    assert len(backtrader_trades(frame, "AAPL", checksubmit=True)) != len(backtrader_trades(frame, "AAPL"))
