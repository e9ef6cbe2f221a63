"""Reg-T style margin of the paper venue's positions (used for its buying power)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from engine.execution.brokers.paper_books import ZERO, _Pos
from engine.execution.ports import (
    OPTION_MULTIPLIER,
    AssetType,
)


def _margin(positions: Iterable[_Pos]) -> tuple[Decimal, list[str]]:
    """(Reg-T style requirement in dollars, instruments of uncovered short options).

    Shorts are paired greedily with the cheapest cover: a long option (same underlying and right, expiring
    no earlier) that makes the requirement zero, then 100 long shares (short calls), then the long
    option with the smallest width. An uncovered short is charged its strike x 100 (only reachable
    through exercise/assignment: orders that would create one are rejected)."""
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
            longs = [[p.strike, p.expiry, p.quantity] for p in group if p.right == right and p.quantity > 0]
            shorts = sorted((p for p in group if p.right == right and p.quantity < 0),
                            key=lambda p: p.strike or ZERO, reverse=call)
            for s in shorts:
                ks = s.strike or ZERO
                need = -s.quantity
                while need > 0:
                    options = []
                    for cand in longs:
                        if cand[2] <= 0 or (cand[1] is not None and s.expiry is not None and cand[1] < s.expiry):
                            continue
                        kl = cand[0] or ZERO
                        width = max(ZERO, kl - ks) if call else max(ZERO, ks - kl)
                        options.append(((width, -kl if call else kl), cand, width))
                    best = min(options, key=lambda o: o[0]) if options else None
                    if best is not None and best[2] == 0:
                        cand, width = best[1], ZERO
                    elif call and stock_free >= OPTION_MULTIPLIER:
                        n = min(need, stock_free // OPTION_MULTIPLIER)
                        stock_free -= n * OPTION_MULTIPLIER
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

