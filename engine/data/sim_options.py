"""Option chains of the simulated market: its volatility surface, expiries, strikes and American-model
quotes with open interest and volume (mixed into ``SimMarket``, which provides prices and sessions).

Split out of ``sim.py`` along its seams (static universe, daily bars and intraday paths, option chains);
``engine.data.sim`` re-exports the public names.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from engine.data import calendar
from engine.data.sim_static import _H_IV, _H_OPT, _H_OPT_DAY, RISK_FREE_RATE, _hash_normal
from engine.options.chain import CHAIN_COLUMNS
from engine.options.occ import occ_padded, parse_occ

# strike spacing by the underlying's price: (below this price, this step), else the top step
_STRIKE_STEPS = ((10.0, 0.5), (30.0, 1.0), (120.0, 2.5), (400.0, 5.0))
_TOP_STRIKE_STEP = 10.0

# --------------------------------------------------------------------------- OCC symbols


def occ_symbol(underlying: str, expiry: date, right: str, strike: float) -> str:
    """OCC option symbol (root padded to 6); the unchecked fast path of ``engine.options.occ``."""
    return occ_padded(underlying, expiry, right, strike)


def parse_occ_symbol(symbol: str) -> tuple[str, date, str, float]:
    """(underlying, expiry, right, strike) of an OCC symbol, via ``engine.options.occ.parse_occ``."""
    parsed = parse_occ(symbol)
    return parsed.root, parsed.expiry, parsed.right, float(parsed.strike)



class SimOptions:
    """Volatility surface and option chains (mixed into ``SimMarket``)."""

    # ------------------------------------------------------------------ volatility surface

    def _iv30(self, i: int, s: int, spot: float | None = None) -> float:
        """ATM-forward 30-day IV for session ``s`` with the underlying at ``spot`` (its close if None)."""
        base, close, prev = self._iv30_day(i, s)
        st = self._st
        spot = close if spot is None else spot
        move = math.log(spot / prev) if np.isfinite(prev) and np.isfinite(spot) else 0.0
        leverage = 4.0 if st.is_etf[i] else 1.5
        return float(np.clip(base * math.exp(float(np.clip(-leverage * move, -1.0, 1.0))), 0.05, 3.0))

    def _compute_iv30_day(self, i: int, s: int) -> tuple[float, float, float]:
        """The spot-independent part of ``_iv30``: (base IV, close, previous close) of session ``s``
        (cached per market as ``_iv30_day``: every quote of the day asks)."""
        blk, row, col = self._day(i, s)
        w = min(1.0, (row + 1) / 5.0)  # regime changes feed into IV over a week
        sig = w * float(blk.sigma[col]) + (1.0 - w) * float(blk.sigma_prev[col])
        noise = float(_hash_normal(self.seed, _H_IV, i, s)[()])
        base = sig * (1.0 + self._st.vrp[i]) * math.exp(0.05 * noise - 0.00125)
        return base, float(blk.close[row, col]), float(blk.prev_close[row, col])

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
        self, i: np.ndarray, iv30: np.ndarray, spot: np.ndarray, strikes: np.ndarray, dte: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(implied vol, standardised moneyness ln(K/F) / (atm vol * sqrt(T))) per contract, each on its
        own underlying ``i`` with that underlying's ``iv30`` and ``spot``."""
        st = self._st
        t = dte / 365.0
        iv_long = st.sig_long[i] * (1.0 + st.vrp[i])
        atm = iv_long + (iv30 - iv_long) * np.minimum((30.0 / dte) ** 0.35, 1.8)
        atm = np.maximum(atm, 0.5 * np.minimum(iv30, iv_long))
        fwd = spot * np.exp((RISK_FREE_RATE - st.q[i]) * t)
        x = np.log(strikes / fwd) / (atm * np.sqrt(t))
        xc = np.clip(x, -4.0, 4.0)
        return atm * (1.0 - st.skew[i] * xc + st.smile[i] * xc * xc), x

    # ------------------------------------------------------------------ options

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _expiries(today: date) -> tuple[date, ...]:
        """Weekly Fridays for five weeks and monthly third Fridays for about six months (cached: every
        quote of the day asks)."""
        out = set()
        first_friday = today + timedelta(days=(4 - today.weekday()) % 7 or 7)
        friday = first_friday
        while friday <= today + timedelta(days=190):
            monthly = 15 <= friday.day <= 21
            if monthly or friday <= today + timedelta(days=35):
                out.add(friday if calendar.is_session(friday) else calendar.previous_session(friday))
            friday += timedelta(days=7)
        return tuple(sorted(d for d in out if d > today))

    @staticmethod
    def _strike_step(price: float) -> float:
        for limit, step in _STRIKE_STEPS:
            if price < limit:
                return step
        return _TOP_STRIKE_STEP

    def _chain_strikes(self, ref: float) -> np.ndarray:
        """The strikes a chain lists around ``ref``: the step's grid from 60% to 140% of it."""
        step = self._strike_step(ref)
        lo = max(step, math.ceil(ref * 0.6 / step) * step)
        hi = math.floor(ref * 1.4 / step) * step
        strikes = np.round(np.arange(lo, hi + step / 2, step), 3)
        return strikes if len(strikes) else np.array([max(step, round(ref / step) * step)])

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        """The underlying's option chain at ``at`` in the normalised chain shape (``CHAIN_COLUMNS``)."""
        i = self.symbol_index(underlying)
        ctx = self._option_context(i, at)
        if ctx is None:
            return pd.DataFrame(columns=list(CHAIN_COLUMNS))
        strikes = self._chain_strikes(ctx["ref"])
        expiries = self._expiries(ctx["today"])
        e_grid, k_grid, r_grid = np.meshgrid(np.arange(len(expiries)), strikes, np.array([True, False]),
                                             indexing="ij")
        exp_list = [expiries[j] for j in e_grid.ravel()]
        n = len(exp_list)
        return self._frame(self._price(np.full(n, i), [ctx], np.zeros(n, dtype=np.int64), exp_list,
                                       k_grid.ravel(), r_grid.ravel(), with_greeks=True))

    def _live_contracts(self, occ_symbols: Sequence[str], at: datetime,  # type: ignore[no-untyped-def]
                        *, skip_unknown: bool = False):
        """(root index, contexts, context per contract, expiries, strikes, is_call, symbols) of the
        contracts that have not expired at ``at``; roots without a price at ``at`` are left out, and
        unknown roots too when ``skip_unknown`` (else ``symbol_index`` raises KeyError)."""
        parsed = [(o, *parse_occ_symbol(o)) for o in occ_symbols]
        contexts: list[dict] = []
        slot: dict[str, int | None] = {}
        rows = []
        for occ, root, expiry, right, strike in parsed:
            if root not in slot:
                if skip_unknown and root not in self._index:
                    slot[root] = None
                    continue
                i = self.symbol_index(root)
                ctx = self._option_context(i, at)
                slot[root] = None if ctx is None else len(contexts)
                if ctx is not None:
                    contexts.append({**ctx, "i": i})
            k = slot[root]
            if k is not None and expiry > contexts[k]["today"]:
                rows.append((occ, k, expiry, right == "C", strike))
        group = np.array([r[1] for r in rows], dtype=np.int64)
        index = np.array([contexts[k]["i"] for k in group], dtype=np.int64)
        return (index, contexts, group, [r[2] for r in rows], np.array([r[4] for r in rows], dtype=np.float64),
                np.array([r[3] for r in rows], dtype=bool), [r[0] for r in rows])

    def option_quotes(self, occ_symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Quotes for any contracts (OCC symbols) at ``at``, chain-shaped; a held contract always prices."""
        index, contexts, group, expiries, strikes, calls, _ = self._live_contracts(occ_symbols, at)
        if not len(index):
            return pd.DataFrame(columns=list(CHAIN_COLUMNS))
        return self._frame(self._price(index, contexts, group, expiries, strikes, calls, with_greeks=True))

    def contract_quotes(self, occ_symbols: Sequence[str], at: datetime) -> dict[str, tuple]:
        """``{padded OCC symbol: (bid, ask, volume, open interest, underlying price, listed)}`` at ``at``,
        every underlying priced in one vectorised pass and no frame built: what a venue marking a book
        or checking an order's legs needs. ``listed`` says whether that minute's chain lists the contract
        (a held contract still quotes when its strike has left the chain); expired contracts are absent."""
        index, contexts, group, expiries, strikes, calls, symbols = self._live_contracts(
            occ_symbols, at, skip_unknown=True)
        if not len(index):
            return {}
        q = self._price(index, contexts, group, expiries, strikes, calls, with_greeks=False)
        listed = self._listed(contexts, group, expiries, strikes)
        return {
            occ: (float(b), float(a), int(v), int(oi), float(u), bool(ok))
            for occ, b, a, v, oi, u, ok in zip(symbols, q["bid"], q["ask"], q["volume"], q["open_interest"],
                                                q["underlying_price"], listed, strict=True)
        }

    def _listed(self, contexts: list[dict], group: np.ndarray, expiries: list[date],
                strikes: np.ndarray) -> np.ndarray:
        """Whether each contract is on its chain at that minute (an expiry and strike the chain lists)."""
        listed = np.zeros(len(group), dtype=bool)
        for k, ctx in enumerate(contexts):
            mine = np.flatnonzero(group == k)
            valid = set(self._expiries(ctx["today"]))
            grid = set(self._chain_strikes(ctx["ref"]).tolist())
            listed[mine] = [round(float(strikes[j]), 3) in grid and expiries[j] in valid for j in mine]
        return listed

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


    def _price(self, i: np.ndarray, contexts: list[dict], group: np.ndarray, expiries: list[date],
               strikes: np.ndarray, is_call: np.ndarray, *, with_greeks: bool) -> dict[str, np.ndarray]:
        """Quotes, open interest and volume of contracts on any underlyings in one vectorised pass:
        contract j is on underlying ``i[j]`` priced in ``contexts[group[j]]`` (see ``_option_context``)."""
        # US equity options are American: quotes come from the engine's American model at the symbol's
        # dividend yield, so our own (American) IV of a mid recovers the surface.  The provider greeks
        # are Black-Scholes-Merton at the quoted vol, as vendors commonly publish them; they differ from
        # ours (chain.enrich's calc_*) only where early exercise dominates (deep in the money), and the
        # American greeks would cost six more prices per contract on every chain read.
        from engine.options.pricing import greeks, option_price

        st = self._st

        def per_contract(key: str) -> np.ndarray:
            return np.array([c[key] for c in contexts], dtype=np.float64)[group]

        spot, ref, fraction = per_contract("spot"), per_contract("ref"), per_contract("fraction")
        activity_ref, iv30 = per_contract("activity_ref"), per_contract("iv30")
        activity_s = np.array([c["activity_s"] for c in contexts], dtype=np.int64)[group]
        today = np.array([c["today"].toordinal() for c in contexts], dtype=np.int64)[group]
        activity_day = np.array([c["activity_day"].toordinal() for c in contexts], dtype=np.int64)[group]
        strikes = np.asarray(strikes, dtype=np.float64)
        is_call = np.asarray(is_call, dtype=bool)
        exp_ord = np.array([e.toordinal() for e in expiries], dtype=np.int64)
        dte = exp_ord - today
        t = dte / 365.0
        iv, x = self._surface(i, iv30, spot, strikes, dte.astype(np.float64))
        q, r = st.q[i], RISK_FREE_RATE
        theo = option_price(spot, strikes, t, r, q, iv, is_call)
        disc_s, disc_k = spot * np.exp(-q * t), strikes * np.exp(-r * t)
        # no-arbitrage floor of an American option: the European bound and immediate exercise
        lower = np.maximum(0.0, np.where(is_call, np.maximum(disc_s - disc_k, spot - strikes),
                                         np.maximum(disc_k - disc_s, strikes - spot)))

        liquidity = 1e9 / st.adv[i]
        frac = np.clip(0.012 * liquidity**0.25, 0.008, 0.30)
        absolute = 0.01 + 0.05 * np.clip(np.log10(liquidity) / 4.0, 0.0, 1.0)
        # market makers quote time value in vol terms (wider away from the money) and intrinsic
        # value almost at the stock's spread
        time_value = np.maximum(theo - lower, 0.0)
        spread = (time_value * (1.0 + 0.6 * np.minimum(np.abs(x), 6.0)) + 0.15 * lower) * frac + absolute
        bid, ask = _option_quote(theo, lower, spread)

        # Open interest is fixed for a calendar day (set from the previous close); a session's
        # volume is fixed by that session (set from its previous close and its own date), grows
        # through the session, and is what a pre-market snapshot still shows the next morning.
        k_milli = np.round(strikes * 1000).astype(np.int64)
        right_key = is_call.astype(np.int64)
        oi_atm = np.clip(1500.0 * (st.adv[i] / 2e7) ** 0.7, 5.0, 250000.0)
        monthly = np.array([_is_monthly(e) for e in expiries], dtype=bool)
        weekly_share = np.where(monthly | st.is_etf[i], 1.0, 0.35)
        step = _strike_steps(ref)
        on_grid = np.mod(strikes + 1e-6, 2 * step) < 2e-6
        vol_long = st.sig_long[i] * (1.0 + st.vrp[i])

        def profile(centre: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            z = np.log(strikes / centre) / (vol_long * np.sqrt(np.maximum(days, 1) / 365.0))
            otm = np.where(is_call, strikes >= centre, strikes <= centre)
            bell = np.exp(-0.5 * (np.minimum(np.abs(z), 10.0) / 1.3) ** 2)
            return bell * weekly_share / (1.0 + np.maximum(days, 0) / 150.0), otm

        oi_shape, oi_otm = profile(ref, dte.astype(np.float64))
        oi_noise = np.exp(0.6 * _hash_normal(self.seed, _H_OPT, i, exp_ord, k_milli, right_key) - 0.18)
        open_interest = np.floor(
            oi_atm * oi_shape * np.where(oi_otm, 1.0, 0.5) * np.where(on_grid, 1.3, 1.0) * oi_noise
        )
        vol_shape, vol_otm = profile(activity_ref, (exp_ord - activity_day).astype(np.float64))
        day_noise = np.exp(
            0.7 * _hash_normal(self.seed, _H_OPT_DAY, i, exp_ord, k_milli, right_key, activity_s)
            + 0.4 * _hash_normal(self.seed, _H_OPT_DAY, i, activity_s) - 0.3
        )
        full_day = 0.12 * oi_atm * vol_shape * np.where(vol_otm, 1.0, 0.4) * day_noise
        out = {
            "i": i, "expiry": expiries, "dte": dte, "strike": strikes, "is_call": is_call, "bid": bid,
            "ask": ask, "volume": np.floor(full_day * fraction).astype(np.int64),
            "open_interest": open_interest.astype(np.int64), "iv": iv, "underlying_price": spot,
            "activity_s": activity_s, "exp_ord": exp_ord, "k_milli": k_milli, "theo": theo,
        }
        if with_greeks:
            out["greeks"] = greeks(spot, strikes, t, r, q, iv, is_call)
            out["at"] = [contexts[k]["at"] for k in group]
        return out

    def _frame(self, p: dict[str, np.ndarray]) -> pd.DataFrame:
        """Priced contracts (``_price``) in the normalised chain shape (``CHAIN_COLUMNS``)."""
        i, bid, ask, g = p["i"], p["bid"], p["ask"], p["greeks"]
        half = (ask - bid) / 2.0
        last_noise = _hash_normal(self.seed, _H_OPT_DAY, i, p["exp_ord"], p["k_milli"],
                                  p["is_call"].astype(np.int64), p["activity_s"], 7)
        last = np.clip(np.round((p["theo"] + 0.5 * half * last_noise) / 0.01) * 0.01, bid, ask)
        names = self._st.symbols[i].astype(str)
        rights = np.where(p["is_call"], "C", "P")
        return pd.DataFrame(
            {
                "underlying": names,
                "occ_symbol": [occ_symbol(s, e, rr, k)
                               for s, e, rr, k in zip(names, p["expiry"], rights, p["strike"], strict=True)],
                "expiry": p["expiry"],
                "dte": p["dte"].astype(int),
                "strike": p["strike"],
                "right": rights,
                "bid": bid,
                "ask": ask,
                "mid": np.round((bid + ask) / 2.0, 3),
                "last": np.round(last, 2),
                "volume": p["volume"],
                "open_interest": p["open_interest"],
                "iv": p["iv"],
                "delta": g.delta,
                "gamma": g.gamma,
                "theta": g.theta,
                "vega": g.vega,
                "underlying_price": p["underlying_price"],
                "quote_time": p["at"],
                "source": "sim",
            },
            columns=list(CHAIN_COLUMNS),
        )



def _strike_steps(ref: np.ndarray) -> np.ndarray:
    """``SimOptions._strike_step`` of each reference price (the same table)."""
    return np.select([ref < limit for limit, _ in _STRIKE_STEPS], [step for _, step in _STRIKE_STEPS],
                     _TOP_STRIKE_STEP)


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
