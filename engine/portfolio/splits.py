"""Adjust open positions on a split's ex-date, before the day's management runs, so a 2:1 split does not
look like a 50% crash that stops everything out.

For a split of ``r`` new shares per old share (2.0 for 2:1, 1.5 for 3:2, 0.1 for 1:10):

- the underlying levels of the position scale by 1/r: stop, targets, entry underlying price, entry ATR,
  highest close;
- stock legs: shares x r (whole shares; the fraction is paid in cash by the broker), price per share / r;
- option legs, as the OCC adjusts them: a whole-number split (2:1, 3:1) gives r standard contracts per
  contract at strike / r (new OCC symbol, same root), so the position's quantity x r and its price per
  unit / r; any other ratio keeps the contract count and strike and changes the deliverable to
  floor(100 x r) shares per contract under an adjusted root (``AAPL1``), looked up in the source's
  chain when it can say (``shares_per_contract``); the premium per contract is unchanged.

Total dollars (max loss, initial risk, realised P&L) do not change. Each (position, split) is applied
once: the application is recorded as a ``DataRun`` row (kind ``position_split``). The held symbol's
stored bars are made split-adjusted at the same time (the management reads close, SMA50 and ATR from
them); a split that cannot be applied holds its symbol back from management (kind ``split_hold``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pandas as pd
from sqlmodel import Session, col, select

from engine.clock import new_york
from engine.models import DataRun, Position
from engine.options.occ import format_occ, parse_occ

log = logging.getLogger(__name__)

__all__ = ["SplitEvent", "adjust_leg", "adjust_position", "adjusted_contracts", "apply_splits", "split_events",
           "symbols_held_back", "unit_factor"]

RUN_KIND = "position_split"
HOLD_KIND = "split_hold"  # a split that could not be applied: its symbol is not managed until it is
STANDARD = 100


@dataclass(frozen=True)
class SplitEvent:
    ticker: str
    executed: date
    ratio: float  # new shares per old share

    @property
    def whole(self) -> bool:
        return self.ratio >= 1 and abs(self.ratio - round(self.ratio)) < 1e-9


def split_events(market: Any, today: date) -> list[SplitEvent]:
    """Splits executed in the last week up to ``today`` from a source that lists them (Massive)."""
    lister = getattr(market, "list_splits", None)
    if lister is None:
        return []
    return [SplitEvent(s.ticker, s.executed, s.ratio) for s in lister(today - timedelta(days=7))
            if s.executed <= today and s.ratio > 0 and s.ratio != 1]


def _scale(x: float, ratio: float) -> float:
    return float(x) / ratio


def _adjusted_contract(market: Any, at: datetime | None, occ: str, deliverable: int) -> str | None:
    """The adjusted contract (same expiry, strike and right, ``deliverable`` shares) in the source's chain:
    only that expiry, strike and right are requested (one page), never the whole chain."""
    if market is None or at is None:
        return None
    sym = parse_occ(occ)
    try:
        chain = market.option_chain(sym.root, at, expiry_from=sym.expiry, expiry_to=sym.expiry,
                                    strike_min=float(sym.strike), strike_max=float(sym.strike),
                                    contract_type="call" if sym.right == "C" else "put")
    except Exception as exc:  # the position is still adjusted; the symbol is confirmed later
        log.warning("chain for adjusted %s: %s", occ, exc)
        return None
    if chain is None or chain.empty or "shares_per_contract" not in chain:
        return None
    match = chain[(chain["expiry"] == sym.expiry) & (chain["right"] == sym.right)
                  & (pd.to_numeric(chain["strike"]) == float(sym.strike))
                  & (pd.to_numeric(chain["shares_per_contract"]) == deliverable)]
    return str(match["occ_symbol"].iloc[0]) if len(match) else None


def adjusted_contracts(pos: Position, event: SplitEvent, market: Any, at: datetime | None) -> dict[str, str | None]:
    """The adjusted contract of each option leg a non-whole split moves to another deliverable (network:
    call with no transaction open); empty for whole-number splits and stock."""
    if event.whole:
        return {}
    deliverable = math.floor(STANDARD * event.ratio + 1e-9)
    return {str(d["instrument"]): _adjusted_contract(market, at, str(d["instrument"]), deliverable)
            for d in pos.legs if d.get("asset", "option") == "option"}


def unit_factor(event: SplitEvent, has_options: bool) -> float:
    """What a holding's units multiply by: shares x r; contracts x r for a whole-number split (r standard
    contracts per contract); an adjusted contract (any other ratio) keeps its count."""
    if not has_options:
        return event.ratio
    return round(event.ratio) if event.whole else 1


def adjust_leg(d: dict[str, Any], event: SplitEvent, has_options: bool,
               contracts: dict[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """The one split rule for a leg, as a ``Leg.to_dict`` dict: of an engine position (``adjust_position``)
    or of a broker's holding (the paper venue's books). ``has_options``: the structure the leg belongs to
    holds options (a covered call's shares follow its call). Returns the new leg and notes."""
    d, notes, r = dict(d), [], event.ratio
    option = d.get("asset", "option") == "option"
    if option and event.whole:
        sym = parse_occ(str(d["instrument"]))
        strike = (Decimal(str(d.get("strike") or sym.strike)) / Decimal(round(r))).quantize(Decimal("0.001"))
        d["instrument"] = format_occ(sym.root, sym.expiry, sym.right, strike)
        d["strike"] = format(strike.normalize(), "f")  # "80", not "8E+1"
    elif option:
        d["deliverable"] = math.floor(STANDARD * r + 1e-9)
        adjusted = contracts.get(str(d["instrument"]))
        if adjusted:
            d["instrument"] = adjusted
        else:
            d["adjusted_symbol_pending"] = True
            notes.append(f"{d['instrument']}: adjusted symbol not in the chain yet")
    elif has_options and not event.whole:  # a covered call's shares: the call now delivers r x as many
        d["ratio"] = math.floor(int(d.get("ratio") or 1) * r + 1e-9)
    return d, notes


def adjust_position(pos: Position, event: SplitEvent, market: Any = None, at: datetime | None = None,
                    contracts: dict[str, str | None] | None = None) -> str:
    """Apply ``event`` to ``pos`` in place; returns what was done. ``contracts``: the adjusted contracts
    fetched beforehand (``adjusted_contracts``); without them they are looked up in ``market``."""
    if contracts is None:
        contracts = adjusted_contracts(pos, event, market, at)
    r = event.ratio
    pos.stop = _scale(pos.stop, r)
    pos.targets = [_scale(t, r) for t in pos.targets]
    pos.underlying_entry = _scale(pos.underlying_entry, r)
    pos.entry_atr = _scale(pos.entry_atr, r)
    pos.highest_close = _scale(pos.highest_close, r)
    has_options = any(d.get("asset", "option") == "option" for d in pos.legs)
    legs, notes = [], []
    for d in pos.legs:
        leg, said = adjust_leg(d, event, has_options, contracts)
        legs.append(leg)
        notes += said
    factor = unit_factor(event, has_options)
    if factor != 1:
        new_quantity = math.floor(pos.quantity * factor + 1e-9)
        new_initial = math.floor(pos.initial_quantity * factor + 1e-9)
        price_factor = Decimal(str(factor))
        pos.entry_price = (Decimal(pos.entry_price) / price_factor).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
        if pos.mark is not None:
            pos.mark = (Decimal(pos.mark) / price_factor).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
        notes.append(f"quantity {pos.quantity} -> {new_quantity}")
        pos.quantity, pos.initial_quantity = new_quantity, new_initial
    else:
        notes.append(f"{math.floor(STANDARD * r + 1e-9)} shares per contract")
    pos.legs = legs
    return (f"{pos.symbol}: split {r:g}:1 on {event.executed}: stop {pos.stop:.2f}, targets "
            f"{', '.join(f'{t:.2f}' for t in pos.targets)}; " + "; ".join(notes))


def _applied(session: Session) -> set[tuple[int, str, str]]:
    runs = session.exec(select(DataRun).where(DataRun.kind == RUN_KIND)).all()
    return {(int(r.detail["position_id"]), str(r.detail["ticker"]), str(r.detail["executed"])) for r in runs}


def symbols_held_back(db: Any, symbols: list[str]) -> set[str]:
    """Of ``symbols``, those with a split that could not be applied (``apply_splits`` failed): their
    positions and stored bars may still be at pre-split prices, so they must not be managed."""
    if not symbols:
        return set()
    from engine.db import read_scope

    with read_scope(db) as session:
        runs = session.exec(select(DataRun).where(DataRun.kind == HOLD_KIND, DataRun.outcome == "pending")).all()
        return {str(r.detail.get("ticker")) for r in runs} & set(symbols)


def _adjust_bar_history(ctx: Any, event: SplitEvent) -> None:
    """Replace the symbol's stored bars by split-adjusted ones before the day's management reads its close,
    SMA50 and ATR (``check_splits`` runs in the nightly update, which cannot see a split before its
    ex-date). Network: no transaction open."""
    check = getattr(ctx.market, "check_splits", None)
    if check is None:
        return
    from engine.data.massive_splits import Split
    from engine.data.sources import bar_store

    split = Split(event.ticker, event.executed, 1.0, event.ratio)
    check(bar_store(ctx.settings), since=event.executed - timedelta(days=7), listed=[split])


def _release_unheld(db: Any) -> None:
    """Holds on symbols no longer held are resolved: nothing is left to protect, and a later position in
    the symbol (opened at post-split prices, on adjusted bars) must be managed."""
    from engine.db import read_scope, session_scope

    with read_scope(db) as session:
        pending = session.exec(select(DataRun.id, DataRun.detail).where(DataRun.kind == HOLD_KIND,
                                                                     DataRun.outcome == "pending")).all()
        if not pending:
            return
        held = set(session.exec(select(Position.symbol).where(Position.status == "open")).all())
    stale = [run_id for run_id, detail in pending if detail.get("ticker") not in held]
    if stale:
        with session_scope(db) as session:
            for run in session.exec(select(DataRun).where(col(DataRun.id).in_(stale))).all():
                run.outcome = "resolved"
                session.add(run)


def _hold(ctx: Any, event: SplitEvent, error: BaseException, report: Any) -> None:
    """Record that ``event`` could not be applied (management skips the symbol until it is) and alert."""
    from engine.db import session_scope
    from engine.notify import Message
    from engine.notify.outbox import OutboxNotifier

    line = (f"{event.ticker}: split {event.ratio:g}:1 on {event.executed} could not be applied ({error}); "
            "its positions are not managed until it is (next pre-market, or adjust them by hand)")
    log.error(line)
    report.add(line)
    report.count("split_held_symbols")
    with session_scope(ctx.db) as session:
        pending = session.exec(select(DataRun).where(DataRun.kind == HOLD_KIND, DataRun.outcome == "pending")).all()
        if not any(r.detail.get("ticker") == event.ticker for r in pending):
            session.add(DataRun(kind=HOLD_KIND, source=getattr(ctx.market, "name", ""), outcome="pending",
                                detail={"ticker": event.ticker, "executed": event.executed.isoformat(),
                                        "error": str(error)[:500]}))
    try:
        OutboxNotifier(ctx.db, ctx.settings).notify(
            "system_status", Message(title=f"Split of {event.ticker} not applied", description=line,
                                     color=0xE74C3C, kind="split_hold"),
            f"split-hold:{event.ticker}:{event.executed.isoformat()}")
    except Exception as exc:  # the hold is recorded; a failing alert must not hide the report line
        log.warning("split alert for %s: %s", event.ticker, exc)


def _adjust_broker(ctx: Any, event: SplitEvent, plans: list[tuple[Position, dict[str, str | None]]],
                   report: Any) -> None:
    """The broker's own books follow the split by the same rule when it keeps them itself (the paper
    venue; a real broker adjusts its own overnight). Before the engine's write, so a failure holds the
    symbol back with nothing half done; the venue applies each split once, so a retry is safe."""
    apply = getattr(getattr(ctx, "broker", None), "apply_split", None)
    if apply is None:
        return
    contracts = {k: v for _, found in plans for k, v in found.items()}
    for line in apply(event, contracts):
        report.add(f"broker books: {line}")


def apply_splits(ctx: Any, report: Any) -> int:
    """Adjust every open position whose underlying split on or before today (and after it was opened),
    once; the lines go into the pre-market report. Returns positions adjusted.

    Per split of a held symbol: the stored bar history is made split-adjusted and the adjusted contracts
    looked up first (network, no transaction open), then the positions are written in one short
    transaction. When any of it fails the symbol is held back (``symbols_held_back``: management skips
    it) and the operator is alerted; the next pre-market tries again."""
    from engine.db import read_scope, session_scope

    _release_unheld(ctx.db)
    today = new_york(ctx.now).date()
    events = split_events(ctx.market, today)
    if not events:
        return 0

    with read_scope(ctx.db) as session:
        applied = _applied(session)
        held = {event: list(session.exec(select(Position).where(
            Position.status == "open", Position.symbol == event.ticker)).all()) for event in events}
        session.expunge_all()  # keep what was read: the read scope's rollback would expire it
    done = 0
    for event in events:
        todo = [pos for pos in held[event]
                if (int(pos.id or 0), event.ticker, event.executed.isoformat()) not in applied
                and new_york(pos.opened_at).date() < event.executed]  # else opened at post-split prices
        try:
            if held[event]:
                _adjust_bar_history(ctx, event)
            plans = [(pos, adjusted_contracts(pos, event, ctx.market, ctx.now)) for pos in todo]
            _adjust_broker(ctx, event, plans, report)
        except Exception as exc:
            _hold(ctx, event, exc, report)
            continue
        if not held[event]:
            continue
        with session_scope(ctx.db) as session:
            applied = _applied(session)  # again, inside the write: another process may have applied it
            for read, contracts in plans:
                key = (int(read.id or 0), event.ticker, event.executed.isoformat())
                pos = session.get(Position, read.id)
                if key in applied or pos is None or pos.status != "open":
                    continue
                line = adjust_position(pos, event, contracts=contracts)
                session.add(pos)
                session.add(DataRun(kind=RUN_KIND, source=getattr(ctx.market, "name", ""), outcome="ok",
                                    detail={"position_id": key[0], "ticker": key[1], "executed": key[2],
                                            "ratio": event.ratio, "line": line}))
                report.add(line)
                done += 1
            for run in session.exec(select(DataRun).where(DataRun.kind == HOLD_KIND,
                                                          DataRun.outcome == "pending")).all():
                if run.detail.get("ticker") == event.ticker:  # applied now: management may resume
                    run.outcome = "resolved"
                    session.add(run)
    if done:
        report.count("split_adjusted_positions", done)
    return done
