"""Full-market daily bars on Massive: one grouped-daily request per session, kept in the bar store."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

import numpy as np
import pyarrow as pa
from sqlmodel import select

from engine.data import calendar
from engine.data.barstore import BarStore
from engine.data.cache import data_run, table_from_bytes, table_to_bytes
from engine.data.massive_http import NEW_YORK, SOURCE, UTC, MassiveHttp
from engine.data.massive_parse import grouped_to_table
from engine.data.panel import Panel
from engine.models import BarDay

log = logging.getLogger(__name__)

DEFAULT_BACKFILL_DAYS = 504  # two years of sessions
MAX_BACKFILL_DAYS = 15 * 252  # fifteen years
SETTLE_DAYS = 3  # an empty or fresh day younger than this (calendar days) may still change upstream
PUBLISH_DELAY = timedelta(minutes=30)  # grouped bars of a session are asked for this long after its close
GROUPED_TAG_PREFIX = "massive:grouped:"  # + fetch date; used to evict pre-split cached days


def last_completed_session(now: datetime) -> date:
    """The newest session whose grouped daily bars should be published at ``now`` (tz-aware)."""
    return calendar.last_completed_session(now, PUBLISH_DELAY)



@dataclass
class FillReport:
    kind: str
    sessions_wanted: int = 0
    sessions_in_store: int = 0  # answered by the bar store (or recorded empty): no request
    sessions_from_cache: int = 0  # answered by the response cache: no request
    sessions_requested: int = 0
    empty_sessions_recorded: int = 0
    not_yet_published: list[str] = field(default_factory=list)
    days_stored: int = 0
    bars_stored: int = 0
    requests: int = 0
    seconds: float = 0.0
    first: str | None = None
    last: str | None = None

    @property
    def hit_rate(self) -> float | None:
        """Response-cache hits / response-cache lookups (the sessions the store lacked); None when the
        bar store answered every session and the cache was never asked."""
        lookups = self.sessions_from_cache + self.sessions_requested
        return self.sessions_from_cache / lookups if lookups else None

    @property
    def avoided_rate(self) -> float:
        """Requests avoided (bar store or cache) / requests needed (one per wanted session); 1.0 when
        nothing was wanted."""
        if not self.sessions_wanted:
            return 1.0
        return (self.sessions_in_store + self.sessions_from_cache) / self.sessions_wanted

    def as_dict(self) -> dict[str, Any]:
        rate = self.hit_rate
        return {**asdict(self), "hit_rate": None if rate is None else round(rate, 4),
                "avoided_rate": round(self.avoided_rate, 4)}



class MassiveBars(MassiveHttp):
    """Daily bars: backfill, update and the bar-store bookkeeping (BarDay rows)."""

    def daily_bars(
        self, start: date, end: date, symbols: Sequence[str] | None = None, dtype: type = np.float64
    ) -> Panel:
        """Bars for the sessions in [start, end] from the store, fetching the sessions it lacks first."""
        store = self._store(None)
        last = min(end, last_completed_session(self._now()))
        if start <= last:
            wanted = calendar.sessions(start, last)
            if len(wanted) and len(self._missing(store, wanted)):
                self._fill(store, wanted, "daily_bars", None)
        return store.load(start, end, symbols, dtype=dtype)

    def backfill(
        self,
        store: BarStore | None = None,
        days: int = DEFAULT_BACKFILL_DAYS,
        progress: Callable[[int, int], None] | None = None,
        end: date | None = None,
    ) -> FillReport:
        """Full-market daily bars for the ``days`` sessions ending at ``end`` (default: the last completed
        session), one request per session not yet stored."""
        if not 1 <= days <= MAX_BACKFILL_DAYS:
            raise ValueError(f"backfill days must be 1..{MAX_BACKFILL_DAYS} (15 years), got {days}")
        end = end or last_completed_session(self._now())
        return self._fill(self._store(store), calendar.sessions_back(end, days), "backfill", progress)

    def _fill(
        self, store: BarStore, wanted: np.ndarray, kind: str, progress: Callable[[int, int], None] | None
    ) -> FillReport:
        started = time.perf_counter()
        report = FillReport(kind=kind, sessions_wanted=len(wanted))
        if len(wanted):
            report.first, report.last = str(wanted[0]), str(wanted[-1])
        with data_run(self.db, kind, SOURCE, self.counters) as run:
            self._reconcile(store, wanted)
            missing = [d.astype(object) for d in self._missing(store, wanted)]
            report.sessions_in_store = len(wanted) - len(missing)
            with self._lock:
                self._store_hits += report.sessions_in_store
            if len(missing) > 50 and self.limiter.limit is not None and self.limiter.limit < 60:
                minutes = len(missing) / self.limiter.limit
                log.warning("%d sessions to fetch at %d requests/min: about %.0f minutes", len(missing),
                            self.limiter.limit, minutes)
            writer = _DayWriter(self, store, report)
            if progress and missing:
                progress(0, len(missing))
            try:
                for i, (day, table, from_cache) in enumerate(self._days(missing), start=1):
                    if from_cache:
                        report.sessions_from_cache += 1
                    else:
                        report.sessions_requested += 1
                    writer.add(day, table)
                    if progress:
                        progress(i, len(missing))
            finally:
                writer.flush()
                report.seconds = round(time.perf_counter() - started, 3)
                run.days_stored = report.days_stored
                run.detail.update(report.as_dict())
        report.requests = run.counters.requests
        return report

    def _days(self, days: list[date]) -> Iterator[tuple[date, pa.Table, bool]]:
        """(day, bars, came from cache) in ``days`` order; with workers > 1 up to 2 x workers requests are
        in flight while earlier days are written."""
        if self.workers <= 1:
            for d in days:
                yield (d, *self._day(d))
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="massive")
        pending: deque[tuple[date, Future[tuple[pa.Table, bool]]]] = deque()
        upcoming = iter(days)
        try:
            for d in upcoming:
                pending.append((d, pool.submit(self._day, d)))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                d, fut = pending.popleft()
                table, from_cache = fut.result()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._day, nxt)))
                yield d, table, from_cache
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def settle_sessions(self, store: BarStore | None = None) -> int:
        """Re-fetch each stored session that was fetched before Massive settled it (the post-market
        stores a session 30 minutes after its close; volume, VWAP and trade counts are revised later)
        once its settle time has passed, replace its bars and mark it final. Returns sessions settled.
        Run from the pre-market."""
        if self.db is None:
            return 0
        store = self._store(store)
        now = self._now()
        due = sorted(b.trade_date for b in self._bar_days()
                     if not b.final and b.symbols > 0 and settle_time(b.trade_date) <= now)
        if not due:
            return 0
        with data_run(self.db, "settle", SOURCE, self.counters) as run:
            record: list[tuple[date, int, datetime | None]] = []
            for day in due:
                table = self._request_day(day)
                if table.num_rows:
                    store.write(table.replace_schema_metadata(None))
                    record.append((day, table.num_rows, fetched_at(table)))
                if self.cache is not None and self._settled(day):
                    self._cache_grouped((SOURCE, "grouped", day.isoformat(), self.adjusted), table)
            self._record_days(record)
            run.days_stored = len(record)
            run.detail.update({"settled": [d.isoformat() for d, _, _ in record]})
        return len(record)

    def _request_day(self, day: date) -> pa.Table:
        body = self._call(
            f"grouped daily bars {day}",
            lambda: self._rest.get_grouped_daily_aggs(day.isoformat(), adjusted=self.adjusted, raw=True),
        )
        return _stamped(grouped_to_table(body, day), self._now())

    def _day(self, day: date) -> tuple[pa.Table, bool]:
        key = (SOURCE, "grouped", day.isoformat(), self.adjusted)
        if self.cache is not None:
            data = self.cache.get(key)
            if data is not None:
                return table_from_bytes(data), True
        else:
            self._count_uncached_miss()
        table = self._request_day(day)
        if self.cache is not None and self._settled(day):
            self._cache_grouped(key, table)
        return table, False

    def _cache_grouped(self, key: tuple[Any, ...], table: pa.Table) -> None:
        assert self.cache is not None
        fetched = self._now().astimezone(NEW_YORK).date().isoformat()
        self.cache.set(key, table_to_bytes(table), tag=GROUPED_TAG_PREFIX + fetched)
        with self._lock:
            index_key = (SOURCE, "grouped-fetch-dates")
            dates = set(self.cache.peek(index_key, set()))  # index, not a counted lookup
            if fetched not in dates:
                self.cache.set(index_key, dates | {fetched})

    def _settled(self, day: date) -> bool:
        return (self._now().astimezone(NEW_YORK).date() - day).days >= SETTLE_DAYS

    # --- what is stored ---------------------------------------------------------------------------

    def _bar_days(self, start: date | None = None, end: date | None = None) -> list[BarDay]:
        if self.db is None:
            return []
        from engine.db import session_scope

        with session_scope(self.db) as session:
            query = select(BarDay).where(BarDay.source == SOURCE)
            if start is not None:
                query = query.where(BarDay.trade_date >= start)
            if end is not None:
                query = query.where(BarDay.trade_date <= end)
            return list(session.exec(query).all())

    def _missing(self, store: BarStore, wanted: np.ndarray) -> np.ndarray:
        if not len(wanted):
            return wanted
        lo, hi = wanted[0].astype(object), wanted[-1].astype(object)
        have = store.stored_dates(lo, hi)
        empty = np.array([b.trade_date for b in self._bar_days(lo, hi) if b.symbols == 0], dtype="datetime64[D]")
        return np.setdiff1d(wanted, np.union1d(have, empty))

    def _reconcile(self, store: BarStore, wanted: np.ndarray) -> None:
        """Give a ``BarDay`` row to every stored day in range that lacks one (a run killed between the
        store write and the row)."""
        if self.db is None or not len(wanted):
            return
        lo, hi = wanted[0].astype(object), wanted[-1].astype(object)
        have = store.stored_dates(lo, hi)
        recorded = np.array([b.trade_date for b in self._bar_days(lo, hi)], dtype="datetime64[D]")
        orphans = np.setdiff1d(have, recorded)
        if not len(orphans):
            return
        log.info("recording %d stored sessions that had no BarDay row", len(orphans))
        panel = store.load(orphans[0].astype(object), orphans[-1].astype(object))
        counts = dict(zip(panel.dates, np.isfinite(panel.close).sum(axis=1).tolist(), strict=True))
        # Unknown fetch time: the epoch, so a split check treats these days as pre-split (refetch).
        self._record_days([(d.astype(object), int(counts.get(d, 0)), UNKNOWN_FETCH) for d in orphans])

    def _record_days(self, days: list[tuple[date, int, datetime | None]]) -> None:
        """BarDay rows: (day, symbols, when the bars were fetched; None = now)."""
        if self.db is None or not days:
            return
        from engine.db import session_scope

        now = self._now().astimezone(UTC)  # stored as UTC, like every other timestamp
        with session_scope(self.db) as session:
            dates = [d for d, _, _ in days]
            existing = {
                b.trade_date: b
                for b in session.exec(
                    select(BarDay).where(BarDay.source == SOURCE, BarDay.trade_date.in_(dates))  # type: ignore[attr-defined]
                ).all()
            }
            for day, count, fetched in days:
                row = existing.get(day) or BarDay(source=SOURCE, trade_date=day)
                row.symbols = count
                row.stored_at = fetched.astimezone(UTC) if fetched is not None else now
                # Unknown fetch time (a stored day without its row, an old cache entry): final when the day
                # was already settled by the time we saw it, else provisional.
                unknown = fetched is not None and fetched <= UNKNOWN_FETCH
                row.final = row.stored_at >= settle_time(day) or (unknown and self._settled(day))
                session.add(row)

    def _newest_done(self, store: BarStore) -> date | None:
        have = store.stored_dates()
        candidates = [have[-1].astype(object)] if len(have) else []
        candidates += [b.trade_date for b in self._bar_days() if b.symbols == 0]
        return max(candidates) if candidates else None


class _DayWriter:
    """Buffers fetched days and writes them to the store in batches, then records their BarDay rows."""

    def __init__(self, market: MassiveBars, store: BarStore, report: FillReport) -> None:
        self.market, self.store, self.report = market, store, report
        self.buffer: list[tuple[date, pa.Table]] = []
        self.first_at = 0.0

    def add(self, day: date, table: pa.Table) -> None:
        if self.buffer and (
            (day.year, day.month) != (self.buffer[0][0].year, self.buffer[0][0].month)
            or len(self.buffer) >= self.market.flush_days
            or time.monotonic() - self.first_at >= self.market.flush_seconds
        ):
            self.flush()
        if not self.buffer:
            self.first_at = time.monotonic()
        self.buffer.append((day, table))

    def flush(self) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        tables = [t.replace_schema_metadata(None) for _, t in batch if t.num_rows]
        if tables:
            self.report.bars_stored += self.store.write(pa.concat_tables(tables))
        record: list[tuple[date, int, datetime | None]] = []
        for day, table in batch:
            # The BarDay stamp is when the provider delivered these bars, not when they reached the
            # store: a day cached before a split and stored after it still holds pre-split prices.
            fetched = fetched_at(table)
            if table.num_rows:
                record.append((day, table.num_rows, fetched))
                self.report.days_stored += 1
            elif self.market._settled(day):
                record.append((day, 0, fetched))
                self.report.empty_sessions_recorded += 1
            else:
                self.report.not_yet_published.append(day.isoformat())
        self.market._record_days(record)



SETTLED_AT = time_of_day(6, 0)  # New York, the calendar day after a session: Massive's revisions are in


def settle_time(day: date) -> datetime:
    """When a session's grouped bars are final: 06:00 New York the next calendar day (before the 08:30
    pre-market). Bars fetched earlier (the post-market's, 30 minutes after the close) are provisional."""
    return datetime.combine(day + timedelta(days=1), SETTLED_AT, NEW_YORK)


_FETCHED_KEY = b"qm_fetched_at"
UNKNOWN_FETCH = datetime(1970, 1, 1, tzinfo=UTC)  # cached before fetch times were recorded


def _stamped(table: pa.Table, when: datetime) -> pa.Table:
    """``table`` carrying its fetch time in the schema metadata (kept through the response cache)."""
    return table.replace_schema_metadata({_FETCHED_KEY: when.astimezone(UTC).isoformat().encode()})


def fetched_at(table: pa.Table) -> datetime:
    """When a grouped day was fetched from the provider (``UNKNOWN_FETCH`` for entries cached without it)."""
    meta = table.schema.metadata or {}
    raw = meta.get(_FETCHED_KEY)
    return datetime.fromisoformat(raw.decode()) if raw else UNKNOWN_FETCH


def _no_days() -> np.ndarray:
    return np.array([], dtype="datetime64[D]")

