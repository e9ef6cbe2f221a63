"""Read-only queries the console and reports use. No trading logic lives here, only reads.

Every function takes the database engine (and settings where it needs them) and returns plain values:
dicts, lists and DataFrames of floats, strings and dates, so the console can cache them. Money comes
back as float dollars (the console only displays it); times as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.config import Settings
from engine.data.sources import bar_store
from engine.models import (
    AccountSnapshot,
    Fill,
    Heartbeat,
    Instrument,
    JobRun,
    NotificationOutbox,
    OperatorCommand,
    OptionCandidate,
    Order,
    OrderEvent,
    Position,
    ReconciliationRun,
    ScanResult,
    ScanRun,
    SettingOverride,
    Signal,
)

INDEX_PROXIES = ("SPY", "QQQ", "IWM", "DIA")
DECISION_ACTORS_EXCLUDED = ("engine", "broker")  # everything else is a person (the operator)


def _f(value: Any) -> float | None:
    """Decimal/float/None -> float or None (NaN and infinities become None)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _f0(value: Any) -> float:
    out = _f(value)
    return 0.0 if out is None else out


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Float columns (None -> NaN), so tables show blanks and sort numerically."""
    for c in columns:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


# --- health, universe, bars ----------------------------------------------------------------------------


def heartbeats(engine: Engine, now: datetime | None = None) -> pd.DataFrame:
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        rows = session.exec(select(Heartbeat)).all()
    return pd.DataFrame(
        [
            {
                "component": r.component,
                "instance": r.instance_id,
                "last_beat": r.at,
                "age_seconds": (now - r.at).total_seconds(),
                **{k: v for k, v in r.info.items() if isinstance(v, str | int | float)},
            }
            for r in rows
        ],
        columns=["component", "instance", "last_beat", "age_seconds"] if not rows else None,
    )


def scheduler_status(engine: Engine, now: datetime | None = None,
                     max_age: timedelta = timedelta(minutes=2)) -> dict[str, Any]:
    """The scheduler's last heartbeat: alive (beat within ``max_age``), age, mode, paused jobs."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        row = session.get(Heartbeat, "scheduler")
    if row is None:
        return {"seen": False, "alive": False, "age_seconds": None, "instance": None, "mode": None,
                "paused": [], "market_time": None, "last_beat": None}
    at = row.at
    age = (now - at).total_seconds() if at else None
    info = row.info or {}
    return {"seen": True, "alive": age is not None and age <= max_age.total_seconds(), "age_seconds": age,
            "instance": row.instance_id, "mode": info.get("mode"), "paused": list(info.get("paused") or []),
            "market_time": info.get("market_time"), "last_beat": at}


def universe_summary(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(Instrument)).one()
        tradable = session.exec(
            select(func.count()).select_from(Instrument).where(Instrument.tradable, Instrument.active)
        ).one()
        by_sector = dict(
            session.exec(select(Instrument.sector, func.count()).group_by(Instrument.sector)).all()
        )
    return {"instruments": int(total), "tradable": int(tradable), "by_sector": by_sector}


def bar_coverage(settings: Settings) -> dict[str, Any]:
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) == 0:
        return {"sessions": 0, "first": None, "last": None, "size_mb": 0.0, "source": store.source}
    return {
        "sessions": len(dates),
        "first": dates[0].astype(object),
        "last": dates[-1].astype(object),
        "size_mb": store.size_bytes() / 1e6,
        "source": store.source,
    }


def data_freshness(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Bar-store coverage against the NYSE calendar: last stored session vs the last completed one,
    sessions missing inside the stored range, and how many sessions the store is behind."""
    from engine.bootstrap import last_completed_session
    from engine.data import calendar

    store = bar_store(settings)
    dates = store.stored_dates()
    expected_last = last_completed_session(now)
    out: dict[str, Any] = {"source": store.source, "sessions": len(dates), "first": None, "last": None,
                           "expected_last": expected_last, "behind": None, "gaps": 0, "gap_dates": [],
                           "size_mb": round(store.size_bytes() / 1e6, 1) if len(dates) else 0.0}
    if len(dates) == 0:
        return out
    first, last = dates[0].astype(object), dates[-1].astype(object)
    expected = calendar.sessions(first, last)
    gaps = np.setdiff1d(expected, dates)
    behind = len(calendar.sessions(last, expected_last)) - 1 if expected_last > last else 0
    out.update({"first": first, "last": last, "behind": int(max(behind, 0)), "gaps": len(gaps),
                "gap_dates": [str(d) for d in gaps[:20]]})
    return out


def index_proxies(settings: Settings, lookback_days: int = 30) -> pd.DataFrame:
    """Last close and change for SPY/QQQ/IWM/DIA from the bar store (missing proxies are left out)."""
    store = bar_store(settings)
    dates = store.stored_dates()
    if len(dates) < 2:
        return pd.DataFrame(columns=["symbol", "date", "close", "change_pct"])
    start = (dates[-1] - np.timedelta64(lookback_days, "D")).astype(object)
    panel = store.load(start, dates[-1].astype(object), symbols=list(INDEX_PROXIES), dtype=np.float64)
    rows = []
    for symbol in INDEX_PROXIES:
        if symbol not in set(panel.symbols):
            continue
        bars = panel.frame(symbol)["close"].dropna()
        if len(bars) >= 2:
            rows.append(
                {
                    "symbol": symbol,
                    "date": bars.index[-1].date(),
                    "close": float(bars.iloc[-1]),
                    "change_pct": float(100 * (bars.iloc[-1] / bars.iloc[-2] - 1)),
                }
            )
    return pd.DataFrame(rows, columns=["symbol", "date", "close", "change_pct"])


def scheduler_alive(engine: Engine, max_age: timedelta = timedelta(minutes=2)) -> bool:
    return bool(scheduler_status(engine, max_age=max_age)["alive"])


def next_jobs(now: datetime | None = None, days: int = 7) -> pd.DataFrame:
    """The next planned run of each scheduler job after ``now`` (New York times)."""
    from engine.clock import NEW_YORK
    from engine.schedule import JOB_IDS, plan_day

    now = now or datetime.now(UTC)
    today = now.astimezone(NEW_YORK).date()
    found: dict[str, datetime] = {}
    for offset in range(days + 1):
        for run in plan_day(today + timedelta(days=offset)):
            if run.at > now and run.job_id not in found:
                found[run.job_id] = run.at
        if len(found) == len(JOB_IDS):
            break
    rows = [{"job": job, "next_run": found[job], "in_minutes": (found[job] - now).total_seconds() / 60}
            for job in JOB_IDS if job in found]
    return pd.DataFrame(rows, columns=["job", "next_run", "in_minutes"]).sort_values("next_run")


# --- account and mode ------------------------------------------------------------------------------------


def account_history(engine: Engine) -> pd.DataFrame:
    """One row per trading date: the day's last account snapshot (equity curve)."""
    with Session(engine) as session:
        rows = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.trade_date, AccountSnapshot.id)).all()
    by_day: dict[date, AccountSnapshot] = {}
    for r in rows:
        by_day[r.trade_date] = r
    data = [{"trade_date": d, "at": r.at, "equity": _f0(r.equity), "cash": _f0(r.cash),
             "positions_value": _f0(r.positions_value), "buying_power": _f0(r.buying_power),
             "realized_pnl_day": _f0(r.realized_pnl_day), "unrealized_pnl": _f0(r.unrealized_pnl),
             "open_risk": _f0(r.open_risk), "day_pnl": _f0((r.detail or {}).get("day_pnl"))}
            for d, r in by_day.items()]
    return pd.DataFrame(data, columns=["trade_date", "at", "equity", "cash", "positions_value", "buying_power",
                                       "realized_pnl_day", "unrealized_pnl", "open_risk", "day_pnl"])


