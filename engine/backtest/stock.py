"""Stock mode: the reference rule set ``ref_sma_atr``, vectorised across symbols.

Rules (each symbol on its own, unlimited cash, no fees or slippage), decided per day t:

* entry signal at the close of t when flat: SMA200 defined, close > SMA50 and SMA50 > SMA200;
  buy ``floor(10000 / close_t)`` shares at the open of t+1;
* at the fill price E the stop is ``E - 2 * ATR14_t`` (Wilder, TA-Lib seeding; t = signal day),
  active from the day after the fill: open <= stop fills at the open, else low <= stop at the stop;
* trend exit: a close below SMA50 (stop not hit that day) sells everything at the next open;
* a new entry may be signalled on an exit's fill day; positions open at the end keep
  exit_reason ``open`` (marked at the last close).

Indicators are causal, so they are computed once for the whole panel (ATR by
``engine.indicators.atr``; SMA comparisons on exact integer window sums, ``engine.backtest.exact``),
then one loop runs over days with numpy operations over all symbols: no Python loop over symbols.
A missing bar (NaN open) trades nothing that day; pending orders wait for the next bar.
Panels too large for memory are streamed in symbol blocks (symbols are independent here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import indicators as ind
from engine.backtest.exact import to_int_prices, window_sums
from engine.data.panel import Panel

__all__ = ["RefSmaAtrParams", "StockResult", "run_ref_sma_atr", "run_ref_sma_atr_blocks"]

EXIT_STOP, EXIT_TREND, EXIT_OPEN = "stop", "trend", "open"
_REASONS = np.array([EXIT_STOP, EXIT_TREND, EXIT_OPEN], dtype=object)


@dataclass(frozen=True)
class RefSmaAtrParams:
    notional: float = 10_000.0  # dollars per entry: floor(notional / close) shares
    fast: int = 50
    slow: int = 200
    atr_period: int = 14
    stop_atr: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={self.fast}, slow={self.slow}")
        if self.atr_period < 1:
            raise ValueError(f"atr_period must be >= 1, got {self.atr_period}")
        if not self.notional > 0:
            raise ValueError(f"notional must be > 0, got {self.notional}")
        if not self.stop_atr > 0:
            raise ValueError(f"stop_atr must be > 0, got {self.stop_atr}")


@dataclass
class StockResult:
    trades: pd.DataFrame  # one row per trade (TRADE_COLUMNS + stop, risk, pnl)
    dates: np.ndarray  # datetime64[D]
    equity: np.ndarray  # (days,) float64: capital + realised + unrealised P&L
    gross_exposure: np.ndarray  # (days,) market value of open positions at the close
    traded_notional: float
    bars: int  # symbol-days with a bar


TRADE_COLUMNS = ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "quantity", "exit_reason"]


@dataclass
class _Events:
    sym: list[np.ndarray]
    day: list[np.ndarray]
    price: list[np.ndarray]
    extra: list[np.ndarray]  # quantity for entries, reason code for exits
    stop: list[np.ndarray]

    @classmethod
    def new(cls) -> _Events:
        return cls([], [], [], [], [])

    def add(self, t: int, idx: np.ndarray, price: np.ndarray, extra: np.ndarray, stop: np.ndarray) -> None:
        self.sym.append(idx)
        self.day.append(np.full(idx.size, t, dtype=np.int64))
        self.price.append(price)
        self.extra.append(extra)
        self.stop.append(stop)

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.sym:
            e = np.empty(0)
            return e.astype(np.int64), e.astype(np.int64), e, e.astype(np.int64), e
        return tuple(np.concatenate(x) for x in (self.sym, self.day, self.price, self.extra, self.stop))


def _signals(panel: Panel, p: RefSmaAtrParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """entry (days x n), trend_exit (days x n), qty (days x n int64) and ATR (days x n float64)."""
    close_int = to_int_prices(panel.close)
    s_fast, d_fast = window_sums(close_int, p.fast)
    s_slow, d_slow = window_sums(close_int, p.slow)
    c = close_int.values
    # close > SMA_fast  <=>  fast * close > sum_fast ; SMA_fast > SMA_slow <=> slow * sum_fast > fast * sum_slow
    above = d_fast & (p.fast * c > s_fast)
    below = d_fast & (p.fast * c < s_fast)
    aligned = d_fast & d_slow & (p.slow * s_fast > p.fast * s_slow)
    entry = above & aligned & ~close_int.missing
    atr = ind.atr(panel.high.astype(np.float64), panel.low.astype(np.float64), panel.close.astype(np.float64),
                  p.atr_period)
    entry &= np.isfinite(atr)
    # floor(notional / close) in integers: exact, no float quotient rounding up to the next share
    notional_units = round(p.notional * close_int.scale)
    with np.errstate(divide="ignore"):
        qty = np.where(close_int.missing, 0, notional_units // np.maximum(c, 1))
    entry &= qty > 0
    return entry, below & ~close_int.missing, qty.astype(np.int64), atr


def run_ref_sma_atr(panel: Panel, params: RefSmaAtrParams | None = None, capital: float | None = None,
                    progress: Callable[[int, int], None] | None = None, first_day: int = 0) -> StockResult:
    """Run ``ref_sma_atr`` on every symbol of ``panel``; ``capital`` defaults to notional x symbols.

    Days before ``first_day`` are indicator warm-up only: no entry is signalled there.
    """
    p = params or RefSmaAtrParams()
    days, n = panel.n_days, panel.n_symbols
    entry_sig, exit_sig, qty_sig, atr = _signals(panel, p)
    entry_sig[:first_day] = False
    o = panel.open.astype(np.float64, copy=False)
    lo = panel.low.astype(np.float64, copy=False)
    c = panel.close.astype(np.float64, copy=False)

    qty = np.zeros(n, dtype=np.int64)
    stop = np.full(n, np.nan)
    stop_live = np.zeros(n, dtype=bool)
    pend_entry = np.zeros(n, dtype=bool)
    pend_qty = np.zeros(n, dtype=np.int64)
    pend_atr = np.zeros(n)
    pend_exit = np.zeros(n, dtype=bool)
    cash = np.zeros(n)
    last_close = np.zeros(n)
    equity = np.empty(days)
    exposure = np.empty(days)
    traded = 0.0
    entries, exits = _Events.new(), _Events.new()
    step = max(1, days // 100)

    for t in range(days):
        ot, lt, ct = o[t], lo[t], c[t]
        bar = ~np.isnan(ot)
        # 1. trend exits signalled at yesterday's close: sell at today's open (their stop was cancelled)
        m = np.flatnonzero(pend_exit & bar)
        if m.size:
            px = ot[m]
            exits.add(t, m, px, np.full(m.size, 1, dtype=np.int64), stop[m])
            cash[m] += qty[m] * px
            traded += float(np.dot(qty[m], px))
            qty[m] = 0
            pend_exit[m] = False
            stop_live[m] = False
        # 2. stops, live from the day after the fill: a gap through the stop fills at the open
        held = stop_live & bar
        if held.any():
            gap = held & (ot <= stop)
            hit = held & ~gap & (lt <= stop)
            m = np.flatnonzero(gap | hit)
            if m.size:
                px = np.where(gap[m], ot[m], stop[m])
                exits.add(t, m, px, np.zeros(m.size, dtype=np.int64), stop[m])
                cash[m] += qty[m] * px
                traded += float(np.dot(qty[m], px))
                qty[m] = 0
                stop_live[m] = False
        # 3. entries signalled at yesterday's close: buy at today's open, stop from the signal day's ATR
        m = np.flatnonzero(pend_entry & bar)
        if m.size:
            px = ot[m]
            stop[m] = px - p.stop_atr * pend_atr[m]
            qty[m] = pend_qty[m]
            entries.add(t, m, px, pend_qty[m].copy(), stop[m].copy())
            cash[m] -= qty[m] * px
            traded += float(np.dot(qty[m], px))
            pend_entry[m] = False
        # 4. at the close: trend exits for holders (a stopped-out symbol is flat already), new signals
        held_now = qty > 0
        pend_exit |= held_now & exit_sig[t]
        new = ~held_now & ~pend_entry & entry_sig[t]
        if new.any():
            pend_entry |= new
            pend_qty[new] = qty_sig[t][new]
            pend_atr[new] = atr[t][new]
        # positions bought today get a live stop from tomorrow; a pending trend exit cancels it
        stop_live = held_now & ~pend_exit
        np.copyto(last_close, ct, where=~np.isnan(ct))
        mv = float(np.dot(qty, last_close))
        equity[t] = cash.sum() + mv
        exposure[t] = mv
        if progress is not None and (t % step == 0 or t == days - 1):
            progress(t + 1, days)

    base = p.notional * n if capital is None else float(capital)
    trades = _pair_trades(panel, entries, exits, qty, last_close)
    bars = int((~np.isnan(o)).sum())
    return StockResult(trades, panel.dates, equity + base, exposure, traded, bars)


def _pair_trades(panel: Panel, entries: _Events, exits: _Events, qty_end: np.ndarray,
                 last_close: np.ndarray) -> pd.DataFrame:
    """Entries and exits alternate per symbol: the k-th exit of a symbol closes its k-th entry."""
    e_sym, e_day, e_px, e_qty, e_stop = entries.arrays()
    x_sym, x_day, x_px, x_code, _ = exits.arrays()
    eo = np.lexsort((e_day, e_sym))
    xo = np.lexsort((x_day, x_sym))
    e_sym, e_day, e_px, e_qty, e_stop = (a[eo] for a in (e_sym, e_day, e_px, e_qty, e_stop))
    x_sym, x_day, x_px, x_code = (a[xo] for a in (x_sym, x_day, x_px, x_code))
    k = e_sym.size
    exit_day = np.full(k, panel.n_days - 1, dtype=np.int64)
    exit_px = last_close[e_sym].copy() if k else np.empty(0)
    code = np.full(k, 2, dtype=np.int64)
    # per symbol, all entries but (possibly) the last have an exit; exits are in the same order
    closed = np.ones(k, dtype=bool)
    if k:
        last_of_sym = np.r_[e_sym[1:] != e_sym[:-1], True]
        closed = ~(last_of_sym & (qty_end[e_sym] > 0))
    if int(closed.sum()) != x_sym.size or not np.array_equal(e_sym[closed], x_sym):
        raise AssertionError("entries and exits do not alternate per symbol")
    exit_day[closed], exit_px[closed], code[closed] = x_day, x_px, x_code
    dates = panel.dates
    frame = pd.DataFrame({
        "symbol": panel.symbols[e_sym] if k else np.empty(0, dtype=object),
        "entry_date": dates[e_day].astype("datetime64[D]") if k else np.empty(0, "datetime64[D]"),
        "entry_price": e_px,
        "exit_date": dates[exit_day].astype("datetime64[D]") if k else np.empty(0, "datetime64[D]"),
        "exit_price": exit_px,
        "quantity": e_qty,
        "exit_reason": _REASONS[code] if k else np.empty(0, dtype=object),
        "stop": e_stop,
    })
    frame["entry_reason"] = "signal"
    frame["risk"] = frame["quantity"] * (frame["entry_price"] - frame["stop"])
    frame["pnl"] = frame["quantity"] * (frame["exit_price"] - frame["entry_price"])
    return frame.sort_values(["entry_date", "symbol"], kind="stable").reset_index(drop=True)


def run_ref_sma_atr_blocks(blocks: Iterator[Panel], params: RefSmaAtrParams | None = None,
                           progress: Callable[[int, int], None] | None = None,
                           total_blocks: int | None = None, first_day: int = 0) -> StockResult:
    """:func:`run_ref_sma_atr` over symbol blocks of one date range (a universe too large for memory).

    Symbols are independent under these rules, so the result equals one run on the whole panel:
    equity curves and exposures add up, trade lists concatenate.
    """
    p = params or RefSmaAtrParams()
    frames, equity, exposure, traded, bars, dates = [], None, None, 0.0, 0, None
    for i, block in enumerate(blocks):
        r = run_ref_sma_atr(block, p, first_day=first_day)
        frames.append(r.trades)
        equity = r.equity if equity is None else equity + r.equity
        exposure = r.gross_exposure if exposure is None else exposure + r.gross_exposure
        traded += r.traded_notional
        bars += r.bars
        dates = r.dates
        if progress is not None:
            progress(i + 1, total_blocks or i + 1)
    if equity is None or dates is None:
        raise ValueError("no symbol blocks to run")
    trades = pd.concat(frames, ignore_index=True).sort_values(["entry_date", "symbol"], kind="stable")
    return StockResult(trades.reset_index(drop=True), dates, equity, exposure, traded, bars)
