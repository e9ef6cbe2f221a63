"""Option structures: legs, prices, risk, payoff and model value.

Units (stated once, used everywhere):
- leg prices, strikes, premiums, max loss/profit and breakevens *per share* are ``Decimal`` dollars;
  the ``*_per_contract`` variants multiply by the contract multiplier (100) and are exact cents;
- a positive net price is a debit (we pay), a negative one a credit (we receive);
- ``mid`` prices every leg at its mid; ``natural`` buys at the ask and sells at the bid;
- greeks per leg are per share (theta per calendar day, vega per vol point); ``net_greeks()`` sums
  qty x greek per share, ``net_greeks(per_contract=True)`` multiplies by 100 (dollar delta per $1 of
  underlying move for one structure, etc.);
- ``payoff_at_expiry`` and ``value_today`` return profit and loss (value minus the entry net price) as
  float arrays, per contract (x100) unless ``per_contract=False``.

Max loss and max profit are read off the piecewise-linear expiry payoff at its kinks (0 and every
strike) and its slope beyond the last strike, so they hold for any combination of legs; ``inf`` marks
an unlimited side.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from engine.options.occ import parse_occ
from engine.options.pricing import option_price
from engine.portfolio.accounting import cents, intrinsic

__all__ = [
    "MULTIPLIER",
    "QuoteLeg",
    "Structure",
    "bull_put_credit_spread",
    "call_debit_spread",
    "covered_call",
    "iron_condor",
    "long_call",
    "long_put",
    "stock_leg",
]

MULTIPLIER = 100
Basis = Literal["mid", "natural"]
_INF = Decimal("Infinity")
_PRICE_QUANTUM = Decimal("0.0001")  # quotes below $1 can trade in 1/100 cent; kills float noise


def _price_of(x: Any) -> Decimal:
    """A quoted price as Decimal: floats are rounded to 1/100 cent first (29.075 -> Decimal('29.075'))."""
    if isinstance(x, Decimal):
        return x
    f = float(x)
    if not math.isfinite(f):
        return Decimal("NaN")
    return Decimal(str(round(f, 4))).quantize(_PRICE_QUANTUM).normalize() + Decimal(0)


def _f(row: Mapping[str, Any], key: str, fallback: str | None = None) -> float:
    v = row.get(key, math.nan)
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) and fallback is not None:
        return _f(row, fallback)
    return v


def _deliverable(row: Mapping[str, Any]) -> int:
    """The row's shares per contract; a chain that does not say (the simulated market) has standard ones."""
    v = _f(row, "shares_per_contract")
    return int(v) if math.isfinite(v) and v > 0 else MULTIPLIER


@dataclass(frozen=True)
class QuoteLeg:
    """One leg: ``qty`` is the signed ratio (+1 bought, -1 sold). ``right`` 'C', 'P' or 'S' (stock,
    quantity in contracts' worth of shares: +1 = 100 shares)."""

    occ_symbol: str
    right: str
    strike: Decimal | None
    expiry: date | None
    qty: int
    bid: Decimal
    ask: Decimal
    iv: float = math.nan
    delta: float = math.nan
    gamma: float = math.nan
    theta: float = math.nan
    vega: float = math.nan
    dte: float = math.nan
    # shares one contract delivers (Massive ``shares_per_contract``; an OCC-adjusted contract's differ from
    # 100). Premium and strike stay x 100 per contract; only the exercise value per share changes.
    deliverable: int = MULTIPLIER

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    def price(self, basis: Basis) -> Decimal:
        """What this leg costs per share on entry (positive = pay) at ``basis``."""
        if basis == "mid":
            unit = self.mid
        elif basis == "natural":
            unit = self.ask if self.qty > 0 else self.bid
        else:
            raise ValueError(f"basis must be 'mid' or 'natural': {basis!r}")
        return unit * self.qty

    @classmethod
    def from_row(cls, row: Mapping[str, Any], qty: int) -> QuoteLeg:
        """A leg from a normalised chain row (provider iv/greeks, else our calc_* ones)."""
        if hasattr(row, "to_dict"):
            row = row.to_dict()
        sym = parse_occ(str(row["occ_symbol"]))
        expiry = row.get("expiry") or sym.expiry
        return cls(
            occ_symbol=str(row["occ_symbol"]), right=str(row.get("right") or sym.right),
            strike=_price_of(row.get("strike", sym.strike)), expiry=expiry, qty=int(qty),
            bid=_price_of(row["bid"]), ask=_price_of(row["ask"]),
            iv=_f(row, "iv", "calc_iv"), delta=_f(row, "delta", "calc_delta"),
            gamma=_f(row, "gamma", "calc_gamma"), theta=_f(row, "theta", "calc_theta"),
            vega=_f(row, "vega", "calc_vega"), dte=_f(row, "dte"), deliverable=_deliverable(row),
        )