def latest_snapshot(engine: Engine) -> AccountSnapshot | None:
    with Session(engine) as session:
        return session.exec(
            select(AccountSnapshot).order_by(AccountSnapshot.at.desc(), AccountSnapshot.id.desc())  # type: ignore[attr-defined]
        ).first()


def account_summary(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Equity, today's and total P&L and open risk from the newest account snapshot."""
    starting = float(settings.starting_cash)
    snap = latest_snapshot(engine)
    with Session(engine) as session:
        n_open = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
        heat = session.exec(select(func.sum(Position.max_loss)).where(Position.status == "open")).one()
    if snap is None:
        return {"has_snapshot": False, "trade_date": None, "at": None, "equity": starting, "cash": starting,
                "positions_value": 0.0, "buying_power": starting, "day_pnl": 0.0, "day_pnl_pct": 0.0,
                "total_pnl": 0.0, "total_pnl_pct": 0.0, "unrealized_pnl": 0.0, "open_risk": _f0(heat),
                "open_positions": int(n_open), "starting_cash": starting}
    equity = _f0(snap.equity)
    day_pnl = _f0((snap.detail or {}).get("day_pnl"))
    prev = equity - day_pnl
    return {
        "has_snapshot": True, "trade_date": snap.trade_date, "at": snap.at, "equity": equity,
        "cash": _f0(snap.cash), "positions_value": _f0(snap.positions_value), "buying_power": _f0(snap.buying_power),
        "day_pnl": day_pnl, "day_pnl_pct": 100 * day_pnl / prev if prev else 0.0,
        "total_pnl": equity - starting, "total_pnl_pct": 100 * (equity - starting) / starting,
        "unrealized_pnl": _f0(snap.unrealized_pnl), "open_risk": _f0(heat),
        "open_positions": int(n_open), "starting_cash": starting,
    }


def mode_summary(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Paper/live, the approval mode in force (console choice over the environment), the kill switch."""
    from engine.operator import APPROVAL_MODE_KEY, KILL_SWITCH_KEY

    with Session(engine) as session:
        kill = session.get(SettingOverride, KILL_SWITCH_KEY)
        mode = session.get(SettingOverride, APPROVAL_MODE_KEY)
    return {
        "trading_mode": settings.trading_mode.value,
        "broker": settings.broker.value,
        "data_source": settings.data_source.value,
        "approval_mode": str(mode.value.get("value")) if mode else settings.approval_mode.value,
        "approval_mode_source": "console" if mode else "environment",
        "kill_switch": bool(kill and kill.value.get("value")),
        "kill_switch_by": kill.updated_by if kill else None,
        "kill_switch_at": kill.updated_at if kill else None,
    }


def last_reconciliation(engine: Engine) -> dict[str, Any] | None:
    with Session(engine) as session:
        run = session.exec(select(ReconciliationRun).order_by(ReconciliationRun.id.desc())).first()  # type: ignore[union-attr]
        if run is None:
            return None
        recent_bad = session.exec(select(func.count()).select_from(ReconciliationRun)
                                  .where(ReconciliationRun.ok == False)).one()  # noqa: E712
    return {"at": run.at, "broker": run.broker, "ok": run.ok, "orders_checked": run.orders_checked,
            "events_applied": run.events_applied, "differences": list(run.differences or []),
            "runs_with_differences": int(recent_bad)}


# --- scans ---------------------------------------------------------------------------------------------


def latest_scan(engine: Engine) -> dict[str, Any] | None:
    with Session(engine) as session:
        run = session.exec(select(ScanRun).where(ScanRun.status == "ok")
                           .order_by(ScanRun.data_date.desc(), ScanRun.id.desc())).first()  # type: ignore[attr-defined]
    if run is None:
        return None
    return {"id": run.id, "strategy": run.strategy, "data_source": run.data_source, "data_date": run.data_date,
            "finished_at": run.finished_at, "n_scanned": run.n_scanned, "n_excluded": run.n_excluded,
            "n_signals": run.n_signals, "excluded_by_reason": dict(run.excluded_by_reason or {}),
            "breadth": dict(run.breadth or {}), "seconds": run.load_seconds + run.compute_seconds + run.store_seconds}


SCAN_COLUMNS = ("rank", "symbol", "sector", "zone", "score", "signal", "close", "atr", "atr_distance", "atr_pct",
                "ma_aligned", "range_pos_20", "dollar_volume_20", "sma20", "sma50", "sma200", "stop", "target_1",
                "target_2", "target_3", "target_4", "excluded_reason")


def scan_results(engine: Engine, run_id: int) -> pd.DataFrame:
    """Every result row of a scan run (tens of thousands for the whole universe), in rank order."""
    cols = [getattr(ScanResult, c) for c in SCAN_COLUMNS]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).where(ScanResult.scan_run_id == run_id).order_by(ScanResult.rank)).all()
    frame = pd.DataFrame.from_records(rows, columns=list(SCAN_COLUMNS))
    for c in ("score", "close", "atr", "atr_distance", "atr_pct", "range_pos_20", "dollar_volume_20", "sma20",
              "sma50", "sma200", "stop", "target_1", "target_2", "target_3", "target_4"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    frame["signal"] = frame["signal"].fillna(False).astype(bool)
    frame["ma_aligned"] = frame["ma_aligned"].astype("boolean")
    frame["zone"] = frame["zone"].fillna("excluded" if len(frame) else None)
    frame.loc[frame["excluded_reason"].isna() & (frame["zone"] == "excluded"), "zone"] = "n/a"
    return frame


def symbol_setup(engine: Engine, run_id: int, symbol: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run_id,
                                                    ScanResult.symbol == symbol)).first()
    return None if row is None else row.model_dump()


def symbol_bars(settings: Settings, symbol: str, end: date | None = None, sessions: int = 260,
                band_multiples: tuple[float, ...] = (4.0, 7.0, 10.0)) -> pd.DataFrame:
    """Daily bars of one symbol with SMA20/50/200, ATR and the matrix bands SMA50 +/- k x ATR.

    Loads enough extra history for SMA200 to be defined over the whole window shown."""
    from engine import indicators as ind
    from engine.data import calendar

    params = settings.strategy
    store = bar_store(settings)
    stored = store.stored_dates(end=end)
    if len(stored) == 0:
        return pd.DataFrame()
    last = stored[-1].astype(object)
    first = calendar.sessions_back(last, sessions + params.sma_slow + 10)[0].astype(object)
    panel = store.load(first, last, symbols=[symbol], dtype=np.float64)
    if panel.n_symbols == 0 or symbol not in set(panel.symbols):
        return pd.DataFrame()
    bars = panel.frame(symbol).dropna(subset=["close"])
    if bars.empty:
        return bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    bars["sma20"] = ind.sma(close, params.sma_fast)
    bars["sma50"] = ind.sma(close, params.sma_trend)
    bars["sma200"] = ind.sma(close, params.sma_slow)
    bars["atr"] = ind.atr(high, low, close, params.atr_period)
    for k in band_multiples:
        bars[f"band_up_{k:g}"] = bars["sma50"] + k * bars["atr"]
        bars[f"band_dn_{k:g}"] = bars["sma50"] - k * bars["atr"]
    return bars.tail(sessions)


# --- signals and option candidates -----------------------------------------------------------------------


def candidate_list(engine: Engine, limit: int = 300) -> pd.DataFrame:
    """Option candidates, newest first, with their signal and the order (if any) that came of them."""
    with Session(engine) as session:
        rows = session.exec(select(OptionCandidate, Signal).join(Signal, OptionCandidate.signal_id == Signal.id)
                            .order_by(OptionCandidate.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        ids = [c.id for c, _ in rows]
        orders = dict(session.exec(select(Order.candidate_id, Order.status)
                                   .where(col(Order.candidate_id).in_(ids))).all()) if ids else {}
    data = []
    for cand, sig in rows:
        greeks = cand.greeks or {}
        expiries = sorted({leg.get("expiry") for leg in cand.legs if leg.get("expiry")})
        data.append({
            "candidate_id": cand.id, "signal_id": sig.id, "data_date": sig.data_date, "symbol": cand.symbol,
            "structure": cand.structure, "chosen": cand.chosen, "score": sig.score, "zone": sig.zone,
            "expiry": expiries[0] if expiries else None, "net_mid": cand.net_mid, "net_natural": cand.net_natural,
            "max_loss": cand.max_loss, "max_profit": cand.max_profit,
            "breakevens": ", ".join(f"{b:,.2f}" for b in cand.breakevens or []),
            "iv_rank": cand.iv_rank, "delta": _f(greeks.get("delta")), "theta": _f(greeks.get("theta")),
            "vega": _f(greeks.get("vega")), "rejected": len(cand.rejected or []),
            "order_status": orders.get(cand.id), "signal_status": sig.status,
        })
    frame = pd.DataFrame(data, columns=["candidate_id", "signal_id", "data_date", "symbol", "structure", "chosen",
                                        "score", "zone", "expiry", "net_mid", "net_natural", "max_loss", "max_profit",
                                        "breakevens", "iv_rank", "delta", "theta", "vega", "rejected",
                                        "order_status", "signal_status"])
    return _numeric(frame, ["score", "net_mid", "net_natural", "max_loss", "max_profit", "iv_rank", "delta", "theta",
                            "vega"])


def candidate_detail(engine: Engine, candidate_id: int) -> dict[str, Any] | None:
    with Session(engine) as session:
        cand = session.get(OptionCandidate, candidate_id)
        if cand is None:
            return None
        sig = session.get(Signal, cand.signal_id)
        siblings = session.exec(select(OptionCandidate.id, OptionCandidate.structure, OptionCandidate.chosen)
                                .where(OptionCandidate.signal_id == cand.signal_id)).all()
        rejected = list(cand.rejected or [])
        if not rejected:  # the rejected contracts are stored once per signal, with the chosen candidate
            chosen = session.exec(select(OptionCandidate).where(OptionCandidate.signal_id == cand.signal_id,
                                                                OptionCandidate.chosen)).first()
            rejected = list(chosen.rejected or []) if chosen else []
    return {
        "id": cand.id, "signal_id": cand.signal_id, "symbol": cand.symbol, "structure": cand.structure,
        "chosen": cand.chosen, "legs": list(cand.legs), "net_mid": cand.net_mid, "net_natural": cand.net_natural,
        "max_loss": cand.max_loss, "max_profit": cand.max_profit, "breakevens": list(cand.breakevens or []),
        "greeks": dict(cand.greeks or {}), "iv_rank": cand.iv_rank, "reasons": dict(cand.reasons or {}),
        "rejected": rejected, "created_at": cand.created_at,
        "alternatives": [{"id": i, "structure": s, "chosen": c} for i, s, c in siblings],
        "signal": None if sig is None else {
            "data_date": sig.data_date, "score": sig.score, "zone": sig.zone, "entry_price": sig.entry_price,
            "atr": sig.atr, "stop": sig.stop, "targets": list(sig.targets), "status": sig.status},
    }


def candidate_structure(detail: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Rebuild the stored candidate as an ``engine.options.structures.Structure`` (for payoffs)."""
    from engine.options.structures import Leg, Structure

    legs = []
    for d in detail["legs"]:
        expiry = d.get("expiry")
        legs.append(Leg(
            occ_symbol=str(d["occ_symbol"]), right=str(d["right"]),
            strike=None if d.get("strike") is None else Decimal(str(d["strike"])),
            expiry=None if not expiry else date.fromisoformat(str(expiry)), qty=int(d["qty"]),
            bid=Decimal(str(d["bid"])), ask=Decimal(str(d["ask"])),
            **{k: float(d[k]) if d.get(k) is not None else math.nan
               for k in ("iv", "delta", "gamma", "theta", "vega", "dte")}))
    spot = _f((detail.get("greeks") or {}).get("underlying_price"))
    return Structure(detail["structure"], detail["symbol"], tuple(legs), spot if spot is not None else math.nan)


def payoff_curve(detail: dict[str, Any], r: float, points: int = 161) -> pd.DataFrame:
    """P&L per contract at expiry and today (Black-Scholes at each leg's IV) over a price range."""
    structure = candidate_structure(detail)
    strikes = [float(leg.strike) for leg in structure.legs if leg.strike is not None]
    spot = structure.underlying_price if math.isfinite(structure.underlying_price) else (
        float(np.mean(strikes)) if strikes else 100.0)
    lo = min([spot, *strikes]) * 0.75
    hi = max([spot, *strikes]) * 1.25
    prices = np.linspace(lo, hi, points)
    out = pd.DataFrame({"price": prices, "at_expiry": structure.payoff_at_expiry(prices)})
    try:
        out["today"] = structure.value_today(prices, 0, r=r)
    except ValueError:
        out["today"] = np.nan  # a leg without IV or days to expiry: only the expiry payoff is known
    return out


def rejection_rule(reason: str) -> str:
    """The filter behind a chain rejection ("dte 7 < 21" -> "dte", "|delta| 0.11 outside ..." -> "delta",
    "put not used by long_call" -> "right not used by the structure")."""
    import re

    if " not used by " in reason:
        return "right not used by the structure"
    match = re.match(r"\W*([A-Za-z_]+)", reason)
    return match.group(1).lower() if match else reason


def rejected_frame(rejected: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rejected, columns=["occ_symbol", "reason"])
    frame["rule"] = frame["reason"].map(lambda r: rejection_rule(str(r)))
    return frame


# --- orders, decisions, fills -----------------------------------------------------------------------------

ORDER_COLUMNS = ["id", "created_at", "updated_at", "symbol", "structure", "intent", "status", "quantity",
                 "filled_quantity", "limit_price", "avg_fill_price", "max_loss", "client_order_id", "broker",
                 "broker_order_id", "reason", "position_id", "signal_id"]


def _order_row(o: Order) -> dict[str, Any]:
    return {"id": o.id, "created_at": o.created_at, "updated_at": o.updated_at, "symbol": o.symbol,
            "structure": o.structure, "intent": o.intent, "status": o.status, "quantity": o.quantity,
            "filled_quantity": o.filled_quantity, "limit_price": _f(o.limit_price),
            "avg_fill_price": _f(o.avg_fill_price), "max_loss": _f0(o.max_loss), "client_order_id": o.client_order_id,
            "broker": o.broker, "broker_order_id": o.broker_order_id, "reason": o.reason,
            "position_id": o.position_id, "signal_id": o.signal_id}


def orders_frame(engine: Engine, statuses: list[str] | None = None, limit: int = 1000) -> pd.DataFrame:
    query = select(Order).order_by(Order.id.desc()).limit(limit)  # type: ignore[union-attr]
    if statuses:
        query = query.where(col(Order.status).in_(statuses))
    with Session(engine) as session:
        rows = session.exec(query).all()
    frame = pd.DataFrame([_order_row(o) for o in rows], columns=ORDER_COLUMNS)
    frame["broker_order_id"] = frame["broker_order_id"].fillna("")
    return _numeric(frame, ["limit_price", "avg_fill_price", "max_loss"])


def order_status_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {s: int(n) for s, n in session.exec(select(Order.status, func.count()).group_by(Order.status)).all()}


def pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Order).where(Order.status == "proposed")).one())


