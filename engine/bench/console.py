"""`python -m engine bench console`: server-side render time of every console page on a full-size database.

``bench_console()`` builds, in a temporary data directory:

* the whole simulated universe (32,345 symbols by default) with ~260 sessions of daily bars in the bar store,
  and one real ATR Matrix scan of it through ``engine.scanning.run_scan`` (a ScanResult row per symbol);
* option candidates and sized entry orders for the scan's top signals through the engine (``build_candidates``,
  ``entry_spec``, ``propose`` in manual mode, so they wait on the Approvals page);
* 200 open positions and 100 closed ones (inserted rows with realistic legs, marks, greeks, stops and targets
  from the scan), their filled orders and fills, a year of account snapshots, 2,000 job runs, 500 outbox
  messages and a scheduler heartbeat.

Then it renders every page with Streamlit's AppTest (logged in), once to warm the caches, then ``runs`` times,
and reports per page the median time of the page script (measured inside app/console.py around
``navigation.run()``, i.e. server-side, cached reads allowed). The scanner's other views (matrix of the whole
universe, candlestick chart) are reported too. Returns ``{"pages": {page: ms}, "views": {...}, "max_ms": ...}``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from engine.bench.common import table

ROOT = Path(__file__).resolve().parent.parent.parent
CONSOLE = ROOT / "app" / "console.py"
SCAN_END = date(2026, 9, 30)
SESSIONS = 262
TARGET_MS = 200.0


def _money(x: float) -> Decimal:
    return Decimal(str(round(float(x), 2)))


def _build(data_dir: Path, symbols: int, positions: int, closed: int, seed: int = 11) -> dict[str, Any]:
    from sqlmodel import Session, select

    from engine import heartbeat
    from engine.clock import NEW_YORK
    from engine.config import ApprovalMode, get_settings
    from engine.data import calendar
    from engine.data.sim import SimMarket, occ_symbol
    from engine.data.sources import bar_store, fill_bar_store
    from engine.data.universe import sectors, sync_universe
    from engine.db import get_engine, migrate, session_scope
    from engine.execution import service
    from engine.models import AccountSnapshot, Fill, JobRun, Order, Position, ScanResult, Signal
    from engine.notify import Message, enqueue
    from engine.options import candidates
    from engine.portfolio.exposure import portfolio_risk_offline
    from engine.scanning import run_scan

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    settings = get_settings()
    migrate(settings.db_url)
    db = get_engine(settings.db_url)
    market = SimMarket(seed=settings.sim_seed, n_symbols=symbols)
    with session_scope(db) as session:
        sync_universe(session, market.universe(), market.name)
    start = calendar.sessions_back(SCAN_END, SESSIONS)[0].astype(object)
    fill_bar_store(market, bar_store(settings), start, SCAN_END)
    timings["seed_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outcome = run_scan(settings, db, as_of=SCAN_END)
    timings["scan_seconds"] = time.perf_counter() - t0
    run = outcome.run

    # Candidates and waiting entry orders for the top signals, through the engine.
    t0 = time.perf_counter()
    now = datetime.combine(calendar.next_session(SCAN_END), dtime(8, 30), NEW_YORK)
    manual = settings.model_copy(update={"approval_mode": ApprovalMode.manual})
    proposed = 0
    with session_scope(db) as session:
        signal_ids = [s.id for s in session.exec(select(Signal).where(Signal.scan_run_id == run.id)
                                                 .order_by(Signal.score.desc(), Signal.id).limit(12)).all()]
    for signal_id in signal_ids:
        with session_scope(db) as session:
            sig = session.get(Signal, signal_id)
            built = candidates.build_candidates(session, market, settings, sig, now)
            if built.structure is None or built.candidate_id is None:
                continue
            portfolio = portfolio_risk_offline(session, settings, now)
            sector = sectors(session).get(sig.symbol, "")
            spec, _ = candidates.entry_spec(sig, built.candidate_id, built.structure, sector, settings, portfolio,
                                            settings.fees.open_cost_per_contract_leg)
            if spec is not None and proposed < 6:
                service.propose(session, spec, manual, now)
                proposed += 1
    timings["candidates_seconds"] = time.perf_counter() - t0

    # Positions (open and closed) with their filled orders and fills; snapshots; jobs; outbox; heartbeat.
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with Session(db) as session:
        picks = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id,
                                                      ScanResult.excluded_reason.is_(None),  # type: ignore[union-attr]
                                                      ScanResult.close > 5)
                             .order_by(ScanResult.rank).limit(positions + closed)).all()
    expiries = [date(2026, 10, 16), date(2026, 10, 30), date(2026, 11, 20), date(2026, 12, 18)]
    exit_reasons = ["stop_hit: price below stop", "trend_break: close < sma50", "target 4 of 4 reached",
                    "time_exit: 7 days to expiry", "premium_stop: value lost 50%"]
    with session_scope(db) as session:
        for i, r in enumerate(picks):
            is_open = i < positions
            spread = i % 3 == 1
            price = float(r.close)
            strike = float(np.round(price * 0.95, 0)) or 1.0
            expiry = expiries[i % len(expiries)]
            qty = int(rng.integers(1, 11))
            entry = round(max(0.2, price * float(rng.uniform(0.03, 0.09))), 2)
            legs = [{"instrument": occ_symbol(r.symbol, expiry, "C", strike), "side": "buy", "ratio": 1,
                     "asset": "option", "underlying": r.symbol, "right": "C", "strike": str(strike),
                     "expiry": expiry.isoformat()}]
            if spread:
                short = float(np.round(price * 1.10, 0))
                legs.append({"instrument": occ_symbol(r.symbol, expiry, "C", short), "side": "sell", "ratio": 1,
                             "asset": "option", "underlying": r.symbol, "right": "C", "strike": str(short),
                             "expiry": expiry.isoformat()})
            mark = round(entry * float(rng.uniform(0.6, 1.6)), 2)
            risk = _money(entry * 100 * qty)
            opened = datetime(2026, 9, 1, 14, 0, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 25)))
            delta = (0.35 if spread else 0.6) * 100 * qty
            targets = [float(t) for t in (r.target_1, r.target_2, r.target_3, r.target_4) if t is not None]
            pos = Position(
                strategy="atr_matrix", symbol=r.symbol, sector=r.sector,
                structure="call_debit_spread" if spread else "long_call", legs=legs,
                quantity=qty if is_open else 0, initial_quantity=qty, entry_price=_money(entry if is_open else 0),
                underlying_entry=price, entry_atr=float(r.atr or 0), stop=float(r.stop or price * 0.9),
                targets=targets, targets_hit=int(rng.integers(0, 2)), highest_close=price,
                max_loss=risk if is_open else Decimal("0"), initial_risk=risk,
                mark=_money(mark) if is_open else None,
                realized_pnl=_money(-1.1 * qty) if is_open else _money(float(risk) * float(rng.uniform(-1.0, 2.5))),
                unrealized_pnl=_money((mark - entry) * 100 * qty) if is_open else Decimal("0"),
                greeks={"delta": delta, "gamma": 0.02 * qty * 100, "theta": -0.03 * qty * 100,
                        "vega": 0.1 * qty * 100, "delta_dollars": delta * price, "underlying_price": price},
                delta_dollars=delta * price if is_open else 0.0, status="open" if is_open else "closed",
                opened_at=opened, closed_at=None if is_open else opened + timedelta(days=int(rng.integers(1, 20))),
                exit_reason=None if is_open else exit_reasons[i % len(exit_reasons)])
            session.add(pos)
            session.flush()
            order = Order(client_order_id=f"qm-bench-{i:05d}-1", strategy="atr_matrix", symbol=r.symbol,
                          structure=pos.structure, intent="open", legs=legs, quantity=qty, limit_price=_money(entry),
                          status="filled", filled_quantity=qty, avg_fill_price=_money(entry), max_loss=risk,
                          risk_per_unit=_money(entry * 100 + 1.1), position_id=pos.id, created_at=opened,
                          updated_at=opened, reason="bench entry",
                          economics={"max_loss_per_unit": str(_money(entry * 100)), "sector": r.sector,
                                     "multiplier": 100})
            session.add(order)
            session.flush()
            for k, leg in enumerate(legs):
                session.add(Fill(broker_fill_id=f"bench-{i}-{k}", order_id=order.id,
                                 client_order_id=order.client_order_id, instrument=leg["instrument"],
                                 side=leg["side"], quantity=qty, price=_money(entry), commission=Decimal("1.00"),
                                 fees=Decimal("0.10"), filled_at=opened))
        equity = 100_000.0
        for d in calendar.sessions_back(SCAN_END, 250):
            day = d.astype(object)
            equity *= 1 + float(rng.normal(0.0005, 0.006))
            session.add(AccountSnapshot(at=datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=21),
                                        trade_date=day, cash=_money(equity * 0.7), positions_value=_money(equity * 0.3),
                                        equity=_money(equity), buying_power=_money(equity * 0.7),
                                        open_risk=_money(equity * 0.05), detail={"day_pnl": "0"}))
        base = datetime(2026, 9, 1, tzinfo=UTC)
        for j in range(2000):
            started = base + timedelta(minutes=5 * j)
            job = ("premarket", "intraday", "postmarket", "nightly")[j % 4]
            failed = j % 97 == 0
            session.add(JobRun(job_id=job, trigger="schedule", started_at=started,
                               finished_at=started + timedelta(seconds=2), outcome="error" if failed else "ok",
                               error="RuntimeError: bench failure" if failed else None,
                               detail={"traceback": "Traceback (bench)"} if failed else {}))
    for j in range(500):
        enqueue(db, ("signals", "portfolio", "morning_brew", "system_status")[j % 4],
                Message(title=f"Bench message {j}", description="A notification body " * 5, kind="bench"),
                f"bench:{j}", settings=settings)
    heartbeat.beat(db, "scheduler", "bench", {"mode": "live", "paused": []})
    timings["fill_seconds"] = time.perf_counter() - t0
    with Session(db) as session:
        timings["waiting_orders"] = len(session.exec(select(Order).where(Order.status == "proposed")).all())
    timings["scan_rows"] = run.n_scanned
    return timings


def _measure(page: str, runs: int, view: str | None = None) -> tuple[float, float]:
    """(median page-script ms, median AppTest wall ms) over ``runs`` after one warm-up run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(CONSOLE), default_timeout=300)
    at.session_state["authenticated"] = True
    at.run()
    at.switch_page(f"../pages/{page}.py")
    if view is not None:
        at.session_state["scanner_view"] = view
    at.run()  # warm-up: fills the caches a live console would already hold
    if at.exception:
        raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    inside, wall = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        at.run()
        wall.append((time.perf_counter() - t0) * 1000)
        inside.append(float(at.session_state["_qm_page_ms"]))
        if at.exception:
            raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    return statistics.median(inside), statistics.median(wall)


