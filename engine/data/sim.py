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
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.data import calendar
from engine.data.panel import FIELDS, Panel
from engine.data.ports import UNIVERSE_COLUMNS
from engine.options.chain import CHAIN_COLUMNS
from engine.options.occ import occ_padded, parse_occ

__all__ = [
    "BLOCK",
    "CHAIN_COLUMNS",
    "EPOCH",
    "RISK_FREE_RATE",
    "SECTORS",
    "SimMarket",
    "generate_panel",
    "occ_symbol",
    "parse_occ_symbol",
]

EPOCH = date(2025, 6, 2)  # each symbol's price is anchored at the session before this one
BLOCK = 21  # sessions per block of the block-level walk (about a month)
CHUNK = 512  # symbols per random-stream chunk (fixed: changing it changes the market)
GROUP_CHUNKS = 8  # chunks generated together (bounds temporaries to BLOCK x 4096 arrays)
TRADING_DAYS = 252.0
RISK_FREE_RATE = 0.04
DEFAULT_PANEL_END = date(2026, 6, 30)


SECTORS = (
    "Information Technology", "Health Care", "Financials", "Consumer Discretionary",
    "Communication Services", "Industrials", "Consumer Staples", "Energy", "Utilities",
    "Real Estate", "Materials",
)
_SECTOR_WEIGHTS = np.array([0.17, 0.20, 0.16, 0.11, 0.06, 0.12, 0.04, 0.05, 0.03, 0.03, 0.03])
_SECTOR_VOL = np.array([1.10, 1.25, 0.75, 1.05, 1.05, 0.85, 0.65, 1.00, 0.50, 0.65, 0.90])
_SECTOR_DIVIDEND_P = np.array([0.25, 0.10, 0.65, 0.35, 0.25, 0.50, 0.75, 0.70, 0.95, 0.95, 0.60])

# Index ETFs at symbol indices 0..3: ticker, name, exchange, price at epoch, dollar volume/day,
# beta, sector loading (on Information Technology), idiosyncratic vol, dividend yield, listing.
_ETFS = (
    ("SPY", "SPDR S&P 500 ETF Trust", "ARCX", 590.0, 3.0e10, 1.00, 0.00, 0.010, 0.012, date(1993, 1, 22)),
    ("QQQ", "Invesco QQQ Trust, Series 1", "XNAS", 520.0, 1.6e10, 1.12, 0.45, 0.050, 0.006, date(1999, 3, 10)),
    ("IWM", "iShares Russell 2000 ETF", "ARCX", 208.0, 5.0e9, 1.18, 0.00, 0.085, 0.011, date(2000, 5, 22)),
    ("DIA", "SPDR Dow Jones Industrial Average ETF Trust", "ARCX", 425.0, 1.2e9, 0.92, 0.00, 0.040,
     0.016, date(1998, 1, 14)),
)
_N_ETFS = len(_ETFS)

# Random streams (Philox key word 1). Never renumber: that would change every market.
_S_TICKERS, _S_STATIC, _S_NAMES, _S_MKT_BLOCK, _S_MKT_REGIME, _S_MKT_DAILY = 1, 2, 3, 4, 5, 6
_S_IDIO_BLOCK, _S_VOL_REGIME, _S_TREND_REGIME, _S_DAILY = 7, 8, 9, 10
_H_PATH, _H_IV, _H_OPT, _H_OPT_DAY = 101, 102, 103, 104

_MASK64 = (1 << 64) - 1
_COUNTER_OFFSET = 1 << 40  # blocks may be negative; counters are unsigned