def pending_orders(engine: Engine) -> list[dict[str, Any]]:
    """Orders waiting for the operator (status proposed), oldest first, with what is needed to decide."""
    with Session(engine) as session:
        orders = session.exec(select(Order).where(Order.status == "proposed").order_by(Order.id)).all()
        out = []
        for o in orders:
            sig = session.get(Signal, o.signal_id) if o.signal_id else None
            row = _order_row(o)
            row.update({"legs": list(o.legs), "economics": dict(o.economics or {}),
                        "risk_per_unit": _f0(o.risk_per_unit),
                        "signal": None if sig is None else {"score": sig.score, "zone": sig.zone,
                                                            "entry_price": sig.entry_price, "stop": sig.stop,
                                                            "targets": list(sig.targets)}})
            out.append(row)
    return out


def gate_preview(engine: Engine, settings: Settings, order_id: int, now: datetime | None = None) -> dict[str, Any]:
    """What the risk gate would say about ``order_id`` now, without a broker: equity and buying power come
    from the newest account snapshot. A preview only; the gate runs again, with the broker, at send time."""
    from engine import risk
    from engine.execution.service import to_proposed, working_close_quantity
    from engine.portfolio.exposure import portfolio_risk_offline

    now = now or datetime.now(UTC)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        if order is None:
            raise KeyError(f"no order {order_id}")
        held = None
        if order.intent != "open" and order.position_id is not None:
            pos = session.get(Position, order.position_id)
            held = pos.quantity if pos is not None and pos.status == "open" else 0
            held -= working_close_quantity(session, order.position_id, exclude_order_id=order.id)
        portfolio = portfolio_risk_offline(session, settings, now, exclude_order_id=order.id)
        decision = risk.evaluate(to_proposed(order, held), portfolio, settings.risk, now)
    return {"approved": decision.approved, "order_risk": _f0(decision.order_risk),
            "order_risk_pct": 100 * _f0(decision.order_risk) / _f0(portfolio.equity) if portfolio.equity else None,
            "equity": _f0(portfolio.equity), "summary": decision.summary(),
            "checks": [c.to_dict() for c in decision.checks]}


