"""`python -m engine bench orders`: latency from a signal's order spec to the paper broker's acknowledgement.

Each measured order goes the whole production path: propose (order row + events, approval route),
the risk gate against the live portfolio (account read from the broker, open risk from the database),
the `submitting` commit, the broker call (the paper venue prices the legs from the simulated market and
fills or rests the order), and applying the answer and fills to the order and the position.

The day is an honest one (issue 11): orders are spread over a simulated session's 390 minutes; each order's
contract comes from the option chain generated at that minute, as a cycle would read it (every contract is
used once); about 60% of entries are marketable (limit above the ask) and 40% rest (limit below the bid),
and resting entries still working after 15 minutes are cancelled, as a cycle re-pricing its entries would.
The book rolls like a real one: at most ``OPEN_POSITIONS`` positions are open (DESIGN §6's default limit);
once full, every new entry is followed by the exit of the oldest position at the bid. Entries and exits
are both orders and both are measured; the chain generation, cancellations and book-keeping between
orders are not.

Reference (same run, same disk): one SQLite insert + commit, so the per-order figure can be read as
"commits per order" x this. ``first_order_ms`` is the cold path on its own: the first order of a process
compiles every statement of the path and loads the compiled pricers (it is also in the percentiles).
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from engine.bench.common import peak_rss_mb, table
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.data import calendar
from engine.db import migrate, session_scope
from engine.execution import service
from engine.execution.ports import BrokerRejected, BrokerUnavailable, Leg, Side
from engine.models import Order
from engine.options.chain import enrich
from engine.risk import Intent

BENCH_SYMBOL_COUNT = 200
OPEN_POSITIONS = 10


SESSION_MINUTES = 390
RESTING_SHARE = 0.4
CANCEL_AFTER_MINUTES = 15


def _pick(ctx, symbol: str, at: datetime, used: set[str]):  # type: ignore[no-untyped-def]
    """The liquid call nearest 0.60 delta in the chain generated at ``at`` that no order used yet."""
    chain = enrich(ctx.market.option_chain(symbol, at), r=ctx.settings.risk_free_rate,
                   q=ctx.market.dividend_yield(symbol, at.date()))
    calls = chain[(chain["right"] == "C") & (chain["dte"].between(21, 60)) & (chain["quote_flag"] == "ok")
                  & (chain["volume"] >= 50) & (chain["bid"] > 0.05) & ~chain["occ_symbol"].isin(used)]
    if calls.empty:
        return None
    return calls.iloc[int((calls["delta"] - 0.6).abs().to_numpy().argmin())]


def _entry_spec(symbol: str, row, n: int, resting: bool) -> service.OrderSpec:  # type: ignore[no-untyped-def]
    leg = Leg(row.occ_symbol, Side.buy, 1, underlying=symbol, right="C", strike=Decimal(str(row.strike)),
              expiry=row.expiry)
    bid, ask = Decimal(str(row.bid)), Decimal(str(row.ask))
    limit = max(bid - Decimal("0.05"), Decimal("0.01")) if resting else ask + Decimal("0.05")
    return service.OrderSpec(
        strategy="bench", signal_key=f"bench:{n}", underlying=symbol, sector=f"S{n % 40}",
        structure="long_call", intent=Intent.open, legs=(leg,), quantity=1, limit_price=limit,
        max_loss_per_unit=limit * 100, buying_power_per_unit=limit * 100, fees_per_unit=Decimal("1.10"),
        delta_dollars_per_unit=0.0, reason="benchmark")


def _exit_spec(ctx, entry: service.OrderSpec, position_id: int, at: datetime) -> service.OrderSpec:  # type: ignore[no-untyped-def]
    legs = tuple(leg.reversed() for leg in entry.legs)
    bid = Decimal(str(ctx.market.option_quotes([legs[0].instrument], at)["bid"].iloc[0])) \
        if hasattr(ctx.market, "option_quotes") else Decimal("0.06")
    limit = -max(bid - Decimal("0.05"), Decimal("0.01"))  # sell at the bid less a nickel: marketable
    return service.OrderSpec(
        strategy="bench", signal_key=f"exit:{position_id}", underlying=entry.underlying, sector=entry.sector,
        structure=entry.structure, intent=Intent.close, legs=legs, quantity=entry.quantity,
        limit_price=om_money(limit), max_loss_per_unit=Decimal("0"), buying_power_per_unit=Decimal("0"),
        reason="benchmark exit", position_id=position_id)


def om_money(x: Decimal) -> Decimal:
    from engine.execution.orders import money

    return money(x)


def _reference_commit_ms(root: Path, n: int = 200) -> float:
    """Median time of one insert + commit on a SQLite file in the same folder (WAL, synchronous=NORMAL)."""
    from engine.db import make_engine

    eng = make_engine(f"sqlite:///{root / 'reference.db'}")
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with eng.begin() as conn:
            conn.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": str(i)})
        times.append((time.perf_counter() - t0) * 1000)
    eng.dispose()
    return statistics.median(times)


def bench_orders(orders: int = 1000, seed: int = 7) -> dict[str, float | int]:
    root = Path(tempfile.mkdtemp(prefix="qm-bench-orders-"))
    rng = random.Random(seed)
    try:
        # Limits wide enough that the gate approves every benchmark order (it still evaluates every rule).
        settings = load_settings(
            data_dir=root, sim_seed=seed, sim_symbols=BENCH_SYMBOL_COUNT, starting_cash=10_000_000.0,
            risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100, "max_heat_pct": 100,
                  "max_open_positions": 500, "max_sector_exposure_pct": 100})
        migrate(settings.db_url)
        day = calendar.previous_session(datetime.now(NEW_YORK).date())
        opens = calendar.session_times(day)[0]  # type: ignore[index]
        clock = ReplayClock(opens)
        ctx = build_context(settings, clock=clock)
        symbols = [s for s in ctx.market.universe()["symbol"] if s not in ("SPY", "QQQ", "IWM", "DIA")]
        latencies: list[float] = []
        kinds = {"marketable_entries": 0, "resting_entries": 0, "exits": 0, "cancelled": 0}
        acked = filled_orders = 0
        open_positions: list[tuple[int, service.OrderSpec]] = []
        resting: list[tuple[int, int]] = []  # (order id, minute sent)
        used: set[str] = set()
        n_entry = 0

        def send(spec: service.OrderSpec, at: datetime) -> Order:
            t0 = time.perf_counter()
            with session_scope(ctx.db) as session:
                order_id = service.propose(session, spec, settings, at).id
            order = service.submit_one(ctx.db, settings, ctx.broker, order_id, at)
            latencies.append((time.perf_counter() - t0) * 1000)
            return order

        i = 0
        while len(latencies) < orders:
            minute = min(SESSION_MINUTES - 1, len(latencies) * SESSION_MINUTES // orders)
            at = opens + timedelta(minutes=minute, seconds=rng.randint(0, 59))
            clock.set(at)
            _cancel_stale(ctx, resting, minute, at, kinds)
            if len(open_positions) >= OPEN_POSITIONS:
                position_id, entry = open_positions.pop(0)
                order = send(_exit_spec(ctx, entry, position_id, at), at)
                kinds["exits"] += 1
            else:
                row = None
                while row is None:
                    symbol = symbols[i % len(symbols)]
                    i += 1
                    row = _pick(ctx, symbol, at, used)
                used.add(row.occ_symbol)
                is_resting = rng.random() < RESTING_SHARE
                spec = _entry_spec(symbol, row, n_entry, is_resting)
                n_entry += 1
                order = send(spec, at)
                kinds["resting_entries" if is_resting else "marketable_entries"] += 1
                if order.status == "filled" and order.position_id is not None:
                    open_positions.append((order.position_id, spec))
                elif order.status == "submitted":
                    resting.append((order.id, minute))
            acked += order.status in ("submitted", "partially_filled", "filled")
            filled_orders += order.status == "filled"
        with ctx.db.connect() as conn:
            commits_hint = conn.execute(sa.text("SELECT count(*) FROM orderevent")).scalar()
        lat = np.asarray(latencies)
        result = {
            "orders": len(latencies),
            **kinds,
            "session_minutes": SESSION_MINUTES,
            "open_positions_max": OPEN_POSITIONS,
            "acknowledged": acked,
            "filled_at_once": filled_orders,
            "order_events_per_order": round((commits_hint or 0) / max(len(latencies), 1), 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "max_ms": round(float(lat.max()), 3),
            # the cold path: the session's first order compiles the statements and warms the caches
            "first_order_ms": round(latencies[0], 3),
            "mean_ms": round(statistics.fmean(latencies), 3),
            "target_p99_ms": 20.0,
            "reference_sqlite_commit_ms": round(_reference_commit_ms(root), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table([(k, str(v)) for k, v in result.items()], f"signal -> paper acknowledgement, {orders} orders"))
    return result


def _cancel_stale(ctx, resting: list[tuple[int, int]], minute: int, at: datetime,  # type: ignore[no-untyped-def]
                  kinds: dict[str, int]) -> None:
    """Cancel resting entries older than ``CANCEL_AFTER_MINUTES`` (not timed: a separate cycle step)."""
    while resting and minute - resting[0][1] >= CANCEL_AFTER_MINUTES:
        order_id, _ = resting.pop(0)
        with session_scope(ctx.db) as session:
            order = session.get(Order, order_id)
            if order is None or order.status not in ("submitted", "partially_filled"):
                continue
            try:
                answer = ctx.broker.cancel(order.client_order_id)
            except (BrokerUnavailable, BrokerRejected):
                continue
            service.apply_broker_state(session, order, answer, ctx.broker.fills(order.client_order_id), at)
            kinds["cancelled"] += 1
