"""The simulated market: the default, no-network data source and the market of every demo and test.

Everything is a pure function of ``(seed, symbol index, session)``: random numbers come from
counter-based Philox streams keyed on ``(seed, stream)`` with the counter set to
``(block, chunk)``, or from a splitmix64 hash for single values, so the same seed gives the same
market in any process, whatever date range or subset of symbols is asked for, and whatever the
universe size (symbol ``i`` is the same in a 3,000- and a 32,345-symbol market).

Model (daily, log prices):
- sessions come from the NYSE calendar and are cut into blocks of ``BLOCK`` sessions counted from
  the epoch session (first session on or after ``EPOCH``);
- at block boundaries a cheap block-level walk runs from the epoch forwards or backwards: a market
  factor (regimes calm/normal/stressed with their own drift and vol), 11 sector factors and a
  per-symbol idiosyncratic level (mean-reverting, with trend regimes: some symbols trend up hard for
  about a year, which is what the ATR Matrix entry signal looks for), so reaching a date far from
  the epoch costs one step per block, not per day;
- inside a block, daily returns bridge the block's increments with fat-tailed shocks
  (return = beta * market + sector + idiosyncratic), then overnight gaps, highs/lows and volumes
  (lognormal, rising with |return|) are drawn around them;
- per-symbol volatility (15%..120% a year) switches between regimes every three blocks.

Intraday, a session's price follows a deterministic piecewise-linear path from the open through
the day's high and low (order by symbol and day) to the close. Options are priced by
Black-Scholes-Merton (``engine.options.pricing``) on a volatility surface derived from each
symbol's realised-vol regime (variance premium, put skew, smile, term structure).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.data import calendar
from engine.data.panel import FIELDS, Panel
from engine.data.ports import UNIVERSE_COLUMNS
from engine.data.sim_options import SimOptions, occ_symbol, parse_occ_symbol
from engine.data.sim_static import (
    _GAP_NOISE,
    _GAP_SHARE,
    _H_PATH,
    _MASK64,
    _MKT_MEAN_DRIFT,
    _MKT_PERIOD,
    _MKT_REGIMES,
    _RANGE_SCALE,
    _S_DAILY,
    _S_IDIO_BLOCK,
    _S_MKT_BLOCK,
    _S_MKT_DAILY,
    _S_MKT_REGIME,
    _S_TREND_REGIME,
    _S_VOL_REGIME,
    _SECTOR_PHI,
    _SECTOR_VOL_BASE,
    _TREND_PERIOD,
    _VOL_PERIOD,
    BLOCK,
    CHUNK,
    DEFAULT_PANEL_END,
    EPOCH,
    GROUP_CHUNKS,
    RISK_FREE_RATE,
    SECTORS,
    TRADING_DAYS,
    _bridge,
    _build_static,
    _fat,
    _hash_uniform,
    _rng,
    _round_price,
)
from engine.options.chain import CHAIN_COLUMNS

# The public names stay importable from here (``from engine.data.sim import ...``): the module was split
# into sim_static (constants, randomness, universe) and sim_options (chains); this keeps bars and paths.
__all__ = [
    "BLOCK",
    "CHAIN_COLUMNS",
    "CHUNK",
    "EPOCH",
    "RISK_FREE_RATE",
    "SECTORS",
    "SimMarket",
    "generate_panel",
    "occ_symbol",
    "parse_occ_symbol",
]

# --------------------------------------------------------------------------- block-level state


@dataclass(frozen=True)
class _Market:
    first: int  # first block
    sm: np.ndarray  # (nb,) market annual vol per block
    ss: np.ndarray  # (nb,) sector annual vol per block
    level: np.ndarray  # (nb+1,) market log level at block boundaries
    sector_level: np.ndarray  # (nb+1, 11)


@dataclass(frozen=True)
class _Walk:
    first: int
    market: _Market
    sig_tot: np.ndarray  # (nb, N) annual total vol per block
    sig_idio: np.ndarray  # (nb, N)
    level: np.ndarray  # (nb+1, N) idiosyncratic level at block boundaries


@dataclass(frozen=True)
class _Block:
    """One block of daily bars for some columns; rows are the block's sessions."""

    b: int
    s0: int  # global index of the block's first session
    days: np.ndarray  # (BLOCK,) datetime64[D]
    cols: np.ndarray  # global symbol indices
    open: np.ndarray  # (BLOCK, N), NaN before listing
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    prev_close: np.ndarray  # (BLOCK, N) the previous session's close
    sigma: np.ndarray  # (N,) annual total vol of this block
    sigma_prev: np.ndarray  # (N,) ... of the previous block


