"""Nightly reference-data upkeep for request-metered sources (Massive), inside the plan's budget:

- the universe: listed tickers synced every night; new listings are added (and scanned once they have
  ``strategy.min_history`` sessions of bars, the scan's own rule), delisted names retired (inactive, not
  tradable, ``retired_at`` set);
- sectors: one ticker-details request per symbol for its SIC code (``engine.data.sic``), fetched once and
  refreshed every ``sector_refresh_days``, at most ``sector_requests_per_night`` a night (held and
  recently signalled symbols first, then never-fetched), so a large universe is covered over several
  nights; the requests run outside any transaction, the answers are written in short batches;
- gap repair: symbols with holes in the last ``repair_window_sessions`` stored sessions (a grouped-daily
  file that lacked them; interior, or at the newest edge for listed names) are refetched per symbol
  (``list_aggs``, ``repair``), at most ``repair_requests_per_night``; sessions answered without a bar
  (the symbol did not trade) are recorded and not asked for again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import Session, col, select

from engine.data import calendar
from engine.data.barstore import BarStore
from engine.data.ratelimit import DataSourceAuthError, DataSourceError, DataSourceNotFound
from engine.data.sic import sector_for_sic
from engine.data.universe import sync_universe
from engine.models import Instrument, Position, Signal

log = logging.getLogger(__name__)

SECTOR_BATCH = 10  # ticker-details answers written per short transaction (two minutes of requests at 5/min)
MAX_CONSECUTIVE_FAILURES = 3  # the service is failing: stop the night's details, the rest stay due
SIGNAL_PRIORITY_DAYS = 30  # symbols signalled this recently get their sector before the rest

__all__ = ["ReferenceRefresh", "refresh_reference_data", "refresh_sectors", "refresh_universe", "repair_gaps"]


@dataclass
class ReferenceRefresh:
    listed: int = 0
    added: int = 0
    retired: int = 0
    awaiting_history: int = 0
    sectors_fetched: int = 0
    sectors_pending: int = 0
    repaired_symbols: int = 0
    repaired_bars: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    def line(self) -> str:
        return (f"universe: {self.listed:,} listed, {self.added} new ({self.awaiting_history} awaiting history), "
                f"{self.retired} retired; sectors: {self.sectors_fetched} fetched, {self.sectors_pending} pending; "
                f"gap repair: {self.repaired_bars} bars for {self.repaired_symbols} symbols")


def refresh_universe(db: Any, market: Any, now: datetime, store: BarStore | None,
                     min_history: int) -> tuple[int, int, int, int]:
    """(listed, added, retired, new listings still short of ``min_history`` sessions of bars). The listing
    is fetched and the bar store read with no transaction open; only the upsert holds the write lock."""
    from engine.db import session_scope

    frame = market.universe()
    if frame.empty:  # an empty listing is a provider problem, not every company delisting at once
        return 0, 0, 0, 0
    listed = set(frame["symbol"])
    with session_scope(db) as session:
        mine = {i.symbol: i for i in session.exec(select(Instrument).where(Instrument.source == market.name)).all()}
        added = sorted(listed - set(mine))
        sync_universe(session, frame, market.name)
        retired = 0
        for symbol, inst in mine.items():
            if symbol not in listed and inst.active:
                inst.active, inst.tradable, inst.retired_at = False, False, now
                session.add(inst)
                retired += 1
    awaiting = len(added)
    if added and store is not None:
        last = calendar.previous_session(now.date() + timedelta(days=1))
        first = calendar.sessions_back(last, max(min_history, 1))[0].astype(object)
        panel = store.load(first, last, added, dtype=np.float32)
        have = np.isfinite(panel.close).sum(axis=0) if panel.n_days else np.zeros(len(added))
        awaiting = int(np.count_nonzero(np.asarray(have) < min_history))
    return len(listed), len(added), retired, awaiting


def sectors_due(session: Session, source: str, now: datetime, refresh_days: int) -> list[str]:
    """Tradable symbols whose ticker details were never fetched or are older than ``refresh_days``, in the
    order the nightly budget serves them: held symbols, then recently signalled ones (their sector caps a
    real trade), then never fetched, then the oldest."""
    stale = now - timedelta(days=refresh_days)
    rows = session.exec(
        select(Instrument.symbol, Instrument.details_at).where(
            Instrument.source == source, Instrument.active, Instrument.tradable,
            (col(Instrument.details_at).is_(None)) | (col(Instrument.details_at) < stale))).all()
    held = set(session.exec(select(Position.symbol).where(Position.status == "open")).all())
    since = (now - timedelta(days=SIGNAL_PRIORITY_DAYS)).date()
    signalled = set(session.exec(select(Signal.symbol).where(Signal.data_date >= since)).all())
    never = datetime.min

    def key(row: tuple[str, datetime | None]) -> tuple[bool, bool, bool, datetime, str]:
        symbol, at = row
        return (symbol not in held, symbol not in signalled, at is not None,
                never if at is None else at.replace(tzinfo=None), symbol)

    return [symbol for symbol, _ in sorted(rows, key=key)]


def refresh_sectors(db: Any, market: Any, now: datetime, budget: int, refresh_days: int) -> tuple[int, int]:
    """Fetch ticker details for up to ``budget`` due symbols (``sectors_due``); returns (fetched, still
    pending). The requests run with no transaction open (at 5 a minute, 600 take two hours; the lease
    renewal and the console must keep writing), the answers are written every ``SECTOR_BATCH`` symbols
    in a short transaction. Only a definite answer (the details, or 404: no such ticker) sets
    ``details_at``; a transient failure leaves the symbol due for the next night."""
    from engine.db import read_scope

    with read_scope(db) as session:
        due = sectors_due(session, market.name, now, refresh_days)
    answers: dict[str, dict[str, Any]] = {}
    fetched = failures = 0
    try:
        for symbol in due[:budget]:
            try:
                answers[symbol] = market.ticker_details(symbol)
            except DataSourceNotFound as exc:  # definite: the ticker has no details; refreshed rarely
                log.warning("ticker details %s: %s", symbol, exc)
                answers[symbol] = {}
            except DataSourceAuthError:
                raise
            except DataSourceError as exc:  # transient (or unexpected): stays due, asked again tomorrow
                log.warning("ticker details %s: %s (asked again next night)", symbol, exc)
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise
                continue
            failures = 0
            if len(answers) >= SECTOR_BATCH:
                fetched += _write_details(db, market.name, answers, now)
                answers = {}
    finally:  # what was fetched is kept even when the night's refresh stops early
        fetched += _write_details(db, market.name, answers, now)
    return fetched, max(len(due) - fetched, 0)


def _write_details(db: Any, source: str, answers: dict[str, dict[str, Any]], now: datetime) -> int:
    if not answers:
        return 0
    from engine.db import session_scope

    with session_scope(db) as session:
        rows = session.exec(select(Instrument).where(Instrument.source == source,
                                                     col(Instrument.symbol).in_(list(answers)))).all()
        for inst in rows:
            sic = str(answers[inst.symbol].get("sic_code") or "")
            inst.sic_code = sic[:8]
            inst.sector = sector_for_sic(sic) or inst.sector
            inst.details_at = now
            session.add(inst)
    return len(answers)


def missing_sessions(store: BarStore, window: int, listed: set[str] | None = None) -> dict[str, list[date]]:
    """symbol -> sessions without its bar in the last ``window`` stored days, after its first bar there:
    interior holes, and holes at the newest edge (no bar after them yet) for ``listed`` symbols (all when
    None): a delisted name's trailing hole is not a hole."""
    stored = store.stored_dates()
    if len(stored) < 2:
        return {}
    days = stored[-window:]
    panel = store.load(days[0].astype(object), days[-1].astype(object), dtype=np.float32)
    ok = np.isfinite(panel.close)
    seen_before = np.maximum.accumulate(ok, axis=0)
    seen_after = np.maximum.accumulate(ok[::-1], axis=0)[::-1]
    interior = ~ok & seen_before & seen_after
    trailing = ~ok & seen_before & ~seen_after
    if listed is not None:
        trailing &= np.isin(np.asarray(panel.symbols, dtype=object), list(listed))[None, :]
    holes = interior | trailing
    out = {}
    for j in np.flatnonzero(holes.any(axis=0)):
        out[str(panel.symbols[j])] = [d.astype(object) for d in panel.dates[holes[:, j]]]
    return out