def bench_console(symbols: int = 32_345, positions: int = 200, closed: int = 100, runs: int = 5,
                  keep_dir: Path | None = None) -> dict[str, Any]:
    import streamlit as st

    from app.registry import PAGES
    from engine.config import get_settings
    from engine.db import get_engine

    data_dir = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="qm-bench-console-"))
    saved = {k: v for k, v in os.environ.items() if k.startswith("QM_") or k == "DATABASE_URL"}
    for k in saved:
        del os.environ[k]
    os.environ.update({"QM_DATA_DIR": str(data_dir), "QM_SIM_SYMBOLS": str(symbols)})

    def reset() -> None:
        get_settings.cache_clear()
        get_engine.cache_clear()
        st.cache_data.clear()
        st.cache_resource.clear()

    try:
        reset()
        built = _build(data_dir, symbols, positions, closed)
        reset()
        pages: dict[str, float] = {}
        walls: dict[str, float] = {}
        for spec in PAGES:
            pages[spec.module], walls[spec.module] = _measure(spec.module, runs)
        views: dict[str, float] = {}
        for view in ("Matrix", "Chart"):
            views[f"scanner:{view.lower()}"], walls[f"scanner:{view.lower()}"] = _measure("scanner", runs, view)
    finally:
        reset()
        for k in [k for k in os.environ if k.startswith("QM_")]:
            del os.environ[k]
        os.environ.update(saved)
        if keep_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = {
        "pages": {k: round(v, 1) for k, v in pages.items()},
        "views": {k: round(v, 1) for k, v in views.items()},
        "apptest_wall_ms": {k: round(v, 1) for k, v in walls.items()},
        "max_ms": round(max([*pages.values(), *views.values()]), 1),
        "target_ms": TARGET_MS,
        "scan_rows": int(built["scan_rows"]),
        "positions_open": positions,
        "positions_closed": closed,
        "waiting_orders": int(built["waiting_orders"]),
        "build_seconds": {k: round(v, 1) for k, v in built.items() if k.endswith("_seconds")},
    }
    rows = [(name, f"{ms:7.1f} ms  (AppTest wall {walls[name]:.0f} ms)") for name, ms in
            [*result["pages"].items(), *result["views"].items()]]
    rows.append(("max", f"{result['max_ms']:7.1f} ms  (target <= {TARGET_MS:.0f} ms)"))
    print(table(rows, f"console pages, server-side script time (median of {runs} after a warm-up): "
                      f"{result['scan_rows']:,}-symbol scan, {positions} open + {closed} closed positions"))
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(bench_console()))
