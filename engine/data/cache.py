"""A disk cache (diskcache, under ``settings.cache_dir``) for responses that do not change and for
analysis results, with hit/miss counts that every data job records in its ``DataRun`` row.

What goes in it:

- past sessions' grouped daily bars, as zstd-compressed Arrow IPC bytes (~1 MB for a 32k-symbol
  day). The bar store is the first place a day is looked up; the cache is what makes a killed
  backfill resume without re-requesting the days it had fetched but not yet written to the store,
  and a rebuilt store cost no requests. A split makes cached pre-split days of that symbol stale:
  ``check_splits`` evicts the affected days (see ``engine.data.massive``).
- reference data (ticker universe, splits) with an expiry;
- analysis results via ``memo`` (key: a tuple; value: anything picklable).

Two numbers, never mixed (``Counters``):

- the response cache's hit rate: diskcache hits / diskcache lookups (``cache_hits``, ``cache_misses``;
  a lookup made without a cache configured counts as a miss). A session answered by the bar store is
  not a cache lookup at all;
- requests avoided: of the requests a job would have needed (one per lookup), how many each source
  answered instead (``store_hits`` for the bar store, ``cache_hits`` for the response cache), against
  the ``requests`` actually made (every HTTP attempt, retries included).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import diskcache
import pyarrow as pa
from sqlalchemy.engine import Engine

from engine.models import DataRun, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING = object()
DEFAULT_SIZE_LIMIT = 4 * 2**30  # 4 GiB: ~4,000 full-market days; least recently stored goes first


@dataclass
class Counters:
    """Requests and cache lookups; a job records the difference between its start and end values."""

    requests: int = 0
    cache_hits: int = 0  # response cache (diskcache) only
    cache_misses: int = 0
    store_hits: int = 0  # lookups answered by the bar store: requests avoided, not cache hits

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.requests - other.requests, self.cache_hits - other.cache_hits,
            self.cache_misses - other.cache_misses, self.store_hits - other.store_hits,
        )

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.requests + other.requests, self.cache_hits + other.cache_hits,
            self.cache_misses + other.cache_misses, self.store_hits + other.store_hits,
        )

    @property
    def hit_rate(self) -> float | None:
        """Response-cache hits / response-cache lookups (None without lookups)."""
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else None

    @property
    def requests_needed(self) -> int:
        """Requests the job would have made with neither the bar store nor the cache (one per lookup)."""
        return self.store_hits + self.cache_hits + self.cache_misses

    def avoided(self) -> dict[str, Any]:
        """Requests avoided per source, against those that would have been needed."""
        needed = self.requests_needed
        saved = self.store_hits + self.cache_hits
        return {
            "requests_needed": needed,
            "avoided_by_bar_store": self.store_hits,
            "avoided_by_response_cache": self.cache_hits,
            "requests_made": self.requests,
            "avoided_rate": round(saved / needed, 4) if needed else None,
        }


class DataCache:
    def __init__(self, directory: Path | str, size_limit: int = DEFAULT_SIZE_LIMIT) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(self.directory), size_limit=size_limit, eviction_policy="least-recently-stored"
        )
        self.stats = Counters()
        self._lock = threading.Lock()  # backfill workers look up from several threads

    @classmethod
    def from_settings(cls, settings: Any) -> DataCache:
        return cls(settings.cache_dir)

    # --- lookups (counted) -----------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = self._cache.get(key, default=_MISSING, retry=True)
        with self._lock:
            if value is _MISSING:
                self.stats.cache_misses += 1
                return default
            self.stats.cache_hits += 1
        return value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """A lookup that is not counted (bookkeeping entries, not data)."""
        return self._cache.get(key, default=default, retry=True)

    def memo(self, key: Hashable, compute: Callable[[], T], expire: float | None = None, tag: str | None = None) -> T:
        """The cached value for ``key``, computing and storing it on a miss (analysis results)."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = compute()
            self.set(key, value, expire=expire, tag=tag)
        return value  # type: ignore[no-any-return]

    # --- writes and housekeeping (not counted) ---------------------------------------------------

    def set(self, key: Hashable, value: Any, expire: float | None = None, tag: str | None = None) -> None:
        self._cache.set(key, value, expire=expire, tag=tag, retry=True)

    def contains(self, key: Hashable) -> bool:
        return key in self._cache

    def delete(self, key: Hashable) -> bool:
        return bool(self._cache.delete(key, retry=True))

    def evict(self, tag: str) -> int:
        return int(self._cache.evict(tag, retry=True))

    def keys(self) -> Iterator[Hashable]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def volume_bytes(self) -> int:
        return int(self._cache.volume())

    def clear(self) -> int:
        return int(self._cache.clear(retry=True))

    def close(self) -> None:
        self._cache.close()


# --- Arrow tables as cache values ----------------------------------------------------------------


def table_to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_bytes(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


# --- DataRun rows ----------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """What a job reports besides the counters: sessions stored, and free-form detail (JSON)."""

    id: int | None = None
    days_stored: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)


@contextmanager
def data_run(
    db: Engine | None, kind: str, source: str, counters: Callable[[], Counters]
) -> Iterator[RunRecord]:
    """Record one data job as a ``DataRun`` row: written as ``running`` at the start (so a killed job
    leaves a trace), completed with the requests and cache lookups it made and its outcome."""
    from engine.db import session_scope

    start = counters()
    record = RunRecord()
    if db is not None:
        with session_scope(db) as session:
            row = DataRun(kind=kind, source=source, outcome="running")
            session.add(row)
            session.flush()
            record.id = row.id
    outcome = "ok"
    try:
        yield record
    except KeyboardInterrupt:
        outcome = "interrupted"
        record.detail["error"] = "interrupted"
        raise
    except BaseException as exc:
        from engine.data.ratelimit import describe_error

        outcome = "error"
        record.detail["error"] = describe_error(exc, kind)
        raise
    finally:
        record.counters = counters() - start
        if record.counters.hit_rate is not None:
            record.detail.setdefault("hit_rate", round(record.counters.hit_rate, 4))
        if record.counters.requests_needed:
            record.detail.setdefault("requests_avoided", record.counters.avoided())
        if db is not None and record.id is not None:
            try:
                with session_scope(db) as session:
                    row = session.get(DataRun, record.id)
                    if row is not None:
                        row.finished_at = utcnow()
                        row.requests = record.counters.requests
                        row.cache_hits = record.counters.cache_hits
                        row.cache_misses = record.counters.cache_misses
                        row.days_stored = record.days_stored
                        row.outcome = outcome
                        row.detail = dict(record.detail)
                        session.add(row)
            except Exception:  # recording must never hide the job's own error
                log.exception("could not record data run %s", record.id)