def stock_leg(symbol: str, price: float | Decimal, qty: int = 1, *, bid=None, ask=None) -> QuoteLeg:
    """Shares as a leg: qty +1 = one contract's worth (100 shares); bid/ask default to ``price``."""
    p = _price_of(price)
    return QuoteLeg(occ_symbol=symbol, right="S", strike=None, expiry=None, qty=int(qty),
                    bid=_price_of(bid) if bid is not None else p, ask=_price_of(ask) if ask is not None else p,
                    delta=1.0, gamma=0.0, theta=0.0, vega=0.0)


@dataclass(frozen=True)
class Structure:
    kind: str
    underlying: str
    legs: tuple[QuoteLeg, ...]
    underlying_price: float = math.nan
    multiplier: int = MULTIPLIER
    notes: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------ prices

    def net_price(self, basis: Basis = "mid") -> Decimal:
        """Net entry price per share: positive = debit, negative = credit."""
        return sum((leg.price(basis) for leg in self.legs), Decimal(0))

    def net_price_per_contract(self, basis: Basis = "mid") -> Decimal:
        return cents(self.net_price(basis) * self.multiplier)

    @property
    def net_debit_mid(self) -> Decimal:
        return self.net_price("mid")

    @property
    def net_debit_natural(self) -> Decimal:
        return self.net_price("natural")

    @property
    def is_credit(self) -> bool:
        return self.net_price("mid") < 0

    # ------------------------------------------------------------------ expiry payoff (exact)

    def _strikes(self) -> list[Decimal]:
        """Where each leg's exercise value starts: strike x 100 / deliverable (the strike when standard)."""
        return sorted({leg.strike * MULTIPLIER / leg.deliverable for leg in self.legs if leg.strike is not None})

    def _value_at(self, s: Decimal) -> Decimal:
        """Exact expiry value per share of the legs at underlying price ``s`` (no premium)."""
        total = Decimal(0)
        for leg in self.legs:
            if leg.right == "S":
                total += leg.qty * s
            else:
                total += leg.qty * intrinsic(leg.right, leg.strike, s, leg.deliverable)
        return total

    def _slope_above(self) -> Decimal:
        """d(value)/d(s) beyond the highest strike, in shares per share."""
        return sum((leg.qty * Decimal(leg.deliverable if leg.right == "C" else MULTIPLIER) / MULTIPLIER
                    for leg in self.legs if leg.right in ("S", "C")), Decimal(0))

    def _pnl_points(self, basis: Basis) -> list[tuple[Decimal, Decimal]]:
        cost = self.net_price(basis)
        return [(s, self._value_at(s) - cost) for s in [Decimal(0), *self._strikes()]]

    def max_profit(self, basis: Basis = "mid") -> Decimal:
        """Per share; Decimal('Infinity') when unlimited."""
        if self._slope_above() > 0:
            return _INF
        return max(p for _, p in self._pnl_points(basis))

    def max_loss(self, basis: Basis = "mid") -> Decimal:
        """Per share, as a positive number; Decimal('Infinity') when unlimited."""
        if self._slope_above() < 0:
            return _INF
        return max(-min(p for _, p in self._pnl_points(basis)), Decimal(0))

    def max_profit_per_contract(self, basis: Basis = "mid") -> Decimal:
        m = self.max_profit(basis)
        return m if m.is_infinite() else cents(m * self.multiplier)

    def max_loss_per_contract(self, basis: Basis = "mid") -> Decimal:
        m = self.max_loss(basis)
        return m if m.is_infinite() else cents(m * self.multiplier)

    def breakevens(self, basis: Basis = "mid") -> list[Decimal]:
        """Underlying prices at expiry where P&L crosses zero (exact, per the chosen basis)."""
        pts = self._pnl_points(basis)
        out: list[Decimal] = []
        for (s0, p0), (s1, p1) in itertools.pairwise(pts):
            if p0 == 0:
                out.append(s0)
            elif (p0 < 0 < p1) or (p1 < 0 < p0):
                out.append(s0 + (s1 - s0) * (-p0) / (p1 - p0))
        s_last, p_last = pts[-1]
        slope = self._slope_above()
        if p_last == 0 and (not out or out[-1] != s_last):
            out.append(s_last)
        elif slope != 0 and (p_last < 0 < slope or slope < 0 < p_last):
            out.append(s_last + (-p_last) / slope)
        return [b.normalize() + Decimal(0) for b in out]

    # ------------------------------------------------------------------ analytics (float)

    def net_greeks(self, per_contract: bool = False) -> dict[str, float]:
        """Sum of qty x leg greek: per share, or x multiplier per structure when ``per_contract``."""
        scale = self.multiplier if per_contract else 1
        return {g: float(sum(leg.qty * getattr(leg, g) for leg in self.legs) * scale)
                for g in ("delta", "gamma", "theta", "vega")}

    def payoff_at_expiry(self, prices, basis: Basis = "mid", per_contract: bool = True) -> np.ndarray:
        """P&L at expiry for underlying ``prices`` (entry at ``basis``)."""
        s = np.asarray(prices, dtype=np.float64)
        value = np.zeros_like(s)
        for leg in self.legs:
            if leg.right == "S":
                value = value + leg.qty * s
            elif leg.right == "C":
                value = value + leg.qty * np.maximum(s - float(leg.strike), 0.0)
            else:
                value = value + leg.qty * np.maximum(float(leg.strike) - s, 0.0)
        pnl = value - float(self.net_price(basis))
        return pnl * (self.multiplier if per_contract else 1)

    def value_today(self, prices, days_forward: float = 0, *, r: float, q: float = 0.0,
                    basis: Basis = "mid", per_contract: bool = True) -> np.ndarray:
        """Model P&L ``days_forward`` calendar days from now with the underlying at ``prices``: every
        option leg priced at its own IV with T = (dte - days_forward) / 365 (intrinsic at 0), by the same
        American model its IV was read with (``pricing.option_price``; BSM where early exercise is worthless)."""
        s = np.asarray(prices, dtype=np.float64)
        value = np.zeros_like(s)
        for leg in self.legs:
            if leg.right == "S":
                value = value + leg.qty * s
                continue
            if not math.isfinite(leg.dte) or not math.isfinite(leg.iv):
                raise ValueError(f"{leg.occ_symbol}: value_today needs the leg's dte and iv")
            t = max(leg.dte - days_forward, 0.0) / 365.0
            value = value + leg.qty * option_price(s, float(leg.strike), t, r, q, leg.iv, leg.right == "C")
        pnl = value - float(self.net_price(basis))
        return pnl * (self.multiplier if per_contract else 1)

    def summary(self, basis: Basis = "mid") -> dict[str, Any]:
        return {
            "kind": self.kind,
            "underlying": self.underlying,
            "legs": [(leg.occ_symbol, leg.right, leg.qty, None if leg.strike is None else str(leg.strike),
                      None if leg.expiry is None else leg.expiry.isoformat()) for leg in self.legs],
            "net_price_mid": str(self.net_price("mid")),
            "net_price_natural": str(self.net_price("natural")),
            "net_price_per_contract": str(self.net_price_per_contract(basis)),
            "max_loss_per_contract": str(self.max_loss_per_contract(basis)),
            "max_profit_per_contract": str(self.max_profit_per_contract(basis)),
            "breakevens": [str(b) for b in self.breakevens(basis)],
            "net_greeks_per_contract": self.net_greeks(per_contract=True),
        }


