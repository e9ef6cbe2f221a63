"""Record each scanned candidate's 30-day at-the-money implied volatility from its chain snapshot, daily,
into the ``ivhistory`` table, so IV rank becomes known on sources without an IV series (Massive).

ATM IV per expiry: the IV at the underlying price, linearly interpolated in strike between the two
strikes around it (calls and puts averaged where both are quoted). The 30-day value interpolates total
variance (sigma^2 * T) linearly in T between the expiries around 30 days, the way VIX-style constant-
maturity vols are built; outside the listed range the nearest expiry's ATM IV is used. The provider's IV
is taken where it has one, else ours (``calc_iv`` from ``chain.enrich``).

IV rank needs ``ivrank.MIN_PERIODS`` (20) recorded sessions before it is known, and a full year (252) for
the rank to span the usual window.

On Massive every chain fetched (a signal's candidate band) records its day's value
(``record_fetched_chain_iv``, called by the adapter), so a signal whose build stops early still counts; a
chain that does not bracket the underlying price at some expiry (one strike) tells nothing and is skipped.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import Session, select

from engine.models import IvHistory
from engine.options.ivrank import MIN_PERIODS

__all__ = ["MIN_PERIODS", "TARGET_DAYS", "atm_iv_30d", "brackets_spot", "record_chain_iv",
           "record_fetched_chain_iv"]

TARGET_DAYS = 30


def _iv_column(chain: pd.DataFrame) -> np.ndarray:
    iv = pd.to_numeric(chain["iv"], errors="coerce").to_numpy(dtype=np.float64)
    if "calc_iv" in chain:
        ours = pd.to_numeric(chain["calc_iv"], errors="coerce").to_numpy(dtype=np.float64)
        iv = np.where(np.isfinite(iv) & (iv > 0), iv, ours)
    return iv


def _atm_for_expiry(strikes: np.ndarray, ivs: np.ndarray, spot: float) -> float:
    ok = np.isfinite(strikes) & np.isfinite(ivs) & (ivs > 0)
    if not ok.any():
        return math.nan
    frame = pd.DataFrame({"k": strikes[ok], "iv": ivs[ok]}).groupby("k")["iv"].mean().sort_index()
    k, v = frame.index.to_numpy(dtype=np.float64), frame.to_numpy(dtype=np.float64)
    if spot <= k[0]:
        return float(v[0]) if k.size == 1 or spot >= k[0] * 0.9 else math.nan
    if spot >= k[-1]:
        return float(v[-1]) if k.size == 1 or spot <= k[-1] * 1.1 else math.nan
    return float(np.interp(spot, k, v))


def atm_iv_30d(chain: pd.DataFrame, target_days: int = TARGET_DAYS) -> float:
    """The 30-day interpolated ATM IV of a normalised chain (NaN when it cannot be told)."""
    if chain is None or chain.empty:
        return math.nan
    spot = pd.to_numeric(chain["underlying_price"], errors="coerce").dropna()
    if spot.empty or not spot.iloc[0] > 0:
        return math.nan
    s = float(spot.iloc[0])
    dte = pd.to_numeric(chain["dte"], errors="coerce").to_numpy(dtype=np.float64)
    strikes = pd.to_numeric(chain["strike"], errors="coerce").to_numpy(dtype=np.float64)
    ivs = _iv_column(chain)
    points = []
    for d in sorted({float(x) for x in dte[np.isfinite(dte) & (dte > 0)]}):
        mask = dte == d
        atm = _atm_for_expiry(strikes[mask], ivs[mask], s)
        if math.isfinite(atm):
            points.append((d, atm))
    if not points:
        return math.nan
    days = np.array([p[0] for p in points])
    vols = np.array([p[1] for p in points])
    if target_days <= days[0]:
        return float(vols[0])
    if target_days >= days[-1]:
        return float(vols[-1])
    i = int(np.searchsorted(days, target_days))
    (t1, v1), (t2, v2) = (days[i - 1], vols[i - 1]), (days[i], vols[i])
    w1, w2 = v1 * v1 * t1, v2 * v2 * t2
    var = w1 + (w2 - w1) * (target_days - t1) / (t2 - t1)
    return float(math.sqrt(var / target_days))


def record_chain_iv(session: Session, symbol: str, chain: pd.DataFrame, trade_date: date, source: str) -> float:
    """Store today's 30-day ATM IV for ``symbol`` (once per day and source; a later snapshot the same day
    replaces it). Returns the value (NaN when the chain cannot tell; nothing is stored then)."""
    iv = atm_iv_30d(chain)
    if not math.isfinite(iv):
        return iv
    row = session.exec(select(IvHistory).where(IvHistory.symbol == symbol, IvHistory.trade_date == trade_date,
                                               IvHistory.source == source)).first()
    row = row or IvHistory(symbol=symbol, trade_date=trade_date, source=source, atm_iv=iv)
    row.atm_iv = iv
    session.add(row)
    session.flush()
    return iv


def brackets_spot(chain: pd.DataFrame) -> bool:
    """Some expiry quotes strikes on both sides of the underlying price (so its ATM IV is interpolated,
    not one strike's IV standing in for the money)."""
    if chain is None or chain.empty:
        return False
    spot = pd.to_numeric(chain["underlying_price"], errors="coerce").dropna()
    if spot.empty:
        return False
    s = float(spot.iloc[0])
    strikes = pd.to_numeric(chain["strike"], errors="coerce")
    by_expiry = pd.DataFrame({"e": chain["expiry"], "k": strikes}).groupby("e")["k"]
    return bool(((by_expiry.min() <= s) & (by_expiry.max() >= s)).any())


def record_fetched_chain_iv(db: Any, symbol: str, chain: pd.DataFrame, trade_date: date, source: str) -> float:
    """``record_chain_iv`` for a chain a source just fetched, in its own short transaction (call it with
    no transaction open). NaN and nothing stored when the chain does not bracket the money."""
    if not brackets_spot(chain):
        return math.nan
    from engine.db import session_scope

    with session_scope(db) as session:
        return record_chain_iv(session, symbol, chain, trade_date, source)
