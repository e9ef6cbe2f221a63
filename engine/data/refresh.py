"""Nightly reference-data upkeep for request-metered sources (Massive), inside the plan's budget:

- the universe: listed tickers synced every night; new listings are added (and scanned once they have
  ``strategy.min_history`` sessions of bars, the scan's own rule), delisted names retired (inactive, not
  tradable, ``retired_at`` set);
- sectors: one ticker-details request per symbol for its SIC code (``engine.data.sic``), fetched once and
  refreshed every ``sector_refresh_days``, at most ``sector_requests_per_night`` a night (never-fetched
  first), so a large universe is covered over several nights;
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
from engine.data.ratelimit import DataSourceAuthError, DataSourceError
from engine.data.sic import sector_for_sic
from engine.data.universe import sync_universe
from engine.models import Instrument

log = logging.getLogger(__name__)

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


def refresh_universe(session: Session, market: Any, now: datetime, store: BarStore | None,
                     min_history: int) -> tuple[int, int, int, int]:
    """(listed, added, retired, new listings still short of ``min_history`` sessions of bars)."""
    frame = market.universe()
    if frame.empty:  # an empty listing is a provider problem, not every company delisting at once
        return 0, 0, 0, 0
    mine = {i.symbol: i for i in session.exec(select(Instrument).where(Instrument.source == market.name)).all()}
    listed = set(frame["symbol"])
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


def refresh_sectors(session: Session, market: Any, now: datetime, budget: int, refresh_days: int) -> tuple[int, int]:
    """Fetch ticker details for up to ``budget`` tradable symbols whose sector was never fetched or is
    older than ``refresh_days``; returns (fetched, still pending)."""
    stale = now - timedelta(days=refresh_days)
    due = list(session.exec(
        select(Instrument).where(Instrument.source == market.name, Instrument.active, Instrument.tradable,
                                 (col(Instrument.details_at).is_(None)) | (col(Instrument.details_at) < stale))
        .order_by(col(Instrument.details_at).is_not(None), col(Instrument.details_at), Instrument.symbol)).all())
    fetched = 0
    for inst in due[:budget]:
        try:
            details = market.ticker_details(inst.symbol)
        except DataSourceAuthError:
            raise
        except DataSourceError as exc:  # e.g. 404 for one symbol: note it, try again after refresh_days
            log.warning("ticker details %s: %s", inst.symbol, exc)
            details = {}
        sic = str(details.get("sic_code") or "")
        inst.sic_code = sic[:8]
        inst.sector = sector_for_sic(sic) or inst.sector
        inst.details_at = now
        session.add(inst)
        fetched += 1
    return fetched, max(len(due) - fetched, 0)


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
    from engine.db import read_scope, session_scope

    cfg = ctx.settings.reference_data
    out = ReferenceRefresh()
    now = pd.Timestamp(ctx.now).to_pydatetime()
    store = getattr(market, "store", None)
    try:
        with session_scope(ctx.db) as session:
            out.listed, out.added, out.retired, out.awaiting_history = refresh_universe(
                session, market, now, store, ctx.settings.strategy.min_history)
        with session_scope(ctx.db) as session:
            out.sectors_fetched, out.sectors_pending = refresh_sectors(
                session, market, now, cfg.sector_requests_per_night, cfg.sector_refresh_days)
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