# Market regimes (every _MKT_PERIOD blocks): probability, annual vol, annual drift.
_MKT_PERIOD = 4
_MKT_REGIMES = ((0.42, 0.11, 0.16), (0.43, 0.16, 0.08), (0.15, 0.30, -0.30))
_MKT_MEAN_DRIFT = sum(p * mu for p, _, mu in _MKT_REGIMES)
_SECTOR_VOL_BASE = 0.12
_SECTOR_PHI = 0.97
_VOL_PERIOD = 3  # per-symbol vol regime length, blocks
_TREND_PERIOD = 12  # per-symbol trend regime length, blocks
_FAT_P, _FAT_HI = 0.08, 2.2  # scale mixture: 8% of days have 2.2x the shock scale
_FAT_LO = math.sqrt((1.0 - _FAT_P * _FAT_HI**2) / (1.0 - _FAT_P))  # keeps unit variance
_GAP_SHARE, _GAP_NOISE = 0.30, 0.30  # overnight gap = share of the day's return + own noise
_RANGE_SCALE = 0.42  # high/low extension beyond max/min(open, close), in daily sigmas (exponential)

_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_LETTER_P = np.array([8.5, 3.5, 5.5, 3.5, 6.0, 2.8, 3.0, 3.0, 5.0, 0.8, 2.0, 4.5, 4.5, 4.8, 4.0, 4.2,
                      0.6, 5.0, 6.5, 5.0, 2.6, 2.2, 1.8, 1.2, 1.5, 1.0])
_LETTER_CDF = np.cumsum(_LETTER_P) / _LETTER_P.sum()
_TICKER_LEN_CDF = np.cumsum([0.003, 0.03, 0.33, 0.56, 0.077])

_NAME_HEADS = (
    "Al", "Ar", "Bel", "Bri", "Cal", "Cor", "Del", "Dyn", "El", "Ev", "Fal", "Gen", "Hal", "Hor",
    "In", "Jun", "Kel", "Lum", "Mar", "Mer", "Nor", "Nov", "Om", "Pal", "Par", "Quin", "Ray", "Sol",
    "Ster", "Tal", "Ter", "Ul", "Ver", "Vis", "Wen", "Xan", "Zen", "Ath", "Bor", "Cyr",
)
_NAME_TAILS = ("a", "ex", "ion", "is", "on", "ora", "um", "ix", "ent", "ar", "o", "yn", "ta", "ia",
               "ant", "eon", "ica", "ova")
_NAME_SUFFIXES = (
    ("Technologies", "Systems", "Software", "Semiconductor", "Networks", "Data"),
    ("Therapeutics", "Pharmaceuticals", "Biosciences", "Medical", "Health", "Genomics"),
    ("Financial", "Bancorp", "Capital", "Holdings", "Insurance Group", "Trust"),
    ("Brands", "Retail", "Motors", "Resorts", "Apparel", "Home"),
    ("Media", "Communications", "Interactive", "Entertainment", "Telecom", "Studios"),
    ("Industries", "Aerospace", "Logistics", "Machinery", "Engineering", "Controls"),
    ("Foods", "Beverages", "Consumer Products", "Farms", "Nutrition", "Household"),
    ("Energy", "Petroleum", "Resources", "Oil & Gas", "Midstream", "Drilling"),
    ("Power", "Utilities", "Electric", "Water", "Gas & Electric", "Renewables"),
    ("Realty", "Properties", "REIT", "Land", "Residential", "Storage"),
    ("Materials", "Chemicals", "Mining", "Metals", "Steel", "Packaging"),
)
_NAME_FORMS = (" Inc.", " Corp.", "", " Ltd.", " Co.", " Group")


# --------------------------------------------------------------------------- randomness


