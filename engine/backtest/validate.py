"""Paper validation: the scheduler's jobs on a replay clock against the backtest over the same sessions.

``validate(days, symbols, start)`` seeds a temporary data folder and database with the simulated market,
runs ``replay.run_days`` (the scheduler's own job table through ``runtime.run_job``: pre-market, an
intraday cycle every 5 minutes, post-market, nightly), then the options backtest on the same market,
sessions and symbols in live timing (``engine.backtest.live_timing``), and lists every difference
between the two order and fill lists. Orders are compared by (symbol, session, open|exit, legs);
quantities and prices (per unit of the structure, absolute: live books credits negative) must agree
to the cent.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

__all__ = ["ValidationOrder", "compare", "validate"]

PRICE_TOLERANCE = 0.005  # a cent, rounded


@dataclass(frozen=True)
class ValidationOrder:
    symbol: str
    day: date
    side: str  # open | exit
    legs: tuple[str, ...]  # OCC symbols (spaces removed) with their side, e.g. "buy AAPL261218C00150000"
    structure: str
    quantity: int  # filled units (0: sent, never filled)
    price: float | None  # average fill per unit, absolute

    def key(self) -> tuple[str, date, str, tuple[str, ...]]:
        return self.symbol, self.day, self.side, self.legs

    def describe(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "date": self.day.isoformat(), "side": self.side, "structure": self.structure,
                "legs": list(self.legs), "quantity": self.quantity, "price": self.price}


def _leg_names(legs: list[dict[str, Any]], flip: bool = False) -> tuple[str, ...]:
    out = []
    for leg in legs:
        side = str(leg.get("side", ""))
        if flip:
            side = "sell" if side == "buy" else "buy"
        out.append(f"{side} {str(leg.get('instrument') or leg.get('symbol')).replace(' ', '')}")
    return tuple(sorted(out))


def live_orders(db: Any) -> list[ValidationOrder]:
    from sqlmodel import select

    from engine.clock import NEW_YORK
    from engine.db import read_scope
    from engine.models import Order

    out = []
    with read_scope(db) as session:  # a read: no write lock, so the scheduler's writes neither wait nor block it
        for o in session.exec(select(Order).order_by(Order.id)).all():
            if o.status in ("proposed", "rejected") and not o.filled_quantity:
                continue  # never sent to the broker: the backtest has no such order either
            day = o.created_at.astimezone(NEW_YORK).date() if o.created_at.tzinfo else o.created_at.date()
            price = None if o.avg_fill_price is None else round(abs(float(o.avg_fill_price)), 4)
            out.append(ValidationOrder(o.symbol, day, "open" if o.intent == "open" else "exit",
                                       _leg_names(list(o.legs or [])), o.structure, int(o.filled_quantity or 0),
                                       price))
    return out


def backtest_orders(trades: Any) -> list[ValidationOrder]:
    out = []
    for row in trades.itertuples():
        d = row.detail
        legs = [{"instrument": name, "side": side} for name, side in zip(d["legs"], d.get("sides", []), strict=False)]
        for f in d["fills"]:
            opening = f["intent"] == "open"
            out.append(ValidationOrder(row.symbol, date.fromisoformat(f["date"]), "open" if opening else "exit",
                                       _leg_names(legs, flip=not opening), d["structure"], int(f["units"]),
                                       round(abs(float(f["price"])), 4)))
    return out


def compare(live: list[ValidationOrder], backtest: list[ValidationOrder]) -> list[dict[str, Any]]:
    """Every difference: orders on one side only, then matched orders whose quantity or price differ."""
    diffs: list[dict[str, Any]] = []
    pool: dict[tuple[Any, ...], list[ValidationOrder]] = {}
    for o in backtest:
        pool.setdefault(o.key(), []).append(o)
    for o in live:
        twins = pool.get(o.key())
        if not twins:
            if o.quantity:  # a sent order that never filled has no backtest counterpart by construction
                diffs.append({"kind": "live only", **o.describe()})
            continue
        b = twins.pop(0)
        if o.quantity != b.quantity or o.price is None or b.price is None or abs(o.price - b.price) > PRICE_TOLERANCE:
            diffs.append({"kind": "differs", **o.describe(), "backtest_quantity": b.quantity,
                          "backtest_price": b.price})
    for rest in pool.values():
        diffs.extend({"kind": "backtest only", **o.describe()} for o in rest)
    return sorted(diffs, key=lambda d: (d["date"], d["symbol"], d["side"], d["kind"]))


def validate(days: int, symbols: int = 300, start: date | None = None, cycle_minutes: int = 5,
             echo: Any = None, settings: Any = None) -> dict[str, Any]:
    from engine.backtest.options_mode import run_options_backtest
    from engine.backtest.runner import BacktestSpec, load_panel
    from engine.bootstrap import initialise, last_completed_session
    from engine.clock import NEW_YORK, ReplayClock
    from engine.config import get_settings
    from engine.context import build_context
    from engine.data import calendar
    from engine.replay import run_days

    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if symbols < 10:
        raise ValueError(f"symbols must be >= 10, got {symbols}")
    say = echo or (lambda _line: None)
    base = settings or get_settings()
    last = last_completed_session()
    if start is None:  # the last N completed sessions
        start = calendar.sessions_back(last, days)[0].astype(object)
    sessions = [d.astype(object) for d in calendar.sessions(start, last)][:days]
    if len(sessions) < days:
        raise ValueError(f"date: only {len(sessions)} completed sessions from {start}, need {days}")
    with tempfile.TemporaryDirectory(prefix="qm-validate-") as tmp:
        live_settings = base.model_copy(update={"data_dir": Path(tmp), "database_url": None,
                                                "sim_symbols": symbols})
        say(f"seeding {symbols} simulated symbols into {tmp}")
        initialise(live_settings, sessions=330, progress=False)
        clock = ReplayClock(datetime.combine(sessions[0], time(8, 0), NEW_YORK))
        ctx = build_context(live_settings, clock=clock)
        summaries = run_days(ctx, clock, sessions[0], days, every_minutes=cycle_minutes, echo=say, detail=False)
        live = live_orders(ctx.db)
        ctx.db.dispose()
    job_errors = [e for s in summaries for e in s.job_errors]
    spec = BacktestSpec(strategy="atr_matrix", mode="options", source="sim", symbols=symbols, seed=base.sim_seed,
                        start=sessions[0], end=sessions[-1], params={"capital": float(base.starting_cash)})
    panel = load_panel(spec, base)
    first = int((panel.dates < spec.start).sum())
    say(f"backtest over {sessions[0]}..{sessions[-1]} in live timing")
    result = run_options_backtest(spec, panel, first, timing="live", cycle_minutes=cycle_minutes)
    bt = backtest_orders(result.trades)
    differences = compare(live, bt)
    return {
        "days": days, "start": sessions[0].isoformat(), "end": sessions[-1].isoformat(), "symbols": symbols,
        "orders_live": len(live), "orders_backtest": len(bt),
        "fills_live": sum(1 for o in live if o.quantity), "fills_backtest": sum(1 for o in bt if o.quantity),
        "job_errors": job_errors, "differences": differences, "match": not differences and not job_errors,
    }
