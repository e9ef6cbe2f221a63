"""Backfill of the daily 30-day ATM IV from Massive's historical option aggregates, so IV rank is known
without waiting 20 sessions of recorded chains (``engine.options.ivrecord``).

Per symbol, within a request budget:

1. one listing of its call contracts (``list_options_contracts``, expired ones included) with expiries
   from a week after the first session to 60 days after the last, strikes within +-15% of its closes;
2. per session (the underlying's stored close S): the expiry nearest below 30 days (at least 7) and the
   first above, and in each the two listed strikes around S;
3. one ``list_aggs`` per distinct contract over the sessions it is needed for: its daily close;
4. each close inverted with our pricer (American, the risk-free rate, the symbol's dividend yield) and
   the day's value interpolated to 30 days exactly as a live chain's (``ivrecord.atm_iv_30d``).

An option's daily close is its last trade, which can be older than the underlying's close on a thin
contract: a backfilled value is noisier than a recorded one. Sessions already in ``ivhistory`` are not
recomputed; a session whose contracts did not fit in the budget is left for the next run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import select

from engine.data import calendar
from engine.data.massive_bars import last_completed_session
from engine.data.massive_http import SOURCE
from engine.models import IvHistory

MIN_DTE, TARGET_DTE, MAX_DTE = 7, 30, 60
STRIKE_BAND = 0.15  # strikes listed within +-15% of the closes: the money moves that much in a quarter


@dataclass
class IvBackfillReport:
    symbols: int = 0
    sessions_recorded: int = 0
    sessions_skipped: int = 0  # no close, no contracts around the money, or out of budget
    requests: int = 0
    out_of_budget: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Contract:
    ticker: str
    expiry: date
    strike: float


def _around(strikes: list[float], spot: float) -> list[float]:
    below = [k for k in strikes if k <= spot]
    above = [k for k in strikes if k >= spot]
    return sorted({max(below), min(above)}) if below and above else []


def _choose(contracts: list[_Contract], day: date, spot: float) -> list[_Contract]:
    """The contracts that give ``day``'s 30-day ATM IV: the two strikes around ``spot`` in the expiries
    just below and just above 30 days (one expiry when only one side is listed)."""
    by_expiry: dict[date, list[_Contract]] = defaultdict(list)
    for c in contracts:
        dte = (c.expiry - day).days
        if MIN_DTE <= dte <= MAX_DTE:
            by_expiry[c.expiry].append(c)
    near = [e for e in by_expiry if (e - day).days <= TARGET_DTE]
    far = [e for e in by_expiry if (e - day).days > TARGET_DTE]
    chosen = ([max(near)] if near else []) + ([min(far)] if far else [])
    out = []
    for expiry in chosen:
        strikes = _around(sorted({c.strike for c in by_expiry[expiry]}), spot)
        out += [c for c in by_expiry[expiry] if c.strike in strikes]
    return out


def _contracts(market: Any, symbol: str, first: date, last: date, lo: float, hi: float) -> list[_Contract]:
    out: list[_Contract] = []
    for page in market._pages(
        f"option contracts {symbol}",
        lambda: market._rest.list_options_contracts(
            underlying_ticker=symbol, contract_type="call", expired=True,
            expiration_date_gte=(first + timedelta(days=MIN_DTE)).isoformat(),
            expiration_date_lte=(last + timedelta(days=MAX_DTE)).isoformat(),
            strike_price_gte=lo, strike_price_lte=hi, limit=1000, raw=True),
    ):
        for r in page:
            try:
                if int(r.get("shares_per_contract") or 100) != 100 or r.get("contract_type") != "call":
                    continue  # adjusted contracts price another deliverable
                out.append(_Contract(str(r["ticker"]), date.fromisoformat(r["expiration_date"]),
                                     float(r["strike_price"])))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _day_iv(rows: list[tuple[_Contract, float]], day: date, spot: float, r: float, q: float) -> float:
    from engine.options.ivrecord import atm_iv_30d
    from engine.options.pricing import option_implied_vol_with_reasons

    if not rows:
        return math.nan
    dte = np.array([(c.expiry - day).days for c, _ in rows], dtype=np.float64)
    strikes = np.array([c.strike for c, _ in rows])
    prices = np.array([p for _, p in rows])
    ivs, _ = option_implied_vol_with_reasons(prices, spot, strikes, dte / 365.0, r, q, True)
    chain = pd.DataFrame({"underlying_price": spot, "dte": dte, "strike": strikes, "iv": ivs})
    return atm_iv_30d(chain)


def iv_backfill(market: Any, symbols: list[str], days: int, max_requests: int, r: float) -> IvBackfillReport:
    """Backfill the last ``days`` sessions' ATM IV of ``symbols`` (at most ``max_requests`` requests)."""
    if not 1 <= days <= 504:
        raise ValueError(f"iv-backfill days must be 1..504, got {days}")
    if max_requests < 1:
        raise ValueError(f"max_requests must be >= 1, got {max_requests}")
    if market.db is None or market.store is None:
        raise ValueError("iv-backfill needs the adapter's database and bar store")
    from engine.db import read_scope, session_scope

    report = IvBackfillReport()
    start_requests = market.requests_made
    last = last_completed_session(market._now())
    sessions = [d.astype(object) for d in calendar.sessions_back(last, days)]

    def spent() -> int:
        return market.requests_made - start_requests

    for symbol in symbols:
        if spent() >= max_requests:
            report.out_of_budget = True
            break
        report.symbols += 1
        with read_scope(market.db) as session:
            have = set(session.exec(select(IvHistory.trade_date).where(
                IvHistory.symbol == symbol, IvHistory.source == SOURCE)).all())
        panel = market.store.load(sessions[0], sessions[-1], [symbol], dtype=np.float64)
        closes = ({d.astype(object): float(c) for d, c in zip(panel.dates, panel.close[:, 0], strict=True)
                   if np.isfinite(c)} if panel.n_symbols else {})
        todo = [d for d in sessions if d in closes and d not in have]
        report.sessions_skipped += len([d for d in sessions if d not in closes and d not in have])
        if not todo:
            continue
        spots = [closes[d] for d in todo]
        listed = _contracts(market, symbol, todo[0], todo[-1], min(spots) * (1 - STRIKE_BAND),
                            max(spots) * (1 + STRIKE_BAND))
        needs = {d: _choose(listed, d, closes[d]) for d in todo}
        wanted: dict[_Contract, list[date]] = defaultdict(list)
        for d, chosen in needs.items():
            for c in chosen:
                wanted[c].append(d)
        q = market.dividend_yield(symbol, todo[-1])
        prices: dict[_Contract, dict[date, float]] = {}
        for c, on in sorted(wanted.items(), key=lambda kv: (kv[0].expiry, kv[0].strike)):
            if spent() >= max_requests:
                report.out_of_budget = True
                break
            table = market._symbol_aggs(c.ticker, min(on), max(on))
            prices[c] = dict(zip(table["date"].to_pylist(), table["close"].to_pylist(), strict=True))
        recorded = []
        for d in todo:
            chosen = needs[d]
            if not chosen or any(c not in prices for c in chosen):
                report.sessions_skipped += 1  # no contracts around the money, or out of budget
                continue
            rows = [(c, prices[c][d]) for c in chosen if d in prices[c] and prices[c][d] > 0]
            iv = _day_iv(rows, d, closes[d], r, q)
            if math.isfinite(iv):
                recorded.append(IvHistory(symbol=symbol, trade_date=d, source=SOURCE, atm_iv=iv))
            else:
                report.sessions_skipped += 1
        if recorded:
            with session_scope(market.db) as session:
                session.add_all(recorded)
            report.sessions_recorded += len(recorded)
    report.requests = spent()
    return report
