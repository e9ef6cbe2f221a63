"""Positions from fills: quantity, average entry, realized P&L, marks. Exact to the cent (Decimal).

A position is one structure (a long call, a debit spread...) held in ``quantity`` units. Prices per unit
are in quote terms (premium per share; see engine.execution.ports), dollars = price x multiplier x units.

Accounting identity the tests hold us to: starting cash + realized + unrealized == cash + market value.
Commissions and fees are realized when paid (cash leaves the account then), so an open position's
realized P&L is its fees so far, and its unrealized P&L is (mark - entry) x multiplier x quantity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from engine.execution.ports import OPTION_MULTIPLIER, STANDARD_DELIVERABLE, AssetType, Leg

CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """The one money rounding: to the cent, half-even (banker's rounding, no drift over many rows)."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def structure_multiplier(legs: Sequence[Leg]) -> int:
    """Dollars per unit of quote price: 100 for anything with an option leg, 1 for plain stock."""
    return OPTION_MULTIPLIER if any(leg.asset is AssetType.option for leg in legs) else 1


def leg_cash(leg: Leg, quantity: int, price: Decimal) -> Decimal:
    """Cash of ``quantity`` units of one leg traded at ``price`` (quote terms), before commission and fees:
    buying pays (negative), selling receives."""
    return -(leg.sign * price * quantity * leg.multiplier)


def share_strike(strike: Decimal, deliverable: int = STANDARD_DELIVERABLE) -> Decimal:
    """What one delivered share costs at exercise: the strike for a standard contract, strike x 100 /
    deliverable for an adjusted one (the aggregate exercise price stays strike x 100). Where the
    contract's payoff starts, in the underlying's price."""
    return strike * OPTION_MULTIPLIER / deliverable


def intrinsic(right: str | None, strike: Decimal, spot: Decimal, deliverable: int = STANDARD_DELIVERABLE) -> Decimal:
    """Exercise value of one option in quote terms (dollars = this x ``OPTION_MULTIPLIER``).

    An adjusted contract delivers ``deliverable`` shares for the strike x 100, so per quote point it is
    worth deliverable/100 x spot - strike (a call) or strike - deliverable/100 x spot (a put)."""
    shares = spot * deliverable / OPTION_MULTIPLIER
    return max(Decimal("0"), shares - strike if right == "C" else strike - shares)


def delivery(right: str | None, strike: Decimal, contracts: int,
             deliverable: int = STANDARD_DELIVERABLE) -> tuple[int, Decimal]:
    """(signed shares, signed cash) when ``contracts`` (signed: + long exercised, - short assigned) of an
    option settle in the money: a long call / short put takes the deliverable and pays strike x 100 per
    contract, a long put / short call the reverse. The aggregate exercise price is strike x 100 whatever
    the deliverable (OCC), so an adjusted contract's shares cost strike x 100 / deliverable each."""
    shares = (1 if right == "C" else -1) * contracts * deliverable
    cash = -(1 if right == "C" else -1) * contracts * strike * OPTION_MULTIPLIER
    return shares, cash


def deliverable_problem(legs: Sequence[Leg]) -> str | None:
    """Why these legs cannot form one order (None when they can): every option leg of a structure must
    deliver the same shares per contract, or its spread would not hedge (a 100-share long call does not
    cover a 150-share short call) and the margin and payoff rules would not hold."""
    found = sorted({leg.deliverable for leg in legs if leg.asset is AssetType.option})
    if len(found) > 1:
        return f"legs mix deliverables ({', '.join(str(d) for d in found)} shares per contract)"
    return None


def net_coefficient(leg: Leg, structure_mult: int) -> Decimal:
    """How much one unit of the leg's price moves the structure's net price per unit."""
    return Decimal(leg.sign * leg.ratio * leg.multiplier) / structure_mult


def net_price(legs: Sequence[Leg], prices: Mapping[str, Decimal]) -> Decimal:
    """Net debit per unit in quote terms for the given per-instrument prices (+ pay, - receive)."""
    mult = structure_multiplier(legs)
    return sum((net_coefficient(leg, mult) * prices[leg.instrument] for leg in legs), Decimal("0"))


@dataclass
class Book:
    """The money side of one position, updated by executions of its opening and closing orders."""

    multiplier: int
    quantity: int = 0
    entry_price: Decimal = Decimal("0")  # average net debit per unit of the open quantity
    realized: Decimal = Decimal("0")

    def open(self, units: int, price: Decimal, fees: Decimal) -> None:
        """Add ``units`` bought at net ``price`` per unit (weighted-average entry)."""
        if units <= 0:
            raise ValueError(f"open units must be positive, got {units}")
        cost = self.entry_price * self.quantity + price * units
        self.quantity += units
        self.entry_price = cost / self.quantity
        self.realized -= fees

    def close(self, units: int, price: Decimal, fees: Decimal) -> Decimal:
        """Remove ``units`` closed at net ``price`` per unit (negative = credit received).

        Returns the realized P&L of this execution, fees included."""
        if not 0 < units <= self.quantity:
            raise ValueError(f"cannot close {units} units of a position of {self.quantity}")
        # Closing a long structure at -p receives p. Money is booked in cents: the closed units' basis is
        # the difference of the open basis before and after, each in cents, so the pieces of a position
        # closed in several executions add up to its whole cost exactly (the average entry price itself
        # has more digits than a cent, e.g. 3 units bought for $301 in all).
        per_unit = self.entry_price * self.multiplier
        basis = cents(per_unit * self.quantity) - cents(per_unit * (self.quantity - units))
        gross = cents(-price * self.multiplier * units) - basis
        self.quantity -= units
        if self.quantity == 0:
            self.entry_price = Decimal("0")
        pnl = gross - fees
        self.realized += pnl
        return pnl

    def market_value(self, mark: Decimal) -> Decimal:
        return mark * self.multiplier * self.quantity

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.entry_price) * self.multiplier * self.quantity


def cash_flow(price: Decimal, units: int, multiplier: int, fees: Decimal) -> Decimal:
    """Cash change of one execution at net ``price`` per unit: paying a debit is negative."""
    return -(price * multiplier * units) - fees
