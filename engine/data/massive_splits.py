"""Splits and per-symbol repairs of the Massive bar store (``list_splits``, ``list_aggs``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlmodel import select

from engine.data import calendar
from engine.data.barstore import BarStore
from engine.data.cache import data_run
from engine.data.massive_bars import GROUPED_TAG_PREFIX, FillReport, MassiveBars, _no_days, last_completed_session
from engine.data.massive_http import NEW_YORK, SOURCE, _aware
from engine.data.massive_parse import aggs_to_table
from engine.models import DataRun

AGGS_PAGE_LIMIT = 50_000


@dataclass(frozen=True)
class Split:
    """One split from ``v3/reference/splits``: ``split_to`` new shares for every ``split_from`` old ones."""

    ticker: str
    executed: date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        """New shares per old share (2.0 for a 2:1 split, 0.1 for a 1:10 reverse split)."""
        return self.split_to / self.split_from

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> Split | None:
        ticker, executed = r.get("ticker"), r.get("execution_date")
        if not ticker or not executed:
            return None
        frm, to = r.get("split_from"), r.get("split_to")
        ok = all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in (frm, to))
        return cls(str(ticker), date.fromisoformat(executed), float(frm) if ok else 1.0, float(to) if ok else 1.0)


@dataclass
class SplitReport:
    splits_seen: int = 0
    symbols_refetched: list[str] = field(default_factory=list)
    bars_written: int = 0
    cache_days_evicted: int = 0


class MassiveSplits(MassiveBars):
    """Split checks and gap repairs on top of the daily bars."""

    def _symbol_aggs(self, symbol: str, start: date, end: date) -> pa.Table:
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"daily bars {symbol} {start}..{end}",
            lambda: self._rest.list_aggs(
                symbol, 1, "day", start.isoformat(), end.isoformat(), adjusted=self.adjusted, sort="asc",
                limit=AGGS_PAGE_LIMIT, raw=True,
            ),
        ):
            results.extend(page)
        return aggs_to_table(results, symbol)

    def repair(self, store: BarStore | None, symbol: str, start: date, end: date) -> int:
        """Refetch one symbol's bars in [start, end] (``list_aggs``) and fill its holes in the sessions the
        store already holds. Sessions the store lacks are left to ``backfill``: a day holding one symbol
        would otherwise count as a stored full-market day. Returns the bars written."""
        store = self._store(store)
        with data_run(self.db, "repair", SOURCE, self.counters) as run:
            table = self._symbol_aggs(symbol, start, end)
            got = table["date"].to_numpy().astype("datetime64[D]")
            stored = store.stored_dates(start, end)
            table = table.filter(pa.array(np.isin(got, stored)))
            written = store.write(table)
            # Sessions the source answered without a bar: the symbol did not trade (a halt). Recorded so
            # the nightly repair does not ask for them again (``answered_empty``).
            empty = [str(d) for d in np.setdiff1d(calendar.sessions(start, end), got)]
            run.detail.update({"symbol": symbol, "start": str(start), "end": str(end), "bars": written,
                               "empty": empty})
        return written

    def answered_empty(self) -> dict[str, set[date]]:
        """symbol -> sessions a completed ``repair`` asked for and the source answered without a bar."""
        if self.db is None:
            return {}
        from engine.db import read_scope

        out: dict[str, set[date]] = {}
        with read_scope(self.db) as session:
            runs = session.exec(select(DataRun).where(DataRun.kind == "repair", DataRun.source == SOURCE,
                                                      DataRun.outcome == "ok")).all()
            for r in runs:
                sym, empty = r.detail.get("symbol"), r.detail.get("empty") or []
                if sym and empty:
                    out.setdefault(str(sym), set()).update(date.fromisoformat(d) for d in empty)
        return out

    def update(
        self,
        store: BarStore | None = None,
        progress: Callable[[int, int], None] | None = None,
        splits: bool = True,
    ) -> FillReport:
        """The sessions after the newest stored one up to the last completed session (a first update
        backfills the default two years), then a split check since the previous one."""
        store = self._store(store)
        newest = self._newest_done(store)
        if newest is None:
            return self.backfill(store, progress=progress)
        last = last_completed_session(self._now())
        wanted = calendar.sessions(calendar.next_session(newest), last) if newest < last else _no_days()
        listed = None
        if splits:
            # Invalidate first: evict cached days fetched before a new split before the fill can read them.
            listed = self.list_splits(self._split_check_start(store))
            self.evict_before_splits(listed)
        report = self._fill(store, wanted, "update", progress)
        if listed is not None:
            self.check_splits(store, since=self._split_check_start(store), listed=listed)
        return report

    def list_splits(self, since: date) -> list[Split]:
        """Splits executed on or after ``since`` (every page of ``list_splits``)."""
        out: list[Split] = []
        for page in self._pages(
            f"splits since {since}",
            lambda: self._rest.list_splits(
                execution_date_gte=since.isoformat(), order="asc", sort="execution_date", limit=1000, raw=True
            ),
        ):
            for s in page:
                split = Split.from_result(s)
                if split is not None:
                    out.append(split)
        return out

    def evict_before_splits(self, splits: list[Split]) -> int:
        """Evict cached grouped days fetched before the latest of ``splits`` already executed (run before
        a fill, so no pre-split cached day is stored after the split)."""
        today = self._now().astimezone(NEW_YORK).date()
        done = [s.executed for s in splits if s.executed <= today]
        if not done or self.cache is None:
            return 0
        return self._evict_grouped_fetched_before(max(done))

    def check_splits(
        self, store: BarStore | None = None, since: date | None = None, listed: list[Split] | None = None
    ) -> SplitReport:
        """Find splits executed since ``since`` (``list_splits``); a symbol whose stored bars were fetched
        before its split executed holds unadjusted prices: its history is refetched (``list_aggs``,
        adjusted) and replaces the stored one, and cached grouped days fetched before the split are
        evicted. Handled splits are remembered in the ``DataRun`` rows, so each is acted on once."""
        store = self._store(store)
        report = SplitReport()
        today = self._now().astimezone(NEW_YORK).date()
        since = since or today - timedelta(days=30)
        with data_run(self.db, "check_splits", SOURCE, self.counters) as run:
            splits = self.list_splits(since) if listed is None else listed
            report.splits_seen = len(splits)
            handled, pending = self._handled_splits()
            new = sorted({(s.ticker, s.executed) for s in splits
                          if s.executed <= today and (s.ticker, s.executed.isoformat()) not in handled})
            run.detail.update({"since": str(since), "until": str(today), "splits": len(splits)})
            affected, stale_before = self._stale_symbols(store, new, pending)
            # Invalidate first: cached grouped days fetched before a split hold unadjusted prices, and a
            # fill reading them after this point would store them again.
            if stale_before is not None and self.cache is not None:
                report.cache_days_evicted = self._evict_grouped_fetched_before(stale_before)
            if affected:
                stored = store.stored_dates()
                first, last = stored[[0, -1]].astype(object)
                refetched = {}
                for sym in sorted(affected):
                    table = self._symbol_aggs(sym, first, last)
                    # Only sessions the store already holds: a session holding one symbol would count as
                    # a stored full-market day and never be backfilled for the others.
                    keep = np.isin(table["date"].to_numpy().astype("datetime64[D]"), stored)
                    refetched[sym] = table.filter(pa.array(keep))
                current = store.load(first, last, sorted(affected), dtype=np.float64)
                needs_delete = []
                for sym, table in refetched.items():
                    old = current.dates[np.isfinite(current.close[:, list(current.symbols).index(sym)])]
                    if len(np.setdiff1d(old, table["date"].to_numpy().astype("datetime64[D]"))):
                        needs_delete.append(sym)
                if needs_delete:
                    # Rows the refetch does not replace must go; note them first so a crash between the
                    # delete and the write is finished by the next check.
                    self._note_run(run, {"pending": needs_delete})
                    store.delete_symbols(needs_delete)
                tables = [t for t in refetched.values() if t.num_rows]
                report.bars_written = store.write(pa.concat_tables(tables)) if tables else 0
                report.symbols_refetched = sorted(affected)
            run.detail.update(
                {
                    "handled": [[t, d.isoformat()] for t, d in new] + [[t, d] for t, d in pending],
                    "pending": [],
                    "refetched": report.symbols_refetched,
                    "cache_days_evicted": report.cache_days_evicted,
                }
            )
        return report

    def _handled_splits(self) -> tuple[set[tuple[str, str]], list[tuple[str, str]]]:
        if self.db is None:
            return set(), []
        from engine.db import session_scope

        handled: set[tuple[str, str]] = set()
        pending: list[tuple[str, str]] = []
        with session_scope(self.db) as session:
            runs = session.exec(select(DataRun).where(DataRun.kind == "check_splits", DataRun.source == SOURCE))
            for r in runs.all():
                if r.outcome == "ok":
                    handled.update((t, d) for t, d in r.detail.get("handled", []))
                else:
                    pending.extend((s, f"pending-run-{r.id}") for s in r.detail.get("pending", []))
        return handled, [p for p in pending if p not in handled]

    def _stale_symbols(
        self, store: BarStore, splits: list[tuple[str, date]], pending: list[tuple[str, str]]
    ) -> tuple[set[str], date | None]:
        """Symbols whose stored bars predate a split and were fetched before it executed; plus the latest
        such execution date (cached days fetched before it hold unadjusted prices)."""
        affected = {sym for sym, _ in pending}
        stale_before: date | None = None
        if not splits:
            return affected, stale_before
        fetched = {b.trade_date: b.stored_at for b in self._bar_days()}
        symbols = sorted({t for t, _ in splits})
        have = store.stored_dates()
        if not len(have):
            return affected, max(d for _, d in splits)
        panel = store.load(symbols=symbols, dtype=np.float32)
        column = {s: i for i, s in enumerate(panel.symbols)}
        for ticker, executed in splits:
            stale_before = max(stale_before or executed, executed)
            if ticker not in column:
                continue
            days = panel.dates[np.isfinite(panel.close[:, column[ticker]])]
            split_start = datetime(executed.year, executed.month, executed.day, tzinfo=NEW_YORK)
            for d in days[days < np.datetime64(executed, "D")]:
                stamp = fetched.get(d.astype(object))
                if stamp is None or _aware(stamp) < split_start:
                    affected.add(ticker)
                    break
        return affected, stale_before

    def _evict_grouped_fetched_before(self, executed: date) -> int:
        assert self.cache is not None
        index_key = (SOURCE, "grouped-fetch-dates")
        with self._lock:
            dates = set(self.cache.peek(index_key, set()))
            old = {d for d in dates if d < executed.isoformat()}
            evicted = sum(self.cache.evict(GROUPED_TAG_PREFIX + d) for d in old)
            self.cache.set(index_key, dates - old)
        return evicted

    def _split_check_start(self, store: BarStore) -> date:
        """Since the previous successful split check (a week of overlap), else since the first stored day."""
        if self.db is not None:
            from engine.db import session_scope

            with session_scope(self.db) as session:
                runs = session.exec(
                    select(DataRun).where(
                        DataRun.kind == "check_splits", DataRun.source == SOURCE, DataRun.outcome == "ok"
                    )
                ).all()
            untils = [date.fromisoformat(r.detail["until"]) for r in runs if r.detail.get("until")]
            if untils:
                return max(untils) - timedelta(days=7)
        have = store.stored_dates()
        return have[0].astype(object) if len(have) else self._now().date() - timedelta(days=30)