def order_events(engine: Engine, order_id: int) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)).all()
    return pd.DataFrame([{"at": e.at, "from": e.from_status, "to": e.to_status, "actor": e.actor,
                          "reason": e.reason} for e in rows], columns=["at", "from", "to", "actor", "reason"])


def decision_history(engine: Engine, limit: int = 300) -> pd.DataFrame:
    """Operator decisions: order events made by someone other than the engine or the broker."""
    with Session(engine) as session:
        rows = session.exec(select(OrderEvent, Order.symbol, Order.structure)
                            .join(Order, OrderEvent.order_id == Order.id)
                            .where(col(OrderEvent.actor).not_in(DECISION_ACTORS_EXCLUDED))
                            .order_by(OrderEvent.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    cols = ["at", "order_id", "symbol", "structure", "decision", "from", "to", "actor", "reason", "client_order_id"]
    data = []
    for e, symbol, structure in rows:
        decision = "override" if e.reason.startswith("override:") else e.to_status
        data.append({"at": e.at, "order_id": e.order_id, "symbol": symbol, "structure": structure,
                     "decision": decision, "from": e.from_status, "to": e.to_status, "actor": e.actor,
                     "reason": e.reason, "client_order_id": e.client_order_id})
    return pd.DataFrame(data, columns=cols)


def fills_frame(engine: Engine, limit: int = 1000, order_id: int | None = None) -> pd.DataFrame:
    query = select(Fill).order_by(Fill.id.desc()).limit(limit)  # type: ignore[union-attr]
    if order_id is not None:
        query = query.where(Fill.order_id == order_id)
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["filled_at", "order_id", "client_order_id", "instrument", "side", "quantity", "price", "multiplier",
            "commission", "fees", "notional", "broker_fill_id"]
    return pd.DataFrame([{"filled_at": f.filled_at, "order_id": f.order_id,
                          "client_order_id": f.client_order_id, "instrument": f.instrument, "side": f.side,
                          "quantity": f.quantity, "price": _f0(f.price), "multiplier": f.multiplier,
                          "commission": _f0(f.commission), "fees": _f0(f.fees),
                          "notional": _f0(f.price) * f.quantity * f.multiplier, "broker_fill_id": f.broker_fill_id}
                         for f in rows], columns=cols)


# --- positions -------------------------------------------------------------------------------------------


def _nearest_expiry(legs: list[dict[str, Any]]) -> date | None:
    expiries = sorted(str(leg["expiry"]) for leg in legs if leg.get("expiry"))
    return date.fromisoformat(expiries[0]) if expiries else None


def next_action(pos: Position, underlying: float | None, today: date, close_at_dte: int) -> str:
    """The next thing position management will do, in the operator's words: where the stop is, which
    target comes next and what it sells, when the time exit comes. Read off the stored levels."""
    from engine.portfolio.manager import scale_out_quantity

    parts = []
    if pos.stop:
        dist = f" ({100 * (pos.stop / underlying - 1):+.1f}%)".replace("-", "−") if underlying else ""
        parts.append(f"stop at {pos.stop:,.2f}{dist}")
    targets = list(pos.targets or [])
    if pos.targets_hit < len(targets):
        nxt = targets[pos.targets_hit]
        qty = min(pos.quantity, scale_out_quantity(pos.initial_quantity, pos.targets_hit, pos.targets_hit + 1,
                                                   len(targets)))
        dist = f" ({100 * (nxt / underlying - 1):+.1f}%)" if underlying else ""
        parts.append(f"next target {nxt:,.2f}{dist} sells {qty}" if qty > 0 else f"next target {nxt:,.2f}{dist}")
    elif targets:
        parts.append("all targets hit: trailing stop")
    expiry = _nearest_expiry(list(pos.legs or []))
    if expiry is not None:
        dte = (expiry - today).days
        exit_day = expiry - timedelta(days=close_at_dte)
        parts.append(f"time exit now ({dte} DTE)" if dte <= close_at_dte else f"time exit {exit_day:%b %d} ({dte} DTE)")
    return " · ".join(parts) or "no levels"


POSITION_COLUMNS = ["id", "symbol", "sector", "strategy", "structure", "expiry", "quantity", "initial_quantity",
                    "entry_price", "mark", "underlying_price", "unrealized_pnl", "realized_pnl", "pnl_pct",
                    "max_loss", "initial_risk", "r_now", "delta", "gamma", "theta", "vega", "delta_dollars", "stop",
                    "stop_distance_pct", "targets", "targets_hit", "next_action", "opened_at", "legs_text"]


def _legs_text(legs: list[dict[str, Any]]) -> str:
    out = []
    for leg in legs:
        side = "+" if leg.get("side") == "buy" else "−"
        ratio = int(leg.get("ratio", 1) or 1)
        qty = f"{side}{ratio if ratio != 1 else ''}"
        if leg.get("asset") == "stock":
            out.append(f"{qty} {leg.get('instrument')} shares")
        else:
            strike = leg.get("strike")
            out.append(f"{qty} {leg.get('expiry')} {float(strike):g}{leg.get('right')}" if strike is not None
                       else f"{qty} {leg.get('instrument')}")
    return ", ".join(out)


def open_positions(engine: Engine, settings: Settings, today: date | None = None) -> pd.DataFrame:
    from engine.clock import NEW_YORK

    today = today or datetime.now(NEW_YORK).date()
    with Session(engine) as session:
        rows = session.exec(select(Position).where(Position.status == "open").order_by(Position.id)).all()
    data = []
    for p in rows:
        greeks = p.greeks or {}
        und = _f(greeks.get("underlying_price"))
        mult = 100 if any(leg.get("asset", "option") == "option" for leg in p.legs or []) else 1
        cost = abs(_f0(p.entry_price)) * mult * p.quantity
        unreal = _f0(p.unrealized_pnl)
        initial_risk = _f0(p.initial_risk)
        data.append({
            "id": p.id, "symbol": p.symbol, "sector": p.sector, "strategy": p.strategy, "structure": p.structure,
            "expiry": _nearest_expiry(list(p.legs or [])), "quantity": p.quantity,
            "initial_quantity": p.initial_quantity, "entry_price": _f0(p.entry_price), "mark": _f(p.mark),
            "underlying_price": und, "unrealized_pnl": unreal, "realized_pnl": _f0(p.realized_pnl),
            "pnl_pct": 100 * unreal / cost if cost else None, "max_loss": _f0(p.max_loss),
            "initial_risk": initial_risk,
            "r_now": (unreal + _f0(p.realized_pnl)) / initial_risk if initial_risk else None,
            **{g: _f(greeks.get(g)) for g in ("delta", "gamma", "theta", "vega")},
            "delta_dollars": _f(greeks.get("delta_dollars")),
            "stop": p.stop or None,
            "stop_distance_pct": 100 * (p.stop / und - 1) if p.stop and und else None,
            "targets": ", ".join(f"{t:,.2f}" for t in p.targets or []), "targets_hit": p.targets_hit,
            "next_action": next_action(p, und, today, settings.exits.close_at_dte),
            "opened_at": p.opened_at, "legs_text": _legs_text(list(p.legs or [])),
        })
    return pd.DataFrame(data, columns=POSITION_COLUMNS)


CLOSED_COLUMNS = ["id", "symbol", "sector", "strategy", "structure", "expiry", "initial_quantity", "opened_at",
                  "closed_at", "days_held", "realized_pnl", "initial_risk", "r_multiple", "exit_reason", "legs_text"]


def closed_positions(engine: Engine, limit: int = 2000) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(Position).where(Position.status == "closed")
                            .order_by(Position.closed_at.desc(), Position.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    data = []
    for p in rows:
        risk = _f0(p.initial_risk)
        opened, closed = p.opened_at, p.closed_at
        data.append({
            "id": p.id, "symbol": p.symbol, "sector": p.sector, "strategy": p.strategy, "structure": p.structure,
            "expiry": _nearest_expiry(list(p.legs or [])), "initial_quantity": p.initial_quantity,
            "opened_at": opened, "closed_at": closed,
            "days_held": (closed - opened).days if opened and closed else None,
            "realized_pnl": _f0(p.realized_pnl), "initial_risk": risk,
            "r_multiple": _f0(p.realized_pnl) / risk if risk else None, "exit_reason": p.exit_reason or "",
            "legs_text": _legs_text(list(p.legs or [])),
        })
    return pd.DataFrame(data, columns=CLOSED_COLUMNS)


def trade_stats(closed: pd.DataFrame) -> dict[str, Any]:
    if closed.empty:
        return {"trades": 0, "win_rate": None, "avg_r": None, "total_pnl": 0.0, "expectancy": None}
    r = closed["r_multiple"].dropna()
    return {"trades": len(closed), "win_rate": float((closed["realized_pnl"] > 0).mean()),
            "avg_r": float(r.mean()) if len(r) else None, "total_pnl": float(closed["realized_pnl"].sum()),
            "expectancy": float(closed["realized_pnl"].mean())}


# --- risk ------------------------------------------------------------------------------------------------


def risk_overview(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Every risk limit with its use now, exposure by symbol and sector, net greeks, daily loss.

    The numbers come from the same portfolio view the gate uses (``portfolio_risk_offline``: equity and
    buying power from the newest account snapshot), against ``settings.risk``."""
    from engine.portfolio.exposure import portfolio_risk_offline

    now = now or datetime.now(UTC)
    limits = settings.risk
    with Session(engine) as session:
        p = portfolio_risk_offline(session, settings, now)
        rows = session.exec(select(Position.symbol, Position.sector, Position.max_loss, Position.delta_dollars,
                                   Position.greeks).where(Position.status == "open")).all()
    equity = _f0(p.equity)

    def pct(x: float) -> float:
        return 100 * x / equity if equity > 0 else math.inf

    biggest_trade = max((_f0(r[2]) for r in rows), default=0.0)
    sym_risk = {s: _f0(v) for s, v in p.risk_by_symbol.items()}
    sector_dd = {s or "(none)": float(v) for s, v in p.delta_dollars_by_sector.items()}
    top_sym = max(sym_risk.items(), key=lambda kv: kv[1], default=("-", 0.0))
    top_sector = max(sector_dd.items(), key=lambda kv: kv[1], default=("-", 0.0))
    heat = _f0(p.heat) + _f0(p.pending_risk)
    day_start = _f0(p.day_start_equity)
    day_pnl = _f0(p.day_pnl)
    loss_pct = max(0.0, -100 * day_pnl / day_start) if day_start else 0.0
    bp = _f0(p.buying_power)
    bp_used_pct = max(0.0, 100 * (1 - bp / equity)) if equity > 0 else 0.0

    def row(rule: str, what: str, limit: float, used: float, unit: str, detail: str) -> dict[str, Any]:
        return {"rule": rule, "what": what, "limit": limit, "used": used, "unit": unit,
                "use_of_limit": used / limit if limit else 0.0, "ok": used <= limit + 1e-9, "detail": detail}

    table = [
        row("risk_per_trade", "largest open position's risk", limits.risk_per_trade_pct, pct(biggest_trade), "%",
            f"${biggest_trade:,.2f} at risk; a new trade may risk ${equity * limits.risk_per_trade_pct / 100:,.2f}"),
        row("symbol_risk", f"largest symbol ({top_sym[0]})", limits.max_symbol_risk_pct, pct(top_sym[1]), "%",
            f"${top_sym[1]:,.2f} at risk in {top_sym[0]}"),
        row("heat", "open risk + working entry orders", limits.max_heat_pct, pct(heat), "%",
            f"${_f0(p.heat):,.2f} open + ${_f0(p.pending_risk):,.2f} pending"),
        row("open_positions", "symbols held", float(limits.max_open_positions), float(p.open_positions), "n",
            f"{p.open_positions} of {limits.max_open_positions}"),
        row("sector_exposure", f"largest sector ({top_sector[0]}), delta dollars", limits.max_sector_exposure_pct,
            pct(top_sector[1]), "%", f"${top_sector[1]:,.0f} delta dollars"),
        row("daily_loss", "loss today", limits.daily_loss_limit_pct, loss_pct, "%",
            f"day P&L ${day_pnl:,.2f} from ${day_start:,.2f}"),
        row("buying_power", "buying power in use", 100.0, bp_used_pct, "%", f"${bp:,.2f} available"),
    ]
    by_symbol = pd.DataFrame([{"symbol": s, "risk": v, "risk_pct": pct(v)} for s, v in sym_risk.items()],
                             columns=["symbol", "risk", "risk_pct"]).sort_values("risk", ascending=False)
    by_sector = pd.DataFrame([{"sector": s, "delta_dollars": v, "exposure_pct": pct(v)} for s, v in sector_dd.items()],
                             columns=["sector", "delta_dollars", "exposure_pct"]).sort_values("delta_dollars",
                                                                                              ascending=False)
    greeks = dict.fromkeys(("delta", "gamma", "theta", "vega", "delta_dollars"), 0.0)
    for r in rows:
        g = r[4] or {}
        for k in greeks:
            greeks[k] += _f0(g.get(k))
    return {"equity": equity, "buying_power": bp, "day_start_equity": day_start, "day_pnl": day_pnl,
            "daily_loss_pct": loss_pct, "heat": heat, "pending_risk": _f0(p.pending_risk),
            "open_positions": p.open_positions, "kill_switch": p.kill_switch, "limits": table,
            "by_symbol": by_symbol, "by_sector": by_sector, "greeks": greeks}


# --- notifications ---------------------------------------------------------------------------------------


def outbox_counts(engine: Engine) -> pd.DataFrame:
    from engine.notify import status_counts

    counts = status_counts(engine)
    frame = pd.DataFrame.from_dict(counts, orient="index").fillna(0).astype(int)
    frame.index.name = "channel"
    return frame.reset_index()


def outbox_rows(engine: Engine, status: str | None = None, channel: str | None = None,
                limit: int = 300) -> pd.DataFrame:
    from engine.notify.outbox import DEAD_WEBHOOK, preview

    query = (select(NotificationOutbox).where(NotificationOutbox.kind != DEAD_WEBHOOK)
             .order_by(NotificationOutbox.id.desc()).limit(limit))  # type: ignore[union-attr]
    if status:
        query = query.where(NotificationOutbox.status == status)
    if channel:
        query = query.where(NotificationOutbox.channel == channel)
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["id", "created_at", "channel", "kind", "status", "attempts", "sent_at", "last_error", "preview"]
    return pd.DataFrame([{"id": r.id, "created_at": r.created_at, "channel": r.channel, "kind": r.kind,
                          "status": r.status, "attempts": r.attempts, "sent_at": r.sent_at,
                          "last_error": r.last_error or "", "preview": preview(r)} for r in rows], columns=cols)


def dead_webhooks(engine: Engine) -> list[dict[str, Any]]:
    from engine.notify.outbox import dead_webhooks as _dead

    return _dead(engine)


# --- jobs, commands -------------------------------------------------------------------------------------


def job_runs(engine: Engine, limit: int = 300, failures_only: bool = False) -> pd.DataFrame:
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if failures_only:
        query = query.where(JobRun.outcome == "error")
    with Session(engine) as session:
        rows = session.exec(query).all()
    cols = ["id", "job_id", "trigger", "started_at", "finished_at", "seconds", "outcome", "error", "traceback"]
    data = []
    for r in rows:
        started, finished = r.started_at, r.finished_at
        data.append({"id": r.id, "job_id": r.job_id, "trigger": r.trigger, "started_at": started,
                     "finished_at": finished,
                     "seconds": (finished - started).total_seconds() if started and finished else None,
                     "outcome": r.outcome, "error": r.error or "",
                     "traceback": (r.detail or {}).get("traceback", "")})
    return pd.DataFrame(data, columns=cols)


def job_summary(engine: Engine) -> pd.DataFrame:
    """Per job: runs, failures, the last run and its outcome."""
    from engine.schedule import JOB_IDS

    with Session(engine) as session:
        counts = session.exec(select(JobRun.job_id, JobRun.outcome, func.count())
                              .group_by(JobRun.job_id, JobRun.outcome)).all()
        last_ids = session.exec(select(func.max(JobRun.id)).group_by(JobRun.job_id)).all()
        last = {r.job_id: r for r in session.exec(select(JobRun).where(col(JobRun.id).in_(list(last_ids)))).all()} \
            if last_ids else {}
    jobs = list(dict.fromkeys([*JOB_IDS, *sorted({j for j, _, _ in counts})]))
    runs: dict[str, int] = {}
    errors: dict[str, int] = {}
    for job, outcome, n in counts:
        runs[job] = runs.get(job, 0) + int(n)
        if outcome == "error":
            errors[job] = errors.get(job, 0) + int(n)
    data = []
    for job in jobs:
        r = last.get(job)
        data.append({"job": job, "runs": runs.get(job, 0), "failures": errors.get(job, 0),
                     "last_started": r.started_at if r else None, "last_outcome": r.outcome if r else None,
                     "last_error": (r.error or "") if r else ""})
    return pd.DataFrame(data, columns=["job", "runs", "failures", "last_started", "last_outcome", "last_error"])


def operator_commands(engine: Engine, limit: int = 200) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(OperatorCommand).order_by(OperatorCommand.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    cols = ["id", "created_at", "kind", "payload", "created_by", "reason", "status", "applied_at", "applied_by",
            "result"]
    return pd.DataFrame([{"id": c.id, "created_at": c.created_at, "kind": c.kind,
                          "payload": ", ".join(f"{k}={v}" for k, v in (c.payload or {}).items()),
                          "created_by": c.created_by, "reason": c.reason, "status": c.status,
                          "applied_at": c.applied_at, "applied_by": c.applied_by or "",
                          "result": c.result or ""} for c in rows], columns=cols)


# --- settings -------------------------------------------------------------------------------------------


def _range_text(field_info: Any) -> str:
    bounds = []
    for m in getattr(field_info, "metadata", []) or []:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v:g}" if isinstance(v, int | float) else f"{sym} {v}")
    return ", ".join(bounds)


def settings_fields(base: Settings, effective: Settings,
                    overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The console-editable settings: key, section, current value, value from the environment, range."""
    import dataclasses

    from engine.settings_store import EDITABLE_SECTIONS, EDITABLE_TOP_LEVEL

    overrides = overrides or {}
    out: list[dict[str, Any]] = []
    for section in EDITABLE_SECTIONS:
        eff, env = getattr(effective, section), getattr(base, section)
        if dataclasses.is_dataclass(eff):
            names = [f.name for f in dataclasses.fields(eff)]
            infos: dict[str, Any] = {}
        else:
            names = list(type(eff).model_fields)
            infos = dict(type(eff).model_fields)
        for name in names:
            value = getattr(eff, name)
            out.append({"key": f"{section}.{name}", "section": section, "field": name, "value": value,
                        "environment": getattr(env, name), "type": type(value).__name__,
                        "range": _range_text(infos.get(name)), "overridden": f"{section}.{name}" in overrides})
    for name in EDITABLE_TOP_LEVEL:
        info = type(base).model_fields[name]
        value = getattr(effective, name)
        out.append({"key": name, "section": "general", "field": name, "value": value,
                    "environment": getattr(base, name), "type": type(value).__name__, "range": _range_text(info),
                    "overridden": name in overrides})
    return out


def setting_overrides(engine: Engine) -> pd.DataFrame:
    with Session(engine) as session:
        rows = session.exec(select(SettingOverride).order_by(SettingOverride.key)).all()
    return pd.DataFrame([{"key": r.key, "value": r.value.get("value"), "updated_by": r.updated_by,
                          "updated_at": r.updated_at} for r in rows],
                        columns=["key", "value", "updated_by", "updated_at"])


LIVE_CREDENTIALS = {
    "tastytrade": ("QM_TASTYTRADE_CLIENT_SECRET", "QM_TASTYTRADE_REFRESH_TOKEN", "QM_TASTYTRADE_ACCOUNT"),
    "ibkr": ("QM_IBKR_HOST", "QM_IBKR_PORT"),
}


def live_mode_status(settings: Settings) -> dict[str, Any]:
    """What live trading would need, each item checked against the environment (never showing values)."""
    tasty = bool(settings.tastytrade_client_secret and settings.tastytrade_refresh_token and
                 settings.tastytrade_account)
    checks = [
        {"requirement": "QM_TRADING_MODE=live", "met": settings.trading_mode.value == "live"},
        {"requirement": "QM_LIVE_TRADING_CONFIRMED=true", "met": bool(settings.live_trading_confirmed)},
        {"requirement": "QM_BROKER=tastytrade or ibkr", "met": settings.broker.value != "paper"},
        {"requirement": "broker credentials (tastytrade: QM_TASTYTRADE_CLIENT_SECRET, QM_TASTYTRADE_REFRESH_TOKEN, "
                        "QM_TASTYTRADE_ACCOUNT; IBKR: TWS/Gateway at QM_IBKR_HOST:QM_IBKR_PORT)",
         "met": tasty or settings.broker.value == "ibkr"},
    ]
    return {"trading_mode": settings.trading_mode.value, "broker": settings.broker.value, "checks": checks,
            "all_met": all(c["met"] for c in checks), "adapter_available": _live_adapter_available(settings)}


def _live_adapter_available(settings: Settings) -> bool:
    """Whether this build ships a live broker adapter at all (engine/execution/brokers/<broker>.py)."""
    import importlib.util

    return any(importlib.util.find_spec(f"engine.execution.brokers.{name}") is not None
               for name in ("tastytrade", "ibkr"))
