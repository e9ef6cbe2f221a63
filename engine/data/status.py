"""`data status`: what the bar store holds and what the data jobs cost.

Coverage comes from the bar store and the ``BarDay`` rows (first and last stored session, sessions stored,
gaps against the NYSE calendar, sessions the provider answered empty, symbols on the last day); cost comes
from the ``DataRun`` rows (requests, cache hits and misses, hit rate, the last run of each kind).

The cache hit rate is the response cache's own (hits / lookups); sessions the bar store answered are
counted apart, as requests avoided (see ``engine.data.cache``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import select

from engine.config import Settings
from engine.data import calendar
from engine.data.barstore import BarStore
from engine.models import BarDay, DataRun

__all__ = ["data_status", "format_status"]

MAX_GAPS_LISTED = 20


def data_status(settings: Settings, source: str | None = None, recent_runs: int = 8) -> dict[str, Any]:
    source = source or settings.data_source.value
    store = BarStore(settings.bar_store_dir, source)
    stored = store.stored_dates()
    out: dict[str, Any] = {
        "source": source,
        "store_dir": str(store.dir),
        "store_mb": round(store.size_bytes() / 1e6, 1),
        "sessions_stored": len(stored),
        "first": str(stored[0]) if len(stored) else None,
        "last": str(stored[-1]) if len(stored) else None,
        "database": "ok",
    }
    bar_days: list[BarDay] = []
    runs: list[DataRun] = []
    try:
        from engine.db import get_engine, session_scope

        with session_scope(get_engine(settings.db_url)) as session:
            bar_days = list(session.exec(select(BarDay).where(BarDay.source == source)).all())
            runs = list(
                session.exec(
                    select(DataRun).where(DataRun.source == source).order_by(DataRun.started_at.desc())  # type: ignore[attr-defined]
                ).all()
            )
    except (OperationalError, ProgrammingError):
        out["database"] = "not initialised (run `python -m engine init`)"

    empty = np.array(sorted(b.trade_date for b in bar_days if b.symbols == 0), dtype="datetime64[D]")
    out["empty_sessions"] = len(empty)
    if len(stored):
        expected = calendar.sessions(stored[0], stored[-1])
        gaps = np.setdiff1d(expected, np.union1d(stored, empty))
        out["expected_sessions"] = len(expected)
        out["gaps"] = len(gaps)
        out["gap_dates"] = [str(d) for d in gaps[:MAX_GAPS_LISTED]]
        last_day = stored[-1].astype(object)
        counted = {b.trade_date: b.symbols for b in bar_days}
        out["symbols_last_day"] = int(counted.get(last_day) or store.load(last_day, last_day).n_symbols)
    else:
        out.update({"expected_sessions": 0, "gaps": 0, "gap_dates": [], "symbols_last_day": 0})
    stamps = [b.stored_at for b in bar_days if b.stored_at is not None]
    out["last_update"] = max(stamps).isoformat(timespec="seconds") if stamps else None

    requests = sum(r.requests for r in runs)
    hits = sum(r.cache_hits for r in runs)
    misses = sum(r.cache_misses for r in runs)
    out["runs_recorded"] = len(runs)
    out["requests_total"] = requests
    out["cache_hits_total"] = hits
    out["cache_misses_total"] = misses
    out["cache_hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None  # response cache only
    avoided = [(r.detail or {}).get("requests_avoided") or {} for r in runs]
    out["requests_avoided_by_bar_store_total"] = sum(a.get("avoided_by_bar_store", 0) for a in avoided)
    out["recent_runs"] = [_run_row(r) for r in runs[:recent_runs]]
    cache_dir = settings.cache_dir
    if cache_dir.exists():
        from engine.data.cache import DataCache

        cache = DataCache(cache_dir)
        out["cache_entries"] = len(cache)
        out["cache_mb"] = round(cache.volume_bytes() / 1e6, 1)
        cache.close()
    else:
        out["cache_entries"], out["cache_mb"] = 0, 0.0
    return out


def _run_row(run: DataRun) -> dict[str, Any]:
    lookups = run.cache_hits + run.cache_misses
    return {
        "kind": run.kind,
        "started": _iso(run.started_at),
        "seconds": round((run.finished_at - run.started_at).total_seconds(), 1)
        if run.finished_at and run.started_at
        else None,
        "outcome": run.outcome if run.finished_at or run.outcome != "running" else "running or killed",
        "requests": run.requests,
        "hit_rate": round(run.cache_hits / lookups, 3) if lookups else None,
        "days_stored": run.days_stored,
        "error": (run.detail or {}).get("error"),
    }


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else (str(value) if value else None)


def format_status(status: dict[str, Any]) -> str:
    """The status as a printable table, then the recent runs."""
    rate = status.get("cache_hit_rate")
    rows = [
        ("source", status["source"]),
        ("store", f"{status['store_dir']} ({status['store_mb']} MB)"),
        ("sessions", f"{status['sessions_stored']} stored, {status['first'] or '-'} .. {status['last'] or '-'}"),
        ("gaps vs NYSE", f"{status['gaps']} of {status['expected_sessions']} sessions"
         + (f": {', '.join(status['gap_dates'][:5])}{' ...' if status['gaps'] > 5 else ''}" if status["gaps"] else "")),
        ("empty sessions", str(status["empty_sessions"])),
        ("symbols (last day)", f"{status['symbols_last_day']:,}"),
        ("last update", status["last_update"] or "-"),
        ("requests (all runs)", f"{status['requests_total']:,} in {status['runs_recorded']} runs"),
        ("cache hit rate", "-" if rate is None else f"{rate:.1%} ({status['cache_hits_total']:,} hits, "
         f"{status['cache_misses_total']:,} misses)"),
        ("avoided by the bar store", f"{status.get('requests_avoided_by_bar_store_total', 0):,} requests"),
        ("cache", f"{status['cache_entries']:,} entries, {status['cache_mb']} MB"),
        ("database", status["database"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if status["recent_runs"]:
        header = f"  {'started':<19}  {'kind':<12} {'outcome':<17} {'req':>6} {'hit':>6} {'days':>5}"
        lines += ["", "recent runs:", header]
        for r in status["recent_runs"]:
            hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.0%}"
            lines.append(
                f"  {(r['started'] or '-')[:19]:<19}  {r['kind']:<12} {r['outcome']:<17} {r['requests']:>6} "
                f"{hit:>6} {r['days_stored']:>5}" + (f"  {r['error']}" if r["error"] else "")
            )
    return "\n".join(lines)
