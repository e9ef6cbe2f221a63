"""Scan runs: load the panel from the configured source, run the gate and a strategy, store the run.

The same (strategy, data source, data date, parameters, universe) is computed once: a second request
returns the stored run and counts a cache hit on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine import strategies
from engine.config import Settings
from engine.data import calendar
from engine.data.barstore import BarStore
from engine.data.panel import Panel
from engine.data.sources import bar_store
from engine.data.universe import sectors, tradable_symbols
from engine.db import session_scope
from engine.models import ScanResult, ScanRun, Signal

STRATEGY = "atr_matrix"
LOOKBACK_MARGIN = 60  # sessions beyond the longest indicator window, so the gate sees history


@dataclass(frozen=True)
class ScanOutcome:
    run: ScanRun
    cache_hit: bool
    results: pd.DataFrame | None  # None on a cache hit (read them with latest_results)


def params_hash(params: object) -> str:
    dumped = params.model_dump(mode="json") if hasattr(params, "model_dump") else params
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def lookback_sessions(params: object) -> int:
    longest = max(getattr(params, "sma_slow", 200), getattr(params, "min_history", 200))
    return int(longest) + LOOKBACK_MARGIN


def load_scan_panel(store: BarStore, as_of: date, sessions: int, symbols: list[str] | None,
                    dtype: type = np.float32) -> Panel:
    start = calendar.sessions_back(as_of, sessions)[0].astype(object)
    panel = store.load(start, as_of, dtype=dtype)
    if symbols is not None:
        wanted = set(symbols)
        panel = panel.select([s for s in panel.symbols if s in wanted])
    return panel


def run_scan(settings: Settings, engine: Engine, as_of: date | None = None, max_symbols: int | None = None,
             progress: Callable[[str], None] | None = None) -> ScanOutcome:
    strategy = strategies.get(STRATEGY)
    params = settings.strategy
    store = bar_store(settings)
    stored = store.stored_dates(end=as_of)
    if len(stored) == 0:
        raise LookupError(
            f"no daily bars stored for source {store.source!r} up to {as_of}: run `python -m engine init`")
    data_date = stored[-1].astype(object)
    with session_scope(engine) as session:
        universe = tradable_symbols(session)
        sector_of = sectors(session)
    if max_symbols is not None:
        universe = universe[:max_symbols]
    key = params_hash({"params": params.model_dump(mode="json"),
                       "universe": hashlib.sha256("\n".join(universe).encode()).hexdigest()})
    with session_scope(engine) as session:
        cached = session.exec(select(ScanRun).where(
            ScanRun.strategy == STRATEGY, ScanRun.data_source == store.source, ScanRun.data_date == data_date,
            ScanRun.params_hash == key, ScanRun.status == "ok")).first()
        if cached is not None:
            cached.cache_hits += 1
            session.add(cached)
            # The parameters may have changed since (3 -> 5 -> 3): this run's signals become current again.
            sync_signals(session, cached)
            return ScanOutcome(cached, True, None)

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    if progress:
        progress(f"loading {lookback_sessions(params)} sessions of bars up to {data_date}")
    panel = load_scan_panel(store, data_date, lookback_sessions(params), universe or None)
    t1 = time.perf_counter()
    if progress:
        progress(f"scanning {panel.n_symbols:,} symbols")
    frame = scan_with_float64_ties(strategy, panel, params,
                                   lambda syms: load_scan_panel(store, data_date, lookback_sessions(params), syms,
                                                                dtype=np.float64))
    t2 = time.perf_counter()
    frame["sector"] = [sector_of.get(s, "") for s in frame["symbol"]]
    run = _store_run(engine, frame, store.source, data_date, key, params, started, t1 - t0, t2 - t1)
    return ScanOutcome(run, False, frame)


def scan_with_float64_ties(strategy: Any, panel: Panel, params: object,
                           load64: Callable[[list[str]], Panel]) -> pd.DataFrame:
    """The strategy's scan on ``panel`` (float32 for speed), with every symbol lying within 1e-6 (relative)
    of a rule's threshold recomputed from float64 bars (``load64``), so input rounding cannot decide a tie
    (DESIGN §4 precision). The table is re-ranked after the swap."""
    from engine.strategies.atr_matrix import borderline

    frame = strategy.scan(panel, params)
    if panel.close.dtype == np.float64 or frame.empty:
        return frame
    close_calls = frame.loc[borderline(frame, params), "symbol"].tolist()
    if not close_calls:
        return frame
    exact = strategy.scan(load64(close_calls), params)
    rest = frame[~frame["symbol"].isin(set(exact["symbol"]))]
    merged = pd.concat([rest, exact], ignore_index=True) if len(rest) else exact
    merged["_excluded"] = merged["excluded_reason"].notna()
    merged["_signal"] = merged["signal"].fillna(False).astype(bool)
    merged = merged.sort_values(["_excluded", "_signal", "score", "atr_distance"],
                                ascending=[True, False, False, True], kind="stable", na_position="last")
    return merged.drop(columns=["_excluded", "_signal"]).reset_index(drop=True)


def reason_code(reason: str) -> str:
    """The stable code at the start of an exclusion reason ("insufficient_history: 120 bars" -> ...)."""
    match = re.match(r"[a-z_]+", reason.strip())
    return match.group(0) if match else reason.strip()


def _store_run(engine: Engine, frame: pd.DataFrame, source: str, data_date: date, key: str, params: object,
               started: datetime, load_s: float, compute_s: float) -> ScanRun:
    t0 = time.perf_counter()
    excluded = frame["excluded_reason"].dropna()
    by_reason = Counter(reason_code(r) for reason in excluded for r in str(reason).split("; "))
    included = frame[frame["excluded_reason"].isna()]
    n = max(len(included), 1)
    breadth = {
        "above_sma50": float((included["close"] > included["sma50"]).sum() / n),
        "entry_zone": float((included["zone"] == "entry").sum() / n),
        "extended": float(included["zone"].isin(["extended", "scale_out", "exhausted"]).sum() / n),
        "included": len(included),
    }
    with session_scope(engine) as session:
        run = ScanRun(strategy=STRATEGY, data_source=source, data_date=data_date, params_hash=key,
                      params=params.model_dump(mode="json"), started_at=started, load_seconds=load_s,  # type: ignore[attr-defined]
                      compute_seconds=compute_s, n_scanned=len(frame), n_excluded=len(excluded),
                      n_signals=int(frame["signal"].fillna(False).astype(bool).sum()),
                      excluded_by_reason=dict(by_reason),
                      breadth=breadth, cache_misses=1, status="running")
        session.add(run)
        session.flush()
        _insert_results(session, run.id, frame)
        session.flush()
        sync_signals(session, run)
        run.store_seconds = time.perf_counter() - t0
        run.finished_at = datetime.now(timezone.utc)
        run.status = "ok"
    return run


_RESULT_FIELDS = ("symbol", "sector", "close", "atr", "sma20", "sma50", "sma100", "sma200", "ema10", "atr_distance",
                  "atr_pct", "ma_aligned", "range_pos_20", "dollar_volume_20", "zone", "score", "signal", "stop",
                  "target_1", "target_2", "target_3", "target_4", "excluded_reason")


def _clean(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _insert_results(session: Session, run_id: int, frame: pd.DataFrame) -> None:
    cols = [c for c in _RESULT_FIELDS if c in frame.columns]
    records = frame[cols].to_dict("records")
    rows = [{"scan_run_id": run_id, "rank": i + 1, **{k: _clean(v) for k, v in r.items()}}
            for i, r in enumerate(records)]
    for row in rows:
        row["signal"] = bool(row.get("signal") or False)
    for i in range(0, len(rows), 5000):
        session.execute(insert(ScanResult), rows[i : i + 5000])


SIGNAL_OPEN = "new"
NEUTRAL_ZONES = ("extended",)
SIGNAL_RETIRED = "retired"


def sync_signals(session: Session, run: ScanRun) -> dict[str, int]:
    """Make the day's signals those of ``run``, the newest scan for the current parameters.

    A signal ``run`` produces is (re)written from its result row and points at ``run``; a signal of the same
    day that ``run`` no longer produces and nobody acted on yet is retired (e.g. after ``min_atr_pct`` 3 -> 5),
    and comes back if a later scan produces it again. Signals already acted on (candidates built, ordered,
    skipped) keep their history. The pre-market trades only signals whose ``scan_run_id`` is its run."""
    counts = {"written": 0, "retired": 0}
    longs = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id, ScanResult.signal)
                         .order_by(ScanResult.rank)).all()
    params = run.params or {}
    # Neutral setups (DESIGN §5): liquid symbols of the extended zone, where no new long is taken but rich
    # premium may be sold in an iron condor (the candidate step checks IV rank >= 70).
    neutral = session.exec(select(ScanResult).where(
        ScanResult.scan_run_id == run.id, ScanResult.excluded_reason.is_(None),
        ScanResult.zone.in_(NEUTRAL_ZONES), ScanResult.close >= float(params.get("min_close", 10.0)),
        ScanResult.dollar_volume_20 >= float(params.get("min_dollar_volume", 20_000_000.0)))
        .order_by(ScanResult.rank)).all()
    for direction, hits in (("long", longs), ("neutral", neutral)):
        for key, n in _sync_direction(session, run, direction, hits).items():
            counts[key] += n
    session.flush()
    return counts


def _sync_direction(session: Session, run: ScanRun, direction: str, hits: Sequence[ScanResult]) -> dict[str, int]:
    existing = {sig.symbol: sig for sig in session.exec(select(Signal).where(
        Signal.strategy == run.strategy, Signal.data_date == run.data_date, Signal.direction == direction)).all()}
    counts = {"written": 0, "retired": 0}
    produced = set()
    for r in hits:
        produced.add(r.symbol)
        values = {k: v for k, v in r.model_dump().items() if k not in ("id", "scan_run_id")}
        long = direction == "long"  # a neutral setup (iron condor) has its own levels, not the long ATR ones
        fields = {"scan_run_id": run.id, "score": float(r.score or 0.0), "zone": str(r.zone),
                  "entry_price": float(r.close or 0.0), "atr": float(r.atr or 0.0),
                  "stop": float(r.stop or 0.0) if long else 0.0,
                  "targets": [r.target_1, r.target_2, r.target_3, r.target_4] if long else [], "values": values}
        sig = existing.get(r.symbol)
        if sig is None:
            session.add(Signal(strategy=run.strategy, symbol=r.symbol, data_date=run.data_date, direction=direction,
                               **fields))
        elif sig.status in (SIGNAL_OPEN, SIGNAL_RETIRED):
            for key, value in fields.items():
                setattr(sig, key, value)
            sig.status = SIGNAL_OPEN
            session.add(sig)
        else:
            continue
        counts["written"] += 1
    for symbol, sig in existing.items():
        if symbol not in produced and sig.status == SIGNAL_OPEN:
            sig.status = SIGNAL_RETIRED
            sig.values = {**sig.values, "retired_by_scan_run": run.id}
            session.add(sig)
            counts["retired"] += 1
    return counts


def current_signals(session: Session, run: ScanRun, limit: int | None = None,
                    direction: str = "long") -> list[Signal]:
    """The open signals of ``run`` in the scan's own order (signals first, score, lower atr_distance);
    ``direction`` "neutral" gives the extended-zone setups for iron condors."""
    query = (select(Signal).join(ScanResult, (ScanResult.scan_run_id == Signal.scan_run_id)
                                 & (ScanResult.symbol == Signal.symbol))
             .where(Signal.scan_run_id == run.id, Signal.status == SIGNAL_OPEN, Signal.direction == direction)
             .order_by(ScanResult.rank))
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def latest_run(session: Session, source: str | None = None) -> ScanRun | None:
    from engine.readings import latest_scan

    return latest_scan(session, source)


def results_frame(session: Session, run_id: int, limit: int | None = None,
                  signals_first: bool = False) -> pd.DataFrame:
    query = select(ScanResult).where(ScanResult.scan_run_id == run_id)
    if signals_first:
        query = query.order_by(ScanResult.signal.desc(), ScanResult.rank)
    else:
        query = query.order_by(ScanResult.rank)
    if limit:
        query = query.limit(limit)
    rows = session.exec(query).all()
    return pd.DataFrame([r.model_dump() for r in rows])