# --------------------------------------------------------------------------- constructors


def _leg(x: QuoteLeg | Mapping[str, Any], qty: int) -> QuoteLeg:
    if isinstance(x, QuoteLeg):
        return x if x.qty == qty else replace(x, qty=qty)
    return QuoteLeg.from_row(x, qty)


def _underlying(x: QuoteLeg | Mapping[str, Any]) -> str:
    if isinstance(x, QuoteLeg):
        return parse_occ(x.occ_symbol).root if x.right != "S" else x.occ_symbol
    return str(x.get("underlying") or parse_occ(str(x["occ_symbol"])).root)


def _spot(rows: Sequence[QuoteLeg | Mapping[str, Any]]) -> float:
    for x in rows:
        if not isinstance(x, QuoteLeg):
            v = _f(dict(x), "underlying_price")
            if math.isfinite(v):
                return v
    return math.nan


def _check(kind: str, legs: Sequence[QuoteLeg], rights: str, same_expiry: bool = True) -> None:
    got = "".join(leg.right for leg in legs)
    if got != rights:
        raise ValueError(f"{kind} needs legs {rights!r}, got {got!r}")
    expiries = {leg.expiry for leg in legs if leg.right != "S"}
    if same_expiry and len(expiries) > 1:
        raise ValueError(f"{kind} legs must share one expiry, got {sorted(expiries)}")


