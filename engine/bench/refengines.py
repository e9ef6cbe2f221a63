"""Other engines running the ``ref_sma_atr`` rules: backtrader (one symbol per Cerebro) and vectorbt.

Both are test-only dependencies (requirements-dev.txt), imported lazily: the comparison test and
``python -m engine bench backtest`` use them, production code never does.

Backtrader needs two things to run these rules faithfully:

* ``broker.set_checksubmit(False)``: the stop is submitted in ``notify_order`` on the entry's fill
  day; with the default submit check it sits in a "submitted" queue until the next bar, so a
  trend exit on that same day cannot cancel it and both sell. The rules assume unlimited cash,
  so skipping the cash check changes nothing else.
* an exact SMA: backtrader's own SMA sums each window with ``math.fsum`` of float prices; here the
  window sum is taken over the integer 1/10,000 grid (``ExactSMA``), so an exact tie close == SMA50
  is a tie, as the rules mean it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine.data.panel import Panel

__all__ = ["backtrader_trades", "vectorbt_run"]

_SCALE = 10_000


def _ref(order: Any) -> int | None:
    return None if order is None else order.ref


def _bt_classes() -> tuple[Any, Any]:
    import backtrader as bt

    class ExactSMA(bt.Indicator):
        lines = ("sma",)
        params = (("period", 50),)

        def __init__(self) -> None:
            self.addminperiod(self.p.period)

        def next(self) -> None:
            window = self.data.get(size=self.p.period)
            total = sum(round(x * _SCALE) for x in window)
            self.lines.sma[0] = total / (_SCALE * self.p.period)

    class RefSmaAtr(bt.Strategy):
        params = (("notional", 10_000.0), ("stop_atr", 2.0), ("exact_sma", True))

        def __init__(self) -> None:
            sma = ExactSMA if self.p.exact_sma else bt.indicators.SMA
            self.sma50 = sma(self.data.close, period=50)
            self.sma200 = sma(self.data.close, period=200)
            self.atr = bt.indicators.ATR(self.data, period=14)
            self.entry_order = self.stop_order = self.exit_order = None
            self.signal_atr = math.nan
            self.trades: list[dict[str, Any]] = []

        def notify_order(self, order: Any) -> None:
            if order.status != order.Completed:
                return
            day = bt.num2date(order.executed.dt).date()
            # backtrader notifies with clones of the orders: compare by reference number
            ref = order.ref
            if self.entry_order is not None and ref == self.entry_order.ref:
                price = order.executed.price
                stop = price - self.p.stop_atr * self.signal_atr
                self.trades.append({"entry_date": day, "entry_price": price, "quantity": int(order.executed.size),
                                    "stop": stop})
                self.stop_order = self.sell(exectype=bt.Order.Stop, price=stop, size=order.executed.size)
                self.entry_order = None
            elif ref in (_ref(self.stop_order), _ref(self.exit_order)):
                reason = "stop" if ref == _ref(self.stop_order) else "trend"
                self.trades[-1].update(exit_date=day, exit_price=order.executed.price, exit_reason=reason)
                self.stop_order = self.exit_order = None

        def next(self) -> None:
            close = self.data.close[0]
            if self.position.size == 0:
                if self.entry_order is None and close > self.sma50[0] > self.sma200[0]:
                    qty = round(self.p.notional * _SCALE) // round(close * _SCALE)
                    if qty > 0:
                        self.signal_atr = self.atr[0]
                        self.entry_order = self.buy(size=qty)
            elif self.exit_order is None and close < self.sma50[0]:
                if self.stop_order is not None:
                    self.cancel(self.stop_order)
                self.exit_order = self.sell(size=self.position.size)

    return bt, RefSmaAtr


def backtrader_trades(frame: pd.DataFrame, symbol: str = "", *, checksubmit: bool = False,
                      exact_sma: bool = True) -> pd.DataFrame:
    """ref_sma_atr in backtrader on one symbol's bars (DataFrame indexed by date with OHLCV).

    ``checksubmit=True`` / ``exact_sma=False`` run backtrader's defaults instead (to show the traps).
    """
    bt, strategy = _bt_classes()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.set_checksubmit(checksubmit)
    cerebro.broker.setcash(1e15)  # unlimited cash, as the rules assume
    data = frame[["open", "high", "low", "close", "volume"]].copy()
    data.index = pd.to_datetime(data.index)
    cerebro.adddata(bt.feeds.PandasData(dataname=data))
    cerebro.addstrategy(strategy, exact_sma=exact_sma)
    strat = cerebro.run()[0]
    rows = []
    last_day, last_close = data.index[-1].date(), float(data["close"].iloc[-1])
    for tr in strat.trades:
        tr.setdefault("exit_date", last_day)
        tr.setdefault("exit_price", last_close)
        tr.setdefault("exit_reason", "open")
        rows.append({"symbol": symbol, **tr})
    out = pd.DataFrame(rows, columns=["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "quantity",
                                      "exit_reason", "stop"])
    for col in ("entry_date", "exit_date"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[s]")
    return out


def vectorbt_run(panel: Panel, fast: int = 50, slow: int = 200, notional: float = 10_000.0,
                 stop_atr: float = 2.0) -> Any:
    """The same rules in vectorbt's ``Portfolio.from_signals`` (signals shifted to next-open fills).

    Entries fill at the next open with ``floor(notional / close)`` shares; the stop is given as a
    fraction of the entry price, ``2 * ATR_t / open_{t+1}``, so it sits at ``E - 2 * ATR_t``; the
    trend exit fills at the next open. vectorbt checks the stop against the bar's OHLC from the
    bar after the entry, as the rules do. (vectorbt's own rolling means are used: tie handling may
    differ from ours on exact ties, which the simulated market's prices rarely produce.)
    """
    import vectorbt as vbt

    from engine import indicators as ind

    idx = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"))
    cols = list(panel.symbols)
    o = pd.DataFrame(panel.open.astype(np.float64), idx, cols)
    h = pd.DataFrame(panel.high.astype(np.float64), idx, cols)
    lo = pd.DataFrame(panel.low.astype(np.float64), idx, cols)
    c = pd.DataFrame(panel.close.astype(np.float64), idx, cols)
    s_fast = c.rolling(fast).mean()
    s_slow = c.rolling(slow).mean()
    atr = pd.DataFrame(ind.atr(h.values, lo.values, c.values, 14), idx, cols)
    entry_sig = (c > s_fast) & (s_fast > s_slow)
    exit_sig = c < s_fast
    entries = entry_sig.shift(1, fill_value=False)
    exits = exit_sig.shift(1, fill_value=False)
    size = np.floor(notional / c).shift(1)
    sl = (stop_atr * atr.shift(1) / o).where(entries)
    return vbt.Portfolio.from_signals(
        c, entries=entries, exits=exits, size=size, price=o, open=o, high=h, low=lo, sl_stop=sl,
        stop_entry_price="fillprice", init_cash=np.inf, fees=0.0, slippage=0.0, freq="1D",
    )