def _rng(seed: int, stream: int, a: int, b: int = 0) -> np.random.Generator:
    """An independent Philox stream for (seed, stream) at counter block (a, b)."""
    key = np.array([seed & _MASK64, stream], dtype=np.uint64)
    counter = np.array([0, 0, (a + _COUNTER_OFFSET) & _MASK64, b & _MASK64], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(counter=counter, key=key))


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash_uniform(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform(0, 1) values, one per broadcast element of ``keys``: a keyed splitmix64 chain."""
    arrays = np.broadcast_arrays(*(np.asarray(k, dtype=np.int64) for k in keys))
    with np.errstate(over="ignore"):
        h = _splitmix(np.full(arrays[0].shape, (seed & _MASK64) ^ (stream << 48), dtype=np.uint64))
        for k in arrays:
            h = _splitmix(h ^ k.astype(np.uint64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _hash_normal(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    u1 = _hash_uniform(seed, stream, *keys, 0)
    u2 = _hash_uniform(seed, stream, *keys, 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _fat(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Unit-variance fat-tailed shocks from normals ``z`` and uniforms ``u`` (a scale mixture)."""
    return z * np.where(u < _FAT_P, _FAT_HI, _FAT_LO)


def _bridge(increment: np.ndarray, daily_sigma: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """Daily returns (rows) whose sum is exactly ``increment`` and whose spread is ``daily_sigma``."""
    n = shocks.shape[0]
    centred = (shocks - shocks.mean(axis=0)) * math.sqrt(n / (n - 1.0))
    return increment / n + daily_sigma * centred


def _round_price(p: np.ndarray) -> np.ndarray:
    """Exchange price grid: cents from $1, 1/100 cent below."""
    return np.maximum(np.where(p >= 1.0, np.round(p, 2), np.round(p, 4)), 0.0001)


# --------------------------------------------------------------------------- OCC symbols


def occ_symbol(underlying: str, expiry: date, right: str, strike: float) -> str:
    """OCC option symbol (root padded to 6); the unchecked fast path of ``engine.options.occ``."""
    return occ_padded(underlying, expiry, right, strike)


def parse_occ_symbol(symbol: str) -> tuple[str, date, str, float]:
    """(underlying, expiry, right, strike) of an OCC symbol, via ``engine.options.occ.parse_occ``."""
    parsed = parse_occ(symbol)
    return parsed.root, parsed.expiry, parsed.right, float(parsed.strike)


# --------------------------------------------------------------------------- static universe


@dataclass(frozen=True)
class _Static:
    symbols: np.ndarray
    names: np.ndarray
    sector_idx: np.ndarray  # factor index 0..10
    sector_name: np.ndarray
    kind: np.ndarray  # 'CS' or 'ETF'
    exchange: np.ndarray
    list_day: np.ndarray  # datetime64[D]
    tradable: np.ndarray
    is_etf: np.ndarray
    p0: np.ndarray  # price at the epoch anchor
    sigma: np.ndarray  # base annual vol (stocks: total; ETFs: idiosyncratic)
    beta: np.ndarray
    loading: np.ndarray  # sector-factor loading
    adv: np.ndarray  # dollar volume per day at the epoch
    q: np.ndarray  # dividend yield
    vrp: np.ndarray  # implied-over-realised premium
    skew: np.ndarray
    smile: np.ndarray
    kappa: np.ndarray  # block mean reversion (1 - phi)
    x0: np.ndarray  # idiosyncratic level at the epoch
    phase_v: np.ndarray
    phase_t: np.ndarray
    sig_long: np.ndarray  # long-run total vol (for the options term structure)


def _tickers(seed: int, n: int) -> list[str]:
    """``n`` unique tickers; always the same prefix for the same seed whatever ``n``."""
    taken = {e[0] for e in _ETFS}
    out: list[str] = []
    batch = 0
    while len(out) < n:
        g = _rng(seed, _S_TICKERS, batch)
        batch += 1
        lengths = np.searchsorted(_TICKER_LEN_CDF, g.random(4096)) + 1
        letters = _LETTERS[np.minimum(np.searchsorted(_LETTER_CDF, g.random((4096, 5))), 25)]
        for k in range(4096):
            t = "".join(letters[k, : min(int(lengths[k]), 5)])
            if t not in taken:
                taken.add(t)
                out.append(t)
                if len(out) == n:
                    break
    return out


def _build_static(seed: int, n: int) -> _Static:
    n_chunks = max(1, -(-n // CHUNK))
    u = np.concatenate([_rng(seed, _S_STATIC, 0, c).random((12, CHUNK)) for c in range(n_chunks)], axis=1)
    z = np.concatenate(
        [_rng(seed, _S_STATIC, 1, c).standard_normal((8, CHUNK)) for c in range(n_chunks)], axis=1
    )
    un = np.concatenate([_rng(seed, _S_NAMES, 0, c).random((4, CHUNK)) for c in range(n_chunks)], axis=1)
    u, z, un = u[:, :n], z[:, :n], un[:, :n]

    sector = np.minimum(np.searchsorted(np.cumsum(_SECTOR_WEIGHTS) / _SECTOR_WEIGHTS.sum(), u[0]), 10)
    sigma = np.clip(0.40 * np.exp(0.45 * z[0]) * _SECTOR_VOL[sector], 0.12, 1.30)
    beta = np.clip(1.0 + 0.28 * z[1] + 0.25 * np.log(sigma / 0.40), 0.25, 2.2)
    p0 = np.round(np.clip(28.0 * np.exp(1.1 * z[2]), 1.5, 950.0), 2)
    log_adv = 6.85 + 0.80 * z[3] + 0.35 * np.log(p0 / 28.0) - 0.50 * np.log(sigma / 0.40)
    adv = 10.0 ** np.clip(log_adv, 4.3, 10.3)
    div_p = _SECTOR_DIVIDEND_P[sector] * np.where(sigma > 0.6, 0.2, 1.0)
    q = np.where(u[3] < div_p, np.round(0.005 + 0.035 * u[4], 4), 0.0)
    vrp = 0.08 + 0.17 * u[5]
    skew = 0.05 + 0.11 * u[6]
    smile = 0.02 + 0.03 * u[7]
    kappa = np.clip((BLOCK / TRADING_DAYS) * sigma**2 / (2.0 * 0.8**2), 0.005, 0.06)
    x0 = 0.3 * z[4]
    phase_v = np.minimum((u[10] * _VOL_PERIOD).astype(np.int64), _VOL_PERIOD - 1)
    phase_t = np.minimum((u[11] * _TREND_PERIOD).astype(np.int64), _TREND_PERIOD - 1)

    days = calendar._schedule().days
    epoch_idx = int(np.searchsorted(days, np.datetime64(EPOCH, "D")))
    ipo = u[8] < 0.05  # recent listings: bars start inside the usual backtest windows
    ipo_idx = np.clip(epoch_idx - 300 + (u[9] * 630).astype(np.int64), 0, len(days) - 1)
    old_span = (date(2019, 12, 31) - date(1975, 1, 1)).days
    old_day = np.datetime64(date(1975, 1, 1), "D") + (u[9] * old_span).astype("timedelta64[D]")
    list_day = np.where(ipo, days[ipo_idx], old_day).astype("datetime64[D]")

    exchange = np.where(u[1] < 0.58, "XNAS", np.where(u[1] < 0.95, "XNYS", "XASE")).astype(object)
    tradable = u[2] > 0.012
    is_etf = np.zeros(n, dtype=bool)
    loading = np.ones(n)

    heads = np.array(_NAME_HEADS, dtype=object)[(un[0] * len(_NAME_HEADS)).astype(int)]
    tails = np.array(_NAME_TAILS, dtype=object)[(un[1] * len(_NAME_TAILS)).astype(int)]
    forms = np.array(_NAME_FORMS, dtype=object)[(un[3] * len(_NAME_FORMS)).astype(int)]
    pick = (un[2] * 6).astype(int)
    names = np.array(
        [f"{h}{t} {_NAME_SUFFIXES[s][k]}{f}" for h, t, s, k, f in zip(heads, tails, sector, pick, forms,
                                                                       strict=True)],
        dtype=object,
    )
    n_etf = min(n, _N_ETFS)
    symbols = np.array([e[0] for e in _ETFS[:n_etf]] + _tickers(seed, n - n_etf), dtype=object)
    sector_name = np.array(SECTORS, dtype=object)[sector]
    kind = np.full(n, "CS", dtype=object)
    for i, (_, name, exch, price, dollars, b, load, idio, dy, listed) in enumerate(_ETFS[:n_etf]):
        names[i], exchange[i], p0[i], adv[i], beta[i] = name, exch, price, dollars, b
        loading[i], sigma[i], q[i], list_day[i] = load, idio, dy, np.datetime64(listed, "D")
        sector[i], sector_name[i], kind[i], is_etf[i], tradable[i] = 0, "ETF", "ETF", True, True
        vrp[i], skew[i], smile[i], kappa[i], x0[i] = 0.30, 0.22, 0.04, 0.02, 0.0
    mkt_long = 0.16
    sig_long = np.where(
        is_etf,
        np.sqrt((beta * mkt_long) ** 2 + (loading * _SECTOR_VOL_BASE) ** 2 + sigma**2),
        np.sqrt(np.maximum(sigma**2, (beta * mkt_long) ** 2 + _SECTOR_VOL_BASE**2 + (0.35 * sigma) ** 2)),
    )
    return _Static(
        symbols=symbols, names=names, sector_idx=sector, sector_name=sector_name, kind=kind,
        exchange=exchange, list_day=list_day, tradable=tradable, is_etf=is_etf, p0=p0, sigma=sigma,
        beta=beta, loading=loading, adv=adv, q=q, vrp=vrp, skew=skew, smile=smile, kappa=kappa, x0=x0,
        phase_v=phase_v, phase_t=phase_t, sig_long=sig_long,
    )


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


class SimMarket:
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

    def _path_knots(self, i: int, s: int, blk: _Block, row: int, col: int, minutes: int):
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
        t, v = self._path_knots(i, s, blk, row, col, minutes)
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
        t, v = self._path_knots(i, s, blk, row, col, minutes)
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

    # ------------------------------------------------------------------ volatility surface

    def _iv30(self, i: int, s: int, spot: float | None = None) -> float:
        """ATM-forward 30-day IV for session ``s`` with the underlying at ``spot`` (its close if None)."""
        blk, row, col = self._day(i, s)
        w = min(1.0, (row + 1) / 5.0)  # regime changes feed into IV over a week
        sig = w * float(blk.sigma[col]) + (1.0 - w) * float(blk.sigma_prev[col])
        st = self._st
        noise = float(_hash_normal(self.seed, _H_IV, i, s)[()])
        base = sig * (1.0 + st.vrp[i]) * math.exp(0.05 * noise - 0.00125)
        close, prev = float(blk.close[row, col]), float(blk.prev_close[row, col])
        spot = close if spot is None else spot
        move = math.log(spot / prev) if np.isfinite(prev) and np.isfinite(spot) else 0.0
        leverage = 4.0 if st.is_etf[i] else 1.5
        return float(np.clip(base * math.exp(float(np.clip(-leverage * move, -1.0, 1.0))), 0.05, 3.0))

    def atm_iv_series(self, symbol: str, start: date, end: date) -> pd.Series:
        """Daily close ATM (forward) 30-day IV per session in [start, end], as on the chains' surface."""
        i = self.symbol_index(symbol)
        s_idx = self._session_indices(start, end)
        values = np.full(len(s_idx), np.nan)
        for k, s in enumerate(s_idx):
            blk, row, col = self._day(i, int(s))
            if np.isfinite(blk.close[row, col]):
                values[k] = self._iv30(i, int(s))
        return pd.Series(values, index=pd.DatetimeIndex(self._days[s_idx], name="date"), name=symbol)

    def _surface(
        self, i: int, iv30: float, spot: float, strikes: np.ndarray, dte: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(implied vol, standardised moneyness ln(K/F) / (atm vol * sqrt(T))) per contract."""
        st = self._st
        t = dte / 365.0
        iv_long = st.sig_long[i] * (1.0 + st.vrp[i])
        atm = iv_long + (iv30 - iv_long) * np.minimum((30.0 / dte) ** 0.35, 1.8)
        atm = np.maximum(atm, 0.5 * min(iv30, iv_long))
        fwd = spot * np.exp((RISK_FREE_RATE - st.q[i]) * t)
        x = np.log(strikes / fwd) / (atm * np.sqrt(t))
        xc = np.clip(x, -4.0, 4.0)
        return atm * (1.0 - st.skew[i] * xc + st.smile[i] * xc * xc), x

    # ------------------------------------------------------------------ options

    @staticmethod
    def _expiries(today: date) -> list[date]:
        """Weekly Fridays for five weeks and monthly third Fridays for about six months."""
        out = set()
        first_friday = today + timedelta(days=(4 - today.weekday()) % 7 or 7)
        friday = first_friday
        while friday <= today + timedelta(days=190):
            monthly = 15 <= friday.day <= 21
            if monthly or friday <= today + timedelta(days=35):
                out.add(friday if calendar.is_session(friday) else calendar.previous_session(friday))
            friday += timedelta(days=7)
        return sorted(d for d in out if d > today)

    @staticmethod
    def _strike_step(price: float) -> float:
        for limit, step in ((10.0, 0.5), (30.0, 1.0), (120.0, 2.5), (400.0, 5.0)):
            if price < limit:
                return step
        return 10.0

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        """The underlying's option chain at ``at`` in the normalised chain shape (``CHAIN_COLUMNS``)."""
        i = self.symbol_index(underlying)
        ctx = self._option_context(i, at)
        if ctx is None:
            return pd.DataFrame(columns=list(CHAIN_COLUMNS))
        ref = ctx["ref"]
        step = self._strike_step(ref)
        lo = max(step, math.ceil(ref * 0.6 / step) * step)
        hi = math.floor(ref * 1.4 / step) * step
        strikes = np.round(np.arange(lo, hi + step / 2, step), 3)
        if not len(strikes):
            strikes = np.array([max(step, round(ref / step) * step)])
        expiries = self._expiries(ctx["today"])
        e_grid, k_grid, r_grid = np.meshgrid(np.arange(len(expiries)), strikes, np.array([True, False]),
                                             indexing="ij")
        exp_list = [expiries[j] for j in e_grid.ravel()]
        return self._price(i, ctx, exp_list, k_grid.ravel(), r_grid.ravel())

    def option_quotes(self, occ_symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Quotes for any contracts (OCC symbols) at ``at``, chain-shaped; a held contract always prices."""
        frames = []
        parsed = [parse_occ_symbol(o) for o in occ_symbols]
        for root in dict.fromkeys(p[0] for p in parsed):
            mine = [p for p in parsed if p[0] == root]
            i = self.symbol_index(root)
            ctx = self._option_context(i, at)
            if ctx is None:
                continue
            live = [p for p in mine if p[1] > ctx["today"]]
            if live:
                frames.append(self._price(
                    i, ctx, [p[1] for p in live], np.array([p[3] for p in live]),
                    np.array([p[2] == "C" for p in live]),
                ))
        if not frames:
            return pd.DataFrame(columns=list(CHAIN_COLUMNS))
        return pd.concat(frames, ignore_index=True)

    def _option_context(self, i: int, at: datetime) -> dict | None:
        spot, s, phase = self._price_at(i, at)
        if not np.isfinite(spot):
            return None
        today = calendar.to_session_day(at).astype(object)
        blk, row, col = self._day(i, s)
        if phase == "pre":
            iv_s, iv_spot, ref = s - 1, None, spot
            activity_s, fraction = s - 1, 1.0
        elif phase == "open":
            times = calendar.session_times(today)
            elapsed = (at - times[0]).total_seconds() / (times[1] - times[0]).total_seconds()
            iv_s, iv_spot, ref = s, spot, float(blk.prev_close[row, col])
            activity_s, fraction = s, max(0.02, elapsed) ** 0.8
        else:  # post or closed: the close of session s
            iv_s, iv_spot = s, None
            ref = float(blk.prev_close[row, col]) if phase == "post" else spot
            activity_s, fraction = s, 1.0
        if not np.isfinite(ref):
            ref = spot
        iv_blk, iv_row, iv_col = self._day(i, iv_s)
        if not np.isfinite(iv_blk.close[iv_row, iv_col]):
            iv_s, iv_spot = s, spot
        act_blk, act_row, act_col = self._day(i, activity_s)
        activity_ref = float(act_blk.prev_close[act_row, act_col])
        if not np.isfinite(activity_ref):  # listing day
            activity_ref = float(act_blk.open[act_row, act_col])
        if not np.isfinite(activity_ref):
            activity_ref = ref
        return {
            "spot": spot, "today": today, "iv30": self._iv30(i, iv_s, iv_spot), "ref": ref,
            "activity_s": activity_s, "activity_day": self._days[activity_s].astype(object),
            "activity_ref": activity_ref, "fraction": fraction, "at": at,
        }

    def _price(self, i: int, ctx: dict, expiries: list[date], strikes: np.ndarray,
               is_call: np.ndarray) -> pd.DataFrame:
        # US equity options are American: quotes come from the engine's American model at the symbol's
        # dividend yield, so our own (American) IV of a mid recovers the surface.  The provider greeks
        # are Black-Scholes-Merton at the quoted vol, as vendors commonly publish them; they differ from
        # ours (chain.enrich's calc_*) only where early exercise dominates (deep in the money), and the
        # American greeks would cost six more prices per contract on every chain read.
        from engine.options.pricing import greeks, option_price

        st = self._st
        sym = str(st.symbols[i])
        spot, today = ctx["spot"], ctx["today"]
        strikes = np.asarray(strikes, dtype=np.float64)
        is_call = np.asarray(is_call, dtype=bool)
        dte = np.array([(e - today).days for e in expiries], dtype=np.int64)
        t = dte / 365.0
        iv, x = self._surface(i, ctx["iv30"], spot, strikes, dte.astype(np.float64))
        q, r = float(st.q[i]), RISK_FREE_RATE
        theo = option_price(spot, strikes, t, r, q, iv, is_call)
        g = greeks(spot, strikes, t, r, q, iv, is_call)
        disc_s, disc_k = spot * np.exp(-q * t), strikes * np.exp(-r * t)
        # no-arbitrage floor of an American option: the European bound and immediate exercise
        lower = np.maximum(0.0, np.where(is_call, np.maximum(disc_s - disc_k, spot - strikes),
                                         np.maximum(disc_k - disc_s, strikes - spot)))

        liquidity = 1e9 / st.adv[i]
        frac = float(np.clip(0.012 * liquidity**0.25, 0.008, 0.30))
        absolute = 0.01 + 0.05 * float(np.clip(math.log10(liquidity) / 4.0, 0.0, 1.0))
        # market makers quote time value in vol terms (wider away from the money) and intrinsic
        # value almost at the stock's spread
        time_value = np.maximum(theo - lower, 0.0)
        spread = (time_value * (1.0 + 0.6 * np.minimum(np.abs(x), 6.0)) + 0.15 * lower) * frac + absolute
        bid, ask = _option_quote(theo, lower, spread)
        mid = np.round((bid + ask) / 2.0, 3)

        # Open interest is fixed for a calendar day (set from the previous close); a session's
        # volume is fixed by that session (set from its previous close and its own date), grows
        # through the session, and is what a pre-market snapshot still shows the next morning.
        exp_ord = np.array([e.toordinal() for e in expiries], dtype=np.int64)
        k_milli = np.round(strikes * 1000).astype(np.int64)
        right_key = is_call.astype(np.int64)
        oi_atm = float(np.clip(1500.0 * (st.adv[i] / 2e7) ** 0.7, 5.0, 250000.0))
        monthly = np.array([_is_monthly(e) for e in expiries])
        weekly_share = np.where(monthly | st.is_etf[i], 1.0, 0.35)
        step = self._strike_step(ctx["ref"])
        on_grid = np.mod(strikes + 1e-6, 2 * step) < 2e-6
        vol_long = st.sig_long[i] * (1.0 + st.vrp[i])

        def profile(ref: float, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            z = np.log(strikes / ref) / (vol_long * np.sqrt(np.maximum(days, 1) / 365.0))
            otm = np.where(is_call, strikes >= ref, strikes <= ref)
            bell = np.exp(-0.5 * (np.minimum(np.abs(z), 10.0) / 1.3) ** 2)
            return bell * weekly_share / (1.0 + np.maximum(days, 0) / 150.0), otm

        oi_shape, oi_otm = profile(ctx["ref"], dte.astype(np.float64))
        oi_noise = np.exp(0.6 * _hash_normal(self.seed, _H_OPT, i, exp_ord, k_milli, right_key) - 0.18)
        open_interest = np.floor(
            oi_atm * oi_shape * np.where(oi_otm, 1.0, 0.5) * np.where(on_grid, 1.3, 1.0) * oi_noise
        )
        act = ctx["activity_s"]
        act_days = np.array([(e - ctx["activity_day"]).days for e in expiries], dtype=np.float64)
        vol_shape, vol_otm = profile(ctx["activity_ref"], act_days)
        day_noise = np.exp(
            0.7 * _hash_normal(self.seed, _H_OPT_DAY, i, exp_ord, k_milli, right_key, act)
            + 0.4 * float(_hash_normal(self.seed, _H_OPT_DAY, i, act)[()]) - 0.3
        )
        full_day = 0.12 * oi_atm * vol_shape * np.where(vol_otm, 1.0, 0.4) * day_noise
        volume = np.floor(full_day * ctx["fraction"])
        half = (ask - bid) / 2.0
        last_noise = _hash_normal(self.seed, _H_OPT_DAY, i, exp_ord, k_milli, right_key, ctx["activity_s"], 7)
        last = np.clip(np.round((theo + 0.5 * half * last_noise) / 0.01) * 0.01, bid, ask)
        rights = np.where(is_call, "C", "P")
        n = len(strikes)
        return pd.DataFrame(
            {
                "underlying": sym,
                "occ_symbol": [occ_symbol(sym, e, rr, k) for e, rr, k in zip(expiries, rights, strikes, strict=True)],
                "expiry": expiries,
                "dte": dte.astype(int),
                "strike": strikes,
                "right": rights,
                "bid": bid,
                "ask": ask,
                "mid": mid,
                "last": np.round(last, 2),
                "volume": volume.astype(np.int64),
                "open_interest": open_interest.astype(np.int64),
                "iv": iv,
                "delta": g.delta,
                "gamma": g.gamma,
                "theta": g.theta,
                "vega": g.vega,
                "underlying_price": np.full(n, spot),
                "quote_time": [ctx["at"]] * n,
                "source": "sim",
            },
            columns=list(CHAIN_COLUMNS),
        )


def _option_quote(theo: np.ndarray, lower: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bid/ask on the option tick grid ($0.01 under $3, $0.05 from $3) around the theoretical value.

    The bid rounds down and the ask up, so bid <= theo <= ask (put-call parity then holds within the
    quotes); the ask is lifted when needed so that the mid never falls below the arbitrage bound.
    """

    def tick(p: np.ndarray) -> np.ndarray:
        return np.where(p < 3.0, 0.01, 0.05)

    half = np.maximum(spread / 2.0, 0.005)
    raw_bid, raw_ask = theo - half, theo + half
    bid = np.maximum(0.0, np.floor(raw_bid / tick(raw_bid) + 1e-9) * tick(raw_bid))
    ask = np.ceil(raw_ask / tick(raw_ask) - 1e-9) * tick(raw_ask)
    need = 2.0 * lower - bid  # mid >= lower  <=>  ask >= 2 * lower - bid
    ask = np.where(ask < need, np.ceil(need / tick(need) - 1e-9) * tick(need), ask)
    ask = np.maximum(ask, bid + tick(bid))
    return np.round(bid, 2), np.round(ask, 2)


def _is_monthly(expiry: date) -> bool:
    """A third-Friday expiry (or the Thursday before it when that Friday is a holiday)."""
    friday = expiry + timedelta(days=(4 - expiry.weekday()) % 7)
    return 15 <= friday.day <= 21


def generate_panel(
    seed: int, n_symbols: int, n_days: int, end: date | None = None, dtype: type = np.float32
) -> Panel:
    """A (n_days x n_symbols) panel of simulated daily bars ending at ``end`` (default 2026-06-30)."""
    market = SimMarket(seed=seed, n_symbols=n_symbols)
    days = calendar.sessions_back(end or DEFAULT_PANEL_END, n_days)
    return market.daily_bars(days[0].astype(object), days[-1].astype(object), dtype=dtype)
