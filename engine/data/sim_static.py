"""The simulated market's fixed parts: its constants, counter-based randomness and static universe
(tickers, names, sectors, volatility and dividend parameters per symbol).

Split out of ``sim.py`` along its seams (static universe, daily bars and intraday paths, option chains);
``engine.data.sim`` re-exports the public names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
from numba import njit

from engine.data import calendar

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


def _hash_uniform(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform(0, 1) values, one per broadcast element of ``keys`` (scalars and 1-D arrays): a keyed
    splitmix64 chain. Compiled, as a venue quoting one contract hashes a handful of keys, where numpy's
    per-call overhead was most of the quote's cost (issue 11)."""
    arrays = [np.asarray(k, dtype=np.int64) for k in keys]
    if any(a.ndim > 1 for a in arrays):
        raise ValueError(f"keys: scalars or 1-D arrays, got shapes {[a.shape for a in arrays]}")
    sizes = [a.size for a in arrays if a.ndim == 1]
    n = max(sizes, default=1)
    matrix = np.empty((len(arrays), n), dtype=np.int64)
    for row, a in zip(matrix, arrays, strict=True):
        row[:] = a  # broadcasts a scalar or a length-1 array; a length mismatch raises, as numpy would
    u = _uniform_chain(np.uint64((seed & _MASK64) ^ (stream << 48)), matrix)
    return u if sizes else u.reshape(())


@njit(nogil=True, cache=True)
def _mix(x: np.uint64) -> np.uint64:  # the splitmix64 finaliser
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(nogil=True, cache=True)
def _uniform_chain(start: np.uint64, keys: np.ndarray) -> np.ndarray:
    out = np.empty(keys.shape[1], dtype=np.float64)
    for j in range(keys.shape[1]):
        h = _mix(start)
        for k in range(keys.shape[0]):
            h = _mix(h ^ np.uint64(keys[k, j]))
        out[j] = (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)
    return out


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
