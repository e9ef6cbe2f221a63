"""Which part of an option chain a caller needs, so sources that filter on the server (Massive) send a
few pages instead of the whole chain (SPY or TSLA: thousands of contracts, dozens of requests).

- a candidate build needs the expiries in ``[dte_min, dte_max]`` and the strikes that can reach the
  delta bands (down to the wing band's 0.05), calls and/or puts as the planned structures use them;
- a held position needs only its own contracts (``MarketData.option_quotes`` where the source has it).

Sources without server-side filters (simulated, CSV) get the plain ``option_chain(underlying, at)`` call;
the selection filters the same rows either way.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from engine.options.selection import ROLES, OptionParams

__all__ = ["ChainRequest", "candidate_request", "fetch_chain"]

# |delta| 0.01 is z = 2.33 standard deviations of log price: every band (wing down to 0.05) is inside.
_Z = 2.33
# ATR as a share of price overstates the daily standard deviation of returns by about this much
# (true range >= |close-to-close move|; for normal returns E[range] is ~1.2-1.6 sigma): be generous.
_ATR_PER_SIGMA = 1.2
# Implied vol usually exceeds realised vol; a band cut too narrow would silently hide contracts.
_IV_MARGIN = 1.5
_MIN_VOL = 0.20  # annualised floor for quiet names


@dataclass(frozen=True)
class ChainRequest:
    expiry_from: date | None = None
    expiry_to: date | None = None
    strike_min: float | None = None
    strike_max: float | None = None
    contract_type: str | None = None  # 'call', 'put' or None for both

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def candidate_request(spot: float, atr: float, today: date, params: OptionParams,
                      kinds: Sequence[str]) -> ChainRequest:
    """The expiry window, strike band and contract type a candidate build for ``kinds`` can use."""
    roles = {r for k in kinds for r in ROLES[k]}
    calls, puts = any(r.endswith("call") for r in roles), any(r.endswith("put") for r in roles)
    contract_type = "call" if calls and not puts else "put" if puts and not calls else None
    lo = hi = None
    if math.isfinite(spot) and spot > 0:
        daily = atr / spot / _ATR_PER_SIGMA if math.isfinite(atr) and atr > 0 else 0.0
        sigma = max(daily * math.sqrt(252) * _IV_MARGIN, _MIN_VOL)
        t = params.dte_max / 365.0
        width = _Z * sigma * math.sqrt(t)
        lo = round(spot * math.exp(-width - sigma * sigma * t), 2)  # deep ITM calls / far OTM puts
        hi = round(spot * math.exp(width + sigma * sigma * t), 2)
    return ChainRequest(today + timedelta(days=params.dte_min), today + timedelta(days=params.dte_max), lo, hi,
                        contract_type)


def fetch_chain(market: Any, underlying: str, at: datetime, request: ChainRequest) -> pd.DataFrame:
    """``market.option_chain`` with the request's filters when the source takes them."""
    accepted = _filter_parameters(market)
    kwargs = {k: v for k, v in request.kwargs().items() if k in accepted}
    return market.option_chain(underlying, at, **kwargs)  # type: ignore[no-any-return]


def _filter_parameters(market: Any) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(market.option_chain).parameters)
    except (TypeError, ValueError):
        return frozenset()
