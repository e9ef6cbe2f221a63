"""Reg-T style margin of the paper venue's positions and the buying power checks built on it.

Split out of ``paper.py`` along its seams (venue, margin, settlement, books, reads); ``PaperBroker``
combines them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from engine.execution.brokers.paper_books import _WORKING_ORDERS, ZERO, _Books, _Pos
from engine.execution.ports import (
    OPTION_MULTIPLIER,
    AssetType,
    Leg,
    Side,
)
from engine.portfolio.accounting import structure_multiplier


def _margin(positions: Iterable[_Pos]) -> tuple[Decimal, list[str]]:
    """(Reg-T style requirement in dollars, instruments of uncovered short options).

    Shorts are paired greedily with the cheapest cover: a long option (same underlying and right, expiring
    no earlier) that makes the requirement zero, then 100 long shares (short calls), then the long
    option with the smallest width. An uncovered short is charged its strike x 100 (only reachable
    through exercise/assignment: orders that would create one are rejected)."""
    positions = list(positions)
    if not any(p.quantity < 0 and p.asset is AssetType.option for p in positions):
        return ZERO, []  # only shorts need margin: a book of longs (the usual case) needs none
    by_und: dict[str, list[_Pos]] = {}
    shares: dict[str, int] = {}
    for p in positions:
        if p.quantity == 0:
            continue
        if p.asset is AssetType.stock:
            shares[p.instrument] = shares.get(p.instrument, 0) + p.quantity
        else:
            by_und.setdefault(p.underlying, []).append(p)
    total, naked = ZERO, []
    for und, group in by_und.items():
        stock_free = max(0, shares.get(und, 0))
        for right in ("C", "P"):
            call = right == "C"
            # a long covers a short only when both deliver the same shares (OCC-adjusted contracts differ)
            longs = [[p.strike, p.expiry, p.quantity, p.deliverable] for p in group
                     if p.right == right and p.quantity > 0]
            shorts = sorted((p for p in group if p.right == right and p.quantity < 0),
                            key=lambda p: p.strike or ZERO, reverse=call)
            for s in shorts:
                ks = s.strike or ZERO
                need = -s.quantity
                while need > 0:
                    options = []
                    for cand in longs:
                        if cand[2] <= 0 or cand[3] != s.deliverable or (
                                cand[1] is not None and s.expiry is not None and cand[1] < s.expiry):
                            continue
                        kl = cand[0] or ZERO
                        width = max(ZERO, kl - ks) if call else max(ZERO, ks - kl)
                        options.append(((width, -kl if call else kl), cand, width))
                    best = min(options, key=lambda o: o[0]) if options else None
                    if best is not None and best[2] == 0:
                        cand, width = best[1], ZERO
                    elif call and stock_free >= s.deliverable:  # shares the contract would deliver
                        n = min(need, stock_free // s.deliverable)
                        stock_free -= n * s.deliverable
                        need -= n
                        continue
                    elif best is not None:
                        cand, width = best[1], best[2]
                    else:
                        total += ks * OPTION_MULTIPLIER * need
                        naked.append(s.instrument)
                        break
                    n = min(need, cand[2])
                    cand[2] -= n
                    need -= n
                    total += width * OPTION_MULTIPLIER * n
    return total, naked


class PaperBuyingPower:
    """What an order does to the account's margin and cash (mixed into PaperBroker, which provides the
    books, the legs of stored orders and the commission schedule)."""

    def _after(self, books: _Books, legs: Sequence[Leg], units: int) -> list[_Pos]:
        """Positions after ``units`` of the structure (prices do not matter for margin)."""
        changed = {}
        for leg in legs:
            base = books.positions.get(leg.instrument) or self._position_for(
                _Books(ZERO, ZERO, {}), leg)
            changed[leg.instrument] = replace(base, quantity=base.quantity + leg.sign * leg.ratio * units)
        return [changed.get(k, p) for k, p in books.positions.items()] + [
            p for k, p in changed.items() if k not in books.positions]

    def _order_cost(self, books: _Books, legs: Sequence[Leg], units: int, net_price: Decimal,
                    charged: Sequence[Decimal] | None = None) -> Decimal:
        """Cash the order takes (+) or gives (-) for ``units`` at ``net_price``, commissions and fees included."""
        m = structure_multiplier(legs)
        cost = net_price * m * units
        for i, leg in enumerate(legs):
            pos = books.positions.get(leg.instrument)
            commission, fees = self._leg_charges(leg, leg.ratio * units, pos.quantity if pos else 0,
                                                 charged[i] if charged else ZERO)
            cost += commission + fees
        return cost

    def _bp_problem(self, books: _Books, legs: Sequence[Leg], units: int, cost: Decimal,
                    reserved: Decimal = ZERO) -> str | None:
        """Why the account cannot take this trade (None when it can)."""
        before_req, _ = _margin(books.positions.values())
        after = self._after(books, legs, units)
        after_req, naked = _margin(after)
        if naked:
            return f"naked short options are not supported: {', '.join(naked)} would be uncovered"
        for leg in legs:
            if leg.asset is AssetType.stock and leg.side is Side.sell:
                was = books.positions[leg.instrument].quantity if leg.instrument in books.positions else 0
                if was - leg.ratio * units < 0:
                    return f"short selling stock is not supported: {leg.instrument} holds {was}"
        bp_before = books.cash - before_req
        bp_after = books.cash - cost - after_req
        if bp_after - reserved < 0 and bp_after < bp_before:
            need = bp_before - bp_after
            return (f"insufficient buying power: the order needs ${need:,.2f} (debit or margin, plus "
                    f"commissions and fees), available ${bp_before - reserved:,.2f}")
        return None

    @staticmethod
    def _working(conn: Connection) -> list[Mapping[str, Any]]:
        """The venue's working orders (one read serves the reserve and the pending closes)."""
        return list(conn.execute(_WORKING_ORDERS).mappings())

    def _reserved(self, working: Sequence[Mapping[str, Any]], books: _Books) -> Decimal:
        """Buying power held for ``working`` orders (at their limits, for what is left of them)."""
        total = ZERO
        bp_now = books.cash - _margin(books.positions.values())[0]
        for r in working:
            legs = self._legs(r)
            left = int(r["quantity"]) - int(r["filled_quantity"])
            if left <= 0:
                continue
            charged = [Decimal(x) for x in json.loads(r["leg_commissions"])]
            cost = self._order_cost(books, legs, left, Decimal(r["limit_price"]), charged)
            req, naked = _margin(self._after(books, legs, left))
            if not naked:
                total += max(ZERO, bp_now - (books.cash - cost - req))
        return total

    def _pending_closes(self, working: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Units of each instrument that the ``working`` close orders are already set to take off."""
        out: dict[str, int] = {}
        for r in working:
            if r["intent"] != "close":
                continue
            left = int(r["quantity"]) - int(r["filled_quantity"])
            for leg in self._legs(r):
                out[leg.instrument] = out.get(leg.instrument, 0) + leg.ratio * left
        return out
