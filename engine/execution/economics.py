"""Per-unit economics of an entry order, from its legs and limit price: what the risk gate measures.

One implementation for the order builder (``options.candidates.entry_spec``) and for operator overrides
(``service.override``), so a changed limit or size is measured exactly as a fresh order would be:

- max loss per unit: the worst expiry outcome of the legs bought at ``limit`` (net debit per unit, + pay,
  - receive), read at the payoff's kinks (0 and every strike) and beyond the highest strike. A debit
  structure loses at most what it pays, a credit spread its width minus the credit; an unlimited loss is
  ``Infinity`` (the gate cannot size it);
- buying power per unit: what the broker holds for it, the same number for these defined-risk structures
  (debit paid, or the spread's margin = width - credit);
- fees per unit: opening commission and fees per contract for every option contract of the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.execution.ports import AssetType, Leg
from engine.portfolio.accounting import intrinsic, share_strike, structure_multiplier

INFINITE = Decimal("Infinity")


@dataclass(frozen=True)
class UnitEconomics:
    max_loss_per_unit: Decimal  # dollars per unit of the structure
    buying_power_per_unit: Decimal
    fees_per_unit: Decimal


def _value_at(legs: tuple[Leg, ...] | list[Leg], s: Decimal) -> Decimal:
    """Dollars the legs of one unit are worth at expiry with the underlying at ``s``."""
    total = Decimal("0")
    for leg in legs:
        if leg.asset is AssetType.stock:
            value = s
        elif leg.strike is None or leg.right not in ("C", "P"):
            raise ValueError(f"leg {leg.instrument}: an option leg needs right and strike for its max loss")
        else:
            value = intrinsic(leg.right, leg.strike, s, leg.deliverable)
        total += leg.sign * leg.ratio * leg.multiplier * value
    return total


def max_loss_per_unit(legs: tuple[Leg, ...] | list[Leg], limit: Decimal) -> Decimal:
    """Worst loss in dollars of one unit bought at net ``limit`` per unit (quote terms)."""
    cost = limit * structure_multiplier(legs)
    slope_above = sum(leg.sign * leg.ratio * (leg.deliverable if leg.asset is AssetType.option else 1)
                      for leg in legs if leg.asset is AssetType.stock or leg.right == "C")
    if slope_above < 0:
        return INFINITE
    # the payoff's kinks: where each option's exercise value starts (strike x 100 / deliverable per share)
    strikes = sorted({share_strike(leg.strike, leg.deliverable) for leg in legs
                      if leg.asset is AssetType.option and leg.strike is not None})
    worst = max(cost - _value_at(legs, s) for s in [Decimal("0"), *strikes])
    return max(worst, Decimal("0"))


def unit_economics(legs: tuple[Leg, ...] | list[Leg], limit: Decimal,
                   fees_per_contract_leg: Decimal) -> UnitEconomics:
    loss = max_loss_per_unit(legs, limit)
    contracts = sum(leg.ratio for leg in legs if leg.asset is AssetType.option)
    return UnitEconomics(loss, loss, fees_per_contract_leg * contracts)
