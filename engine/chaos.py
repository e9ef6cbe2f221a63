"""Crash-only proof: `python -m engine chaos --kills 20`.

Runs multi-day paper trading on the simulated market in a child process and kills it with SIGKILL at
random failpoints of the order path (engine.failpoints), restarting it each time; every restart begins
with reconciliation and resumes the replay where the recorded job runs say it stopped. Afterwards it
audits the engine against the paper broker's books and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import select

from engine.config import ROOT
from engine.failpoints import POINTS

CHAOS_SYMBOLS = 1000
CHAOS_INTRADAY_MINUTES = 30


@dataclass(frozen=True)
class ChaosConfig:
    kills: int = 20
    sessions: int = 4
    symbols: int = CHAOS_SYMBOLS
    seed: int = 1
    first_session: date | None = None
    max_rounds: int = 200


def _env(data_dir: Path, symbols: int, failpoint: str | None, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    # The child gets the parent's temporary database explicitly: whatever DATABASE_URL / QM_DATABASE_URL
    # the operator's shell holds, both processes work on the same, throw-away, database.
    env.update({"QM_DATA_DIR": str(data_dir), "QM_SIM_SYMBOLS": str(symbols), "PYTHONPATH": str(ROOT),
                "QM_DATABASE_URL": db_url})
    if failpoint:
        env["QM_FAILPOINT"] = failpoint
        env["QM_FAILPOINTS_ENABLED"] = "1"  # the explicit test setting that arms failpoints
    return env


def _child_cmd(first: date, last: date) -> list[str]:
    return [sys.executable, "-m", "engine.chaos", "child", "--first", first.isoformat(), "--last", last.isoformat()]


def _configured_url() -> str | None:
    """The database the environment names (QM_DATABASE_URL first, as pydantic-settings reads it)."""
    return os.environ.get("QM_DATABASE_URL") or os.environ.get("DATABASE_URL") or None


def _temporary_database(data_dir: Path) -> tuple[str, Any]:
    """A fresh database of the configured kind, and how to drop it: a new schema on the configured
    PostgreSQL server, else a SQLite file in the temporary data folder (removed with it)."""
    configured = _configured_url()
    if configured is None or configured.startswith("sqlite"):
        return f"sqlite:///{data_dir / 'chaos.db'}", lambda: None
    import uuid

    import sqlalchemy as sa

    from engine.config import load_settings

    base = str(load_settings(database_url=configured).database_url)  # normalised to postgresql+psycopg
    base = base.split("?", 1)[0]
    schema = f"qm_chaos_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

    return f"{base}?options=-csearch_path%3D{schema}", drop


def run_chaos(config: ChaosConfig, echo: Any = None) -> dict[str, Any]:
    from engine.bootstrap import initialise, last_completed_session
    from engine.config import load_settings
    from engine.data import calendar

    say = echo or (lambda _m: None)
    rng = random.Random(config.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="qm-chaos-"))
    db_url, drop_database = _temporary_database(data_dir)
    try:
        settings = load_settings(data_dir=data_dir, sim_symbols=config.symbols, database_url=db_url)
        initialise(settings, sessions=320, progress=False)
        end = last_completed_session()
        # Start far enough back that the replay can be extended while kills are still owed.
        first = config.first_session or calendar.sessions_back(end, config.sessions + 40)[0].astype(object)
        last = calendar.sessions(first, first + timedelta(days=config.sessions * 2 + 10))[config.sessions - 1]
        last = last.astype(object)
        kills_by_point: Counter[str] = Counter()
        rounds = 0
        finished = False
        while rounds < config.max_rounds:
            rounds += 1
            armed = sum(kills_by_point.values()) < config.kills
            point = f"{rng.choice(POINTS)}:{rng.randint(1, 4)}" if armed else None
            proc = subprocess.run(_child_cmd(first, last), env=_env(data_dir, config.symbols, point, db_url), cwd=ROOT,
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode == -signal.SIGKILL:
                kills_by_point[point.split(":")[0]] += 1  # type: ignore[union-attr]
                say(f"killed at {point} (kill {sum(kills_by_point.values())})")
                continue
            if proc.returncode != 0:
                raise RuntimeError(f"chaos child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            if not armed:
                finished = True
                break
            # The replay completed before the armed failpoint: trade one more session and try again.
            last = calendar.next_session(last)
            say(f"child finished without reaching {point}; extending the replay to {last}")
        result = audit(settings)
        result["database"] = db_url.split("://")[0]
        result.update({"kills": sum(kills_by_point.values()), "kills_by_point": dict(kills_by_point),
                       "restarts": rounds - 1, "sessions": config.sessions, "first": str(first), "last": str(last),
                       "completed": finished})
        return result
    finally:
        from engine.db import get_engine

        get_engine(db_url).dispose()
        drop_database()
        shutil.rmtree(data_dir, ignore_errors=True)


def audit(settings: Any) -> dict[str, Any]:
    """Engine vs broker after a final reconciliation: nothing sent twice, lost, stuck; books equal."""
    from engine.clock import ReplayClock
    from engine.context import build_context
    from engine.db import session_scope
    from engine.execution.orders import TERMINAL, OrderStatus
    from engine.execution.reconcile import reconcile
    from engine.models import Fill, Order

    ctx = build_context(settings, clock=ReplayClock(datetime.now(timezone.utc)))
    run = reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), ctx.now)
    broker_orders = ctx.broker.orders()  # type: ignore[attr-defined]
    broker_ids = [o.client_order_id for o in broker_orders]
    broker_fill_ids = {f.fill_id for f in ctx.broker.fills()}
    with session_scope(ctx.db) as session:
        orders = list(session.exec(select(Order)).all())
        engine_fill_ids = set(session.exec(select(Fill.broker_fill_id)).all())
    by_id = {o.client_order_id: o for o in orders}
    at_broker = set(broker_ids)
    sent = [o for o in orders if o.broker_order_id is not None or o.client_order_id in at_broker]
    decisions = Counter((o.signal_id, o.position_id, o.intent, o.reason) for o in orders if o.filled_quantity > 0
                        and o.intent == "open")
    stuck = [o.client_order_id for o in orders
             if OrderStatus(o.status) not in TERMINAL | {OrderStatus.submitted, OrderStatus.partially_filled}]
    return {
        "orders": len(orders),
        "orders_sent": len(sent),
        "broker_orders": len(broker_orders),
        "duplicate_client_ids_at_broker": len(broker_ids) - len(set(broker_ids)),
        "entries_filled_twice": sum(n - 1 for n in decisions.values() if n > 1),
        "lost_orders": len([cid for cid in broker_ids if cid not in by_id]),
        "stuck_orders": len(stuck),
        "fills_engine": len(engine_fill_ids),
        "fills_broker": len(broker_fill_ids),
        "fills_missing_in_engine": len(broker_fill_ids - engine_fill_ids),
        "position_differences": len([d for d in run.differences if d.get("kind") == "position"]),
        "cash_differences": len([d for d in run.differences if d.get("kind") == "cash"]),
        "differences": run.differences,
        "broker_book_problems": ctx.broker.check_books(),  # type: ignore[attr-defined]
        "statuses": dict(Counter(o.status for o in orders)),
    }


def _child(first: date, last: date) -> int:
    """One life of the engine: reconcile first, then resume the replay."""
    from engine import runtime
    from engine.clock import ReplayClock
    from engine.config import get_settings
    from engine.context import build_context

    settings = get_settings()
    clock = ReplayClock(datetime.now(timezone.utc))
    ctx = build_context(settings, clock=clock)
    state = runtime.RuntimeState(instance=f"chaos:{os.getpid()}")
    runtime.startup_reconcile(ctx)
    runtime.replay(ctx, clock, state, first, last, speed=0,
                   intraday_every=timedelta(minutes=CHAOS_INTRADAY_MINUTES))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.chaos")
    sub = parser.add_subparsers(dest="cmd", required=True)
    child = sub.add_parser("child")
    child.add_argument("--first", type=date.fromisoformat, required=True)
    child.add_argument("--last", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    return _child(args.first, args.last)


if __name__ == "__main__":
    raise SystemExit(main())