def repair_gaps(market: Any, store: BarStore, window: int, budget: int,
                listed: set[str] | None = None) -> tuple[int, int]:
    """Refetch (``market.repair``) the symbols with holes, newest holes first; (symbols, bars). Sessions
    a previous repair was answered without a bar for (``market.answered_empty``: the symbol did not
    trade) are not asked for again."""
    known = getattr(market, "answered_empty", dict)()
    holes = {}
    for symbol, days in missing_sessions(store, window, listed).items():
        left = [d for d in days if d not in known.get(symbol, ())]
        if left:
            holes[symbol] = (left[0], left[-1])
    order = sorted(holes, key=lambda s: (holes[s][1], s), reverse=True)[:budget]
    bars = 0
    for symbol in order:
        first, last = holes[symbol]
        bars += market.repair(store, symbol, first, last)
    return len(order), bars


def refresh_reference_data(ctx: Any, report: Any) -> ReferenceRefresh | None:
    """The nightly job's upkeep on sources that need it (those with ticker details: Massive); the counts
    go into the nightly report."""
    market = ctx.market
    if not hasattr(market, "ticker_details"):
        return None
    from engine.db import read_scope

    cfg = ctx.settings.reference_data
    out = ReferenceRefresh()
    now = pd.Timestamp(ctx.now).to_pydatetime()
    store = getattr(market, "store", None)
    try:
        out.listed, out.added, out.retired, out.awaiting_history = refresh_universe(
            ctx.db, market, now, store, ctx.settings.strategy.min_history)
        out.sectors_fetched, out.sectors_pending = refresh_sectors(
            ctx.db, market, now, cfg.sector_requests_per_night, cfg.sector_refresh_days)
        if store is not None and cfg.repair_requests_per_night:
            with read_scope(ctx.db) as session:
                listed = set(session.exec(select(Instrument.symbol).where(Instrument.source == market.name,
                                                                          Instrument.active)).all())
            out.repaired_symbols, out.repaired_bars = repair_gaps(market, store, cfg.repair_window_sessions,
                                                                  cfg.repair_requests_per_night, listed)
    except DataSourceAuthError:
        raise
    except DataSourceError as exc:  # the rest of the night's upkeep still runs; tomorrow continues
        out.errors.append(str(exc))
        report.add(f"reference data: {exc}")
    report.add(out.line())
    for key, value in out.counts().items():
        report.count(key, value)
    return out