def long_call(call) -> Structure:
    leg = _leg(call, +1)
    _check("long_call", [leg], "C")
    return Structure("long_call", _underlying(call), (leg,), _spot([call]))


def long_put(put) -> Structure:
    leg = _leg(put, +1)
    _check("long_put", [leg], "P")
    return Structure("long_put", _underlying(put), (leg,), _spot([put]))


def call_debit_spread(long_leg, short_leg) -> Structure:
    """Buy the lower-strike call, sell the higher-strike call, same expiry."""
    legs = (_leg(long_leg, +1), _leg(short_leg, -1))
    _check("call_debit_spread", legs, "CC")
    if not legs[0].strike < legs[1].strike:
        raise ValueError(f"call_debit_spread: long strike {legs[0].strike} must be below short {legs[1].strike}")
    return Structure("call_debit_spread", _underlying(long_leg), legs, _spot([long_leg, short_leg]))


def bull_put_credit_spread(short_leg, long_leg) -> Structure:
    """Sell the higher-strike put, buy the lower-strike put, same expiry."""
    legs = (_leg(short_leg, -1), _leg(long_leg, +1))
    _check("bull_put_credit_spread", legs, "PP")
    if not legs[1].strike < legs[0].strike:
        raise ValueError(f"bull_put_credit_spread: long strike {legs[1].strike} must be below short {legs[0].strike}")
    return Structure("bull_put_credit_spread", _underlying(short_leg), legs, _spot([short_leg, long_leg]))


def covered_call(stock_price: float | Decimal | QuoteLeg, short_call, *, symbol: str | None = None) -> Structure:
    """100 shares (bought at ``stock_price``, or an existing holding's price) and one short call."""
    call = _leg(short_call, -1)
    name = symbol or _underlying(short_call)
    stock = stock_price if isinstance(stock_price, QuoteLeg) else stock_leg(name, stock_price)
    _check("covered_call", [stock, call], "SC")
    spot = float(stock.mid)
    return Structure("covered_call", name, (stock, call), spot)


def iron_condor(long_put_leg, short_put_leg, short_call_leg, long_call_leg) -> Structure:
    """Long put < short put <= short call < long call, one expiry: a credit, neutral structure."""
    legs = (_leg(long_put_leg, +1), _leg(short_put_leg, -1), _leg(short_call_leg, -1), _leg(long_call_leg, +1))
    _check("iron_condor", legs, "PPCC")
    k = [leg.strike for leg in legs]
    if not (k[0] < k[1] <= k[2] < k[3]):
        raise ValueError(f"iron_condor strikes must satisfy long put < short put <= short call < long call: {k}")
    rows = [long_put_leg, short_put_leg, short_call_leg, long_call_leg]
    return Structure("iron_condor", _underlying(short_put_leg), legs, _spot(rows))
