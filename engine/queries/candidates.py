"""Option candidates, their structures, payoff curves and rejections."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.models import (
    OptionCandidate,
    Order,
    Signal,
)
from engine.queries._common import _f, _numeric


def candidate_list(engine: Engine, limit: int = 300) -> pd.DataFrame:
    """Option candidates, newest first, with their signal and the order (if any) that came of them."""
    with Session(engine) as session:
        rows = session.exec(select(OptionCandidate, Signal).join(Signal, OptionCandidate.signal_id == Signal.id)
                            .order_by(OptionCandidate.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        ids = [c.id for c, _ in rows]
        orders = dict(session.exec(select(Order.candidate_id, Order.status)
                                   .where(col(Order.candidate_id).in_(ids))).all()) if ids else {}
    data = []
    for cand, sig in rows:
        greeks = cand.greeks or {}
        expiries = sorted({leg.get("expiry") for leg in cand.legs if leg.get("expiry")})
        data.append({
            "candidate_id": cand.id, "signal_id": sig.id, "data_date": sig.data_date, "symbol": cand.symbol,
            "structure": cand.structure, "chosen": cand.chosen, "score": sig.score, "zone": sig.zone,
            "expiry": expiries[0] if expiries else None, "net_mid": cand.net_mid, "net_natural": cand.net_natural,
            "max_loss": cand.max_loss, "max_profit": cand.max_profit,
            "breakevens": ", ".join(f"{b:,.2f}" for b in cand.breakevens or []),
            "iv_rank": cand.iv_rank, "delta": _f(greeks.get("delta")), "theta": _f(greeks.get("theta")),
            "vega": _f(greeks.get("vega")), "rejected": len(cand.rejected or []),
            "order_status": orders.get(cand.id), "signal_status": sig.status,
        })
    frame = pd.DataFrame(data, columns=["candidate_id", "signal_id", "data_date", "symbol", "structure", "chosen",
                                        "score", "zone", "expiry", "net_mid", "net_natural", "max_loss", "max_profit",
                                        "breakevens", "iv_rank", "delta", "theta", "vega", "rejected",
                                        "order_status", "signal_status"])
    return _numeric(frame, ["score", "net_mid", "net_natural", "max_loss", "max_profit", "iv_rank", "delta", "theta",
                            "vega"])


def candidate_detail(engine: Engine, candidate_id: int) -> dict[str, Any] | None:
    with Session(engine) as session:
        cand = session.get(OptionCandidate, candidate_id)
        if cand is None:
            return None
        sig = session.get(Signal, cand.signal_id)
        siblings = session.exec(select(OptionCandidate.id, OptionCandidate.structure, OptionCandidate.chosen)
                                .where(OptionCandidate.signal_id == cand.signal_id)).all()
        rejected = list(cand.rejected or [])
        if not rejected:  # the rejected contracts are stored once per signal, with the chosen candidate
            chosen = session.exec(select(OptionCandidate).where(OptionCandidate.signal_id == cand.signal_id,
                                                                OptionCandidate.chosen)).first()
            rejected = list(chosen.rejected or []) if chosen else []
    return {
        "id": cand.id, "signal_id": cand.signal_id, "symbol": cand.symbol, "structure": cand.structure,
        "chosen": cand.chosen, "legs": list(cand.legs), "net_mid": cand.net_mid, "net_natural": cand.net_natural,
        "max_loss": cand.max_loss, "max_profit": cand.max_profit, "breakevens": list(cand.breakevens or []),
        "greeks": dict(cand.greeks or {}), "iv_rank": cand.iv_rank, "reasons": dict(cand.reasons or {}),
        "rejected": rejected, "created_at": cand.created_at,
        "alternatives": [{"id": i, "structure": s, "chosen": c} for i, s, c in siblings],
        "signal": None if sig is None else {
            "data_date": sig.data_date, "score": sig.score, "zone": sig.zone, "entry_price": sig.entry_price,
            "atr": sig.atr, "stop": sig.stop, "targets": list(sig.targets), "status": sig.status},
    }


def candidate_structure(detail: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Rebuild the stored candidate as an ``engine.options.structures.Structure`` (for payoffs)."""
    from engine.options.structures import QuoteLeg, Structure

    legs = []
    for d in detail["legs"]:
        expiry = d.get("expiry")
        legs.append(QuoteLeg(
            occ_symbol=str(d["occ_symbol"]), right=str(d["right"]),
            strike=None if d.get("strike") is None else Decimal(str(d["strike"])),
            expiry=None if not expiry else date.fromisoformat(str(expiry)), qty=int(d["qty"]),
            bid=Decimal(str(d["bid"])), ask=Decimal(str(d["ask"])),
            **{k: float(d[k]) if d.get(k) is not None else math.nan
               for k in ("iv", "delta", "gamma", "theta", "vega", "dte")},
            deliverable=int(d.get("deliverable") or 100)))
    spot = _f((detail.get("greeks") or {}).get("underlying_price"))
    return Structure(detail["structure"], detail["symbol"], tuple(legs), spot if spot is not None else math.nan)


def payoff_curve(detail: dict[str, Any], r: float, points: int = 161) -> pd.DataFrame:
    """P&L per contract at expiry and today (Black-Scholes at each leg's IV) over a price range."""
    structure = candidate_structure(detail)
    strikes = [float(leg.strike) for leg in structure.legs if leg.strike is not None]
    spot = structure.underlying_price if math.isfinite(structure.underlying_price) else (
        float(np.mean(strikes)) if strikes else 100.0)
    lo = min([spot, *strikes]) * 0.75
    hi = max([spot, *strikes]) * 1.25
    prices = np.linspace(lo, hi, points)
    out = pd.DataFrame({"price": prices, "at_expiry": structure.payoff_at_expiry(prices)})
    try:
        out["today"] = structure.value_today(prices, 0, r=r)
    except ValueError:
        out["today"] = np.nan  # a leg without IV or days to expiry: only the expiry payoff is known
    return out


def rejection_rule(reason: str) -> str:
    """The filter behind a chain rejection ("dte 7 < 21" -> "dte", "|delta| 0.11 outside ..." -> "delta",
    "put not used by long_call" -> "right not used by the structure")."""
    import re

    if " not used by " in reason:
        return "right not used by the structure"
    match = re.match(r"\W*([A-Za-z_]+)", reason)
    return match.group(1).lower() if match else reason


def rejected_frame(rejected: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rejected, columns=["occ_symbol", "reason"])
    frame["rule"] = frame["reason"].map(lambda r: rejection_rule(str(r)))
    return frame


# --- orders, decisions, fills -----------------------------------------------------------------------------