class SimMarket(SimOptions):
    """Deterministic simulated US equity and options market (implements ``MarketData``)."""

    name = "sim"

    def __init__(self, seed: int = 7, n_symbols: int = 3000) -> None:
        if n_symbols < 1:
            raise ValueError("n_symbols must be >= 1")
        self.seed = int(seed) & _MASK64
        self.n_symbols = int(n_symbols)
        self._st = _build_static(self.seed, self.n_symbols)
        self._index = {s: i for i, s in enumerate(self._st.symbols)}
        sched = calendar._schedule()
        self._days = sched.days
        self._epoch = int(np.searchsorted(self._days, np.datetime64(EPOCH, "D")))
        # whole blocks inside the cached calendar
        self._b_min = -(self._epoch // BLOCK)
        self._b_max = (len(self._days) - self._epoch) // BLOCK - 1
        self._block = lru_cache(maxsize=96)(self._compute_block)
        self._market_cache = lru_cache(maxsize=8)(self._compute_market)
        self._knots = lru_cache(maxsize=8192)(self._compute_knots)
        self._iv30_day = lru_cache(maxsize=8192)(self._compute_iv30_day)
        self._universe: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"SimMarket(seed={self.seed}, n_symbols={self.n_symbols})"

    # ------------------------------------------------------------------ universe

    @property
    def symbols(self) -> np.ndarray:
        return self._st.symbols

    def symbol_index(self, symbol: str) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol: {symbol}") from None

    def universe(self) -> pd.DataFrame:
        if self._universe is None:
            st = self._st
            self._universe = pd.DataFrame(
                {
                    "symbol": st.symbols,
                    "name": st.names,
                    "sector": st.sector_name,
                    "type": st.kind,
                    "exchange": st.exchange,
                    "currency": "USD",
                    "active": True,
                    "list_date": st.list_day.astype(object),
                    "tradable": st.tradable,
                },
                columns=list(UNIVERSE_COLUMNS),
            )
        return self._universe.copy()

    def dividend_yield(self, symbol: str, as_of: date) -> float:
        """The symbol's continuous dividend yield (0 for most growth names; ETFs have their own).

        One yield per symbol, fixed for all dates (``as_of`` is accepted for the ``MarketData`` port),
        drawn from the seed: the same number the simulated chains are priced with."""
        return float(self._st.q[self.symbol_index(symbol)])

    # ------------------------------------------------------------------ block-level walk

    def _check_blocks(self, b_lo: int, b_hi: int) -> None:
        if b_lo - 1 < self._b_min or b_hi > self._b_max:
            first = self._days[self._epoch + (self._b_min + 1) * BLOCK]
            last = self._days[self._epoch + (self._b_max + 1) * BLOCK - 1]
            raise ValueError(f"the simulated market covers sessions {first}..{last}")

    def _compute_market(self, first: int, last: int) -> _Market:
        nb = last - first + 1
        blocks = np.arange(first, last + 1)
        periods = np.floor_divide(blocks, _MKT_PERIOD)
        u = {int(p): _rng(self.seed, _S_MKT_REGIME, int(p)).random() for p in np.unique(periods)}
        cdf = np.cumsum([r[0] for r in _MKT_REGIMES])
        state = np.array([min(int(np.searchsorted(cdf, u[int(p)])), 2) for p in periods])
        sm = np.array([_MKT_REGIMES[s][1] for s in state])
        mu = np.array([_MKT_REGIMES[s][2] for s in state])
        ss = _SECTOR_VOL_BASE * np.sqrt(sm / 0.16)
        eps = np.stack([_rng(self.seed, _S_MKT_BLOCK, int(b)).standard_normal(12) for b in blocks])
        h = BLOCK / TRADING_DAYS
        d_market = mu * h + sm * math.sqrt(h) * eps[:, 0]
        level = np.zeros(nb + 1)
        sector = np.zeros((nb + 1, 11))
        z = -first  # boundary 0 (the epoch) sits at row -first
        kap = 1.0 - _SECTOR_PHI
        for k in range(z, nb):
            level[k + 1] = level[k] + d_market[k]
            sector[k + 1] = sector[k] + ss[k] * math.sqrt(h) * eps[k, 1:] - kap * sector[k]
        for k in range(z - 1, -1, -1):  # stationary parts run backwards as the reversed AR(1)
            level[k] = level[k + 1] - d_market[k]
            sector[k] = (1.0 - kap) * sector[k + 1] - ss[k] * math.sqrt(h) * eps[k, 1:]
        return _Market(first, sm, ss, level, sector)

    def _chunk_rows(self, stream: int, a: int, chunks: Sequence[int], draw) -> np.ndarray:
        """Concatenate, over ``chunks``, one draw per chunk stream (columns clipped to the universe)."""
        parts = []
        for c in chunks:
            arr = draw(_rng(self.seed, stream, a, c))
            width = min(CHUNK, self.n_symbols - c * CHUNK)
            parts.append(arr[..., :width])
        return np.concatenate(parts, axis=-1)

    def _cols(self, chunks: Sequence[int]) -> np.ndarray:
        return np.concatenate(
            [np.arange(c * CHUNK, min((c + 1) * CHUNK, self.n_symbols)) for c in chunks]
        )

    def _periodic(self, stream: int, chunks: Sequence[int], blocks: np.ndarray, phase: np.ndarray,
                  period: int, rows: int) -> np.ndarray:
        """Per-symbol regime draws (rows, nb, N): symbol i is in period (b + phase_i) // period."""
        k_lo = int(blocks[0]) // period
        k_hi = (int(blocks[-1]) + period - 1) // period
        draws = np.stack(
            [
                self._chunk_rows(stream, k, chunks, lambda g: g.random((rows, CHUNK)))
                for k in range(k_lo, k_hi + 1)
            ],
            axis=1,
        )  # (rows, n_periods, N)
        idx = (blocks[:, None] + phase[None, :]) // period - k_lo
        return np.stack([np.take_along_axis(draws[r], idx, axis=0) for r in range(rows)])

    def _walk(self, chunks: Sequence[int], b_lo: int, b_hi: int) -> _Walk:
        first, last = min(b_lo, 0), max(b_hi, 0)
        blocks = np.arange(first, last + 1)
        market = self._market_cache(first, last)
        cols = self._cols(chunks)
        st = self._st
        beta, load = st.beta[cols], st.loading[cols]
        sigma = st.sigma[cols]

        vol_u = self._periodic(_S_VOL_REGIME, chunks, blocks, st.phase_v[cols], _VOL_PERIOD, 1)[0]
        vol_u = np.clip(vol_u, 1e-9, 1.0 - 1e-9)
        # uniform -> normal by a cheap inverse (logit approximation is plenty for a regime multiplier)
        vol_z = np.log(vol_u / (1.0 - vol_u)) / 1.702
        mult = np.clip(np.exp(0.28 * vol_z - 0.04), 0.6, 1.8) * (market.sm[:, None] / 0.16) ** 0.3
        trend_u = self._periodic(_S_TREND_REGIME, chunks, blocks, st.phase_t[cols], _TREND_PERIOD, 2)
        trend_u = np.clip(trend_u, 1e-9, 1.0 - 1e-9)
        strength = np.log(trend_u[1] / (1.0 - trend_u[1])) / 1.702
        mu_sharpe = np.where(
            trend_u[0] < 0.14, 0.9 + 0.8 * np.abs(strength),
            np.where(trend_u[0] < 0.20, -0.7 - 0.6 * np.abs(strength), 0.05 + 0.25 * strength),
        )
        etf = st.is_etf[cols]
        mu = np.where(etf, 0.0, mu_sharpe * sigma)

        sys_var = (beta * market.sm[:, None]) ** 2 + (load * market.ss[:, None]) ** 2
        sig_stock = sigma * mult
        sig_idio = np.where(
            etf, sigma, np.sqrt(np.maximum(sig_stock**2 - sys_var, (0.35 * sig_stock) ** 2))
        )
        sig_tot = np.sqrt(sys_var + sig_idio**2)

        eps = np.stack(
            [self._chunk_rows(_S_IDIO_BLOCK, int(b), chunks, lambda g: g.standard_normal(CHUNK)) for b in blocks]
        )
        h = BLOCK / TRADING_DAYS
        step = mu * h + sig_idio * math.sqrt(h) * eps  # (nb, N) before mean reversion
        kappa = st.kappa[cols]
        level = np.empty((len(blocks) + 1, len(cols)))
        z = -first
        level[z] = st.x0[cols]
        for k in range(z, len(blocks)):
            level[k + 1] = level[k] + step[k] - kappa * level[k]
        for k in range(z - 1, -1, -1):
            level[k] = (1.0 - kappa) * level[k + 1] - step[k]
        return _Walk(first, market, sig_tot, sig_idio, level)

    def _details(self, chunks: Sequence[int], b_lo: int, b_hi: int) -> Iterator[_Block]:
        """Daily bars block by block for the columns of ``chunks``."""
        self._check_blocks(b_lo, b_hi)
        walk = self._walk(chunks, b_lo - 1, b_hi)
        market = walk.market
        cols = self._cols(chunks)
        st = self._st
        beta, load, sect = st.beta[cols], st.loading[cols], st.sector_idx[cols]
        base = np.log(st.p0[cols]) - st.x0[cols]
        p0, adv, list_day = st.p0[cols], st.adv[cols], st.list_day[cols]
        sqd = 1.0 / math.sqrt(TRADING_DAYS)
        shape = (BLOCK, CHUNK)
        f32 = np.float32
        for b in range(b_lo, b_hi + 1):
            k = b - walk.first
            gm = _rng(self.seed, _S_MKT_DAILY, b)
            zm, um = gm.standard_normal(BLOCK), gm.random(BLOCK)
            zs, us = gm.standard_normal((BLOCK, 11)), gm.random((BLOCK, 11))
            m = _bridge(market.level[k + 1] - market.level[k], market.sm[k] * sqd, _fat(zm, um))
            sec = _bridge(
                market.sector_level[k + 1] - market.sector_level[k], market.ss[k] * sqd, _fat(zs, us)
            )

            def draws(g: np.random.Generator) -> np.ndarray:
                return np.stack([
                    g.standard_normal(shape, dtype=f32), g.random(shape, dtype=f32),
                    g.standard_normal(shape, dtype=f32), g.standard_exponential(shape, dtype=f32),
                    g.standard_exponential(shape, dtype=f32), g.standard_normal(shape, dtype=f32),
                ])

            d = self._chunk_rows(_S_DAILY, b, chunks, draws)  # (6, BLOCK, N) float32
            x = _bridge(walk.level[k + 1] - walk.level[k], walk.sig_idio[k] * sqd, _fat(d[0], d[1]))
            # beta scales the market's deviations from its mean drift, not the drift itself: a
            # high-beta name does not compound twice the market's long-run return
            r = beta * m[:, None] + (1.0 - beta) * (_MKT_MEAN_DRIFT / TRADING_DAYS) + load * sec[:, sect] + x
            drift_line = _MKT_MEAN_DRIFT * (BLOCK / TRADING_DAYS) * b
            lb = (base + beta * market.level[k] + (1.0 - beta) * drift_line
                  + load * market.sector_level[k, sect] + walk.level[k])
            log_close = lb + np.cumsum(r, axis=0)
            sd = walk.sig_tot[k] * sqd
            log_open = np.vstack([lb[None, :], log_close[:-1]]) + _GAP_SHARE * r + (_GAP_NOISE * sd) * d[2]
            close = np.exp(log_close)
            opn = np.exp(log_open)
            high = np.maximum(opn, close) * np.exp((_RANGE_SCALE * sd) * d[3])
            low = np.minimum(opn, close) * np.exp(-(_RANGE_SCALE * sd) * d[4])
            volume = (adv / p0) * (close / p0) ** -0.5 * np.exp(
                0.35 * d[5] + 0.45 * (np.abs(r) / sd) - 0.45 * 0.8 - 0.06
            )
            volume = np.maximum(np.round(volume), 100.0)
            prev_close = np.vstack([np.exp(lb)[None, :], close[:-1]])
            s0 = self._epoch + b * BLOCK
            days = self._days[s0 : s0 + BLOCK]
            unlisted = days[:, None] < list_day[None, :]
            fields = [_round_price(a) for a in (opn, high, low, close, prev_close)]
            for a in (*fields, volume):
                a[unlisted] = np.nan
            fields[4][1:][unlisted[:-1]] = np.nan  # no previous close on the listing day
            fields[4][0][self._days[s0 - 1] < list_day] = np.nan
            yield _Block(
                b=b, s0=s0, days=days, cols=cols, open=fields[0], high=fields[1], low=fields[2],
                close=fields[3], volume=volume, prev_close=fields[4], sigma=walk.sig_tot[k],
                sigma_prev=walk.sig_tot[k - 1],
            )

    def _compute_block(self, chunk: int, b: int) -> _Block:
        return next(self._details((chunk,), b, b))

    # ------------------------------------------------------------------ daily bars

    def _session_indices(self, start: date, end: date) -> np.ndarray:
        days = calendar.sessions(start, end)
        return np.searchsorted(self._days, days)

    def daily_bars(
        self, start: date, end: date, symbols: Sequence[str] | None = None, dtype: type = np.float64
    ) -> Panel:
        """Daily OHLCV for the NYSE sessions in [start, end]; NaN before a symbol's listing."""
        s_idx = self._session_indices(start, end)
        if symbols is None:
            cols = np.arange(self.n_symbols)
            names = self._st.symbols.copy()
        else:
            cols = np.array([self.symbol_index(s) for s in symbols], dtype=np.int64)
            names = np.asarray(list(symbols), dtype=object)
        out = {f: np.full((len(s_idx), len(cols)), np.nan, dtype=dtype) for f in FIELDS}
        if len(s_idx) and len(cols):
            blocks = (s_idx - self._epoch) // BLOCK
            b_lo, b_hi = int(blocks[0]), int(blocks[-1])
            chunks = np.unique(cols // CHUNK)
            for g in range(0, len(chunks), GROUP_CHUNKS):
                group = tuple(int(c) for c in chunks[g : g + GROUP_CHUNKS])
                in_group = np.flatnonzero(np.isin(cols // CHUNK, group))
                group_cols = self._cols(group)
                local = np.searchsorted(group_cols, cols[in_group])
                contiguous = (
                    len(in_group) == len(group_cols)
                    and in_group[-1] - in_group[0] + 1 == len(in_group)
                    and np.array_equal(local, np.arange(len(group_cols)))
                )
                out_cols = slice(int(in_group[0]), int(in_group[-1]) + 1) if contiguous else in_group
                for blk in self._details(group, b_lo, b_hi):
                    pos = s_idx - blk.s0
                    keep = np.flatnonzero((pos >= 0) & (pos < BLOCK))
                    if not len(keep):
                        continue
                    rows = slice(int(keep[0]), int(keep[-1]) + 1)
                    src_rows = pos[keep]
                    for f in FIELDS:
                        src = getattr(blk, f)[src_rows]
                        if contiguous:
                            out[f][rows, out_cols] = src
                        else:
                            out[f][np.ix_(np.arange(rows.start, rows.stop), out_cols)] = src[:, local]
        return Panel(self._days[s_idx].copy(), names, *(out[f] for f in FIELDS))

    def _day(self, i: int, s: int) -> tuple[_Block, int, int]:
        """The cached block holding session ``s`` for symbol ``i``, with (row, column) inside it."""
        b = (s - self._epoch) // BLOCK
        blk = self._block(i // CHUNK, b)
        return blk, s - blk.s0, i - (i // CHUNK) * CHUNK

    def bar(self, symbol: str, day: date) -> dict[str, float]:
        """One symbol's bar for a session (open, high, low, close, volume, prev_close)."""
        i = self.symbol_index(symbol)
        blk, row, col = self._day(i, calendar.session_index(day))
        return {f: float(getattr(blk, f)[row, col]) for f in (*FIELDS, "prev_close")}

    # ------------------------------------------------------------------ intraday

    def _path_knots(self, i: int, s: int, minutes: int):  # type: ignore[no-untyped-def]
        """The (minute, price) knots of symbol ``i``'s intraday path in session ``s``; fixed by the
        day's bar and a hash, so cached: every quote of every minute asks."""
        return self._knots(i, s, minutes)

    def _compute_knots(self, i: int, s: int, minutes: int):  # type: ignore[no-untyped-def]
        blk, row, col = self._day(i, s)
        o, h, lo, c = (float(getattr(blk, f)[row, col]) for f in ("open", "high", "low", "close"))
        u = _hash_uniform(self.seed, _H_PATH, i, s, np.arange(8))
        high_first = u[0] < (0.35 if c >= o else 0.65)
        e1, e2 = (h, lo) if high_first else (lo, h)
        n = minutes
        m1 = int(np.clip(round((0.03 + 0.55 * u[1]) * n), 1, n - 2))
        m2 = int(np.clip(round(m1 + (n - 1 - m1) * (0.15 + 0.8 * u[2])), m1 + 1, n - 1))
        rng_hl = h - lo
        va = o + (e1 - o) * (0.3 + 0.5 * u[3]) + 0.15 * rng_hl * (u[6] - 0.5)
        vb = e1 + (e2 - e1) * (0.3 + 0.4 * u[4]) + 0.15 * rng_hl * (u[7] - 0.5)
        vc = e2 + (c - e2) * (0.3 + 0.5 * u[5])
        ta, tb, tc = m1 * (0.2 + 0.6 * u[3]), m1 + (m2 - m1) * (0.2 + 0.6 * u[4]), m2 + (n - m2) * (0.2 + 0.6 * u[5])
        times = np.array([0.0, ta, m1, tb, m2, tc, float(n)])
        values = np.clip(np.array([o, va, e1, vb, e2, vc, c]), lo, h)
        return times, values

    def _price_at(self, i: int, at: datetime) -> tuple[float, int, str]:
        """(price, session index, phase) at ``at``: phase is 'pre', 'open', 'post' or 'closed'."""
        if at.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        day = calendar.to_session_day(at)
        times = calendar.session_times(day)
        if times is None:
            s = calendar.session_index(calendar.last_session_on_or_before(day))
            blk, row, col = self._day(i, s)
            return float(blk.close[row, col]), s, "closed"
        s = calendar.session_index(day)
        blk, row, col = self._day(i, s)
        if at < times[0]:
            return float(blk.prev_close[row, col]), s, "pre"
        if at >= times[1]:
            return float(blk.close[row, col]), s, "post"
        if np.isnan(blk.open[row, col]):
            return math.nan, s, "open"
        minutes = calendar.session_minutes(day)
        t, v = self._path_knots(i, s, minutes)
        elapsed = (at - times[0]).total_seconds() / 60.0
        return float(_round_price(np.interp(elapsed, t, v))), s, "open"

    def intraday_price(self, symbol: str, at: datetime) -> float:
        """Price on the deterministic intraday path (previous close before the open, close after it)."""
        return self._price_at(self.symbol_index(symbol), at)[0]

    def intraday_path(self, symbol: str, day: date) -> pd.Series:
        """Every minute of a session from the open to the close (inclusive), indexed by NY time."""
        i = self.symbol_index(symbol)
        times = calendar.session_times(day)
        if times is None:
            raise ValueError(f"{day} is not a session")
        s = calendar.session_index(day)
        minutes = calendar.session_minutes(day)
        blk, row, col = self._day(i, s)
        index = pd.date_range(times[0], times[1], freq="1min")
        if np.isnan(blk.open[row, col]):
            return pd.Series(np.nan, index=index, name=symbol)
        t, v = self._path_knots(i, s, minutes)
        return pd.Series(_round_price(np.interp(np.arange(minutes + 1), t, v)), index=index, name=symbol)

    def _spread(self, i: int, price: float) -> tuple[float, float]:
        tick = 0.01 if price >= 1.0 else 0.0001
        bps = min(1.0 + 8.0 * math.sqrt(2e7 / self._st.adv[i]), 400.0)
        half = max(tick / 2, price * bps * 1e-4 / 2)
        bid = math.floor((price - half) / tick + 1e-9) * tick
        ask = math.ceil((price + half) / tick - 1e-9) * tick
        if ask <= bid:
            ask = bid + tick
        return round(max(bid, tick), 4), round(ask, 4)

    def quotes(self, symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Stock quotes at tz-aware ``at``: columns symbol, bid, ask, last, time (NaN before listing)."""
        rows = []
        for sym in symbols:
            i = self.symbol_index(sym)
            price, _, _ = self._price_at(i, at)
            bid, ask = self._spread(i, price) if np.isfinite(price) else (math.nan, math.nan)
            rows.append((sym, bid, ask, price, at))
        return pd.DataFrame(rows, columns=["symbol", "bid", "ask", "last", "time"])

def generate_panel(
    seed: int, n_symbols: int, n_days: int, end: date | None = None, dtype: type = np.float32
) -> Panel:
    """A (n_days x n_symbols) panel of simulated daily bars ending at ``end`` (default 2026-06-30)."""
    market = SimMarket(seed=seed, n_symbols=n_symbols)
    days = calendar.sessions_back(end or DEFAULT_PANEL_END, n_days)
    return market.daily_bars(days[0].astype(object), days[-1].astype(object), dtype=dtype)
