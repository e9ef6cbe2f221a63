"""`python -m engine bench orders`: latency from a signal's order spec to the paper broker's acknowledgement.

Each measured order goes the whole production path: propose (order row + events, approval route),
the risk gate against the live portfolio (account read from the broker, open risk from the database),
the `submitting` commit, the broker call (the paper venue prices the legs from the simulated market and
fills), and applying the answer and fills to the order and the position.

The book rolls like a real one: at most ``OPEN_POSITIONS`` positions are open (DESIGN §6's default
limit); once full, every new entry is followed by the exit of the oldest position. Entries and exits
are both orders and both are measured.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from engine.bench.common import peak_rss_mb, table
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.data import calendar
from engine.db import migrate, session_scope
from engine.execution import service
from engine.execution.ports import Leg, Side
from engine.models import Order
from engine.options.chain import enrich
from engine.risk import Intent

BENCH_SYMBOL_COUNT = 200
OPEN_POSITIONS = 10


def _specs(ctx, at: datetime, n: int) -> list[service.OrderSpec]:  # type: ignore[no-untyped-def]
    """n one-contract long calls on liquid near-the-money contracts, each a distinct decision."""
    specs: list[service.OrderSpec] = []
    universe = ctx.market.universe()
    symbols = [s for s in universe["symbol"] if s not in ("SPY", "QQQ", "IWM", "DIA")]
    for sym in symbols:
        chain = enrich(ctx.market.option_chain(sym, at), r=ctx.settings.risk_free_rate,
                       q=ctx.market.dividend_yield(sym, at.date()))
        calls = chain[(chain["right"] == "C") & (chain["dte"].between(21, 60)) & (chain["quote_flag"] == "ok")
                      & (chain["volume"] >= 50) & (chain["bid"] > 0)]
        calls = calls.iloc[(calls["delta"] - 0.6).abs().argsort()[:3]]
        for row in calls.itertuples():
            leg = Leg(row.occ_symbol, Side.buy, 1, underlying=sym, right="C", strike=Decimal(str(row.strike)),
                      expiry=row.expiry)
            limit = Decimal(str(row.ask)) + Decimal("0.05")
            for k in range(4):
                specs.append(service.OrderSpec(
                    strategy="bench", signal_key=f"bench:{len(specs)}:{k}", underlying=sym,
                    sector=f"S{len(specs) % 40}",
                    structure="long_call", intent=Intent.open, legs=(leg,), quantity=1, limit_price=limit,
                    max_loss_per_unit=limit * 100, buying_power_per_unit=limit * 100, fees_per_unit=Decimal("1.10"),
                    delta_dollars_per_unit=0.0, reason="benchmark"))
                if len(specs) >= n:
                    return specs
    return specs


def _exit_spec(entry: service.OrderSpec, position_id: int) -> service.OrderSpec:
    legs = tuple(leg.reversed() for leg in entry.legs)
    return service.OrderSpec(
        strategy="bench", signal_key=f"exit:{position_id}", underlying=entry.underlying, sector=entry.sector,
        structure=entry.structure, intent=Intent.close, legs=legs, quantity=entry.quantity,
        limit_price=Decimal("-0.01"), max_loss_per_unit=Decimal("0"), buying_power_per_unit=Decimal("0"),
        reason="benchmark exit", position_id=position_id)


def bench_orders(orders: int = 1000, seed: int = 7) -> dict[str, float | int]:
    root = Path(tempfile.mkdtemp(prefix="qm-bench-orders-"))
    try:
        # Limits wide enough that the gate approves every benchmark order (it still evaluates every rule).
        settings = load_settings(
            data_dir=root, sim_seed=seed, sim_symbols=BENCH_SYMBOL_COUNT, starting_cash=10_000_000.0,
            risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100, "max_heat_pct": 100,
                  "max_open_positions": 500, "max_sector_exposure_pct": 100})
        migrate(settings.db_url)
        day = calendar.previous_session(datetime.now(NEW_YORK).date())
        at = calendar.session_times(day)[0] + timedelta(hours=2)  # type: ignore[index]
        clock = ReplayClock(at)
        ctx = build_context(settings, clock=clock)
        specs = iter(_specs(ctx, at, orders))
        latencies: list[float] = []
        acked = 0
        open_positions: list[tuple[int, service.OrderSpec]] = []

        def send(spec: service.OrderSpec) -> Order:
            t0 = time.perf_counter()
            with session_scope(ctx.db) as session:
                order_id = service.propose(session, spec, settings, at).id
            order = service.submit_one(ctx.db, settings, ctx.broker, order_id, at)
            latencies.append((time.perf_counter() - t0) * 1000)
            return order

        while len(latencies) < orders:
            if len(open_positions) >= OPEN_POSITIONS:
                position_id, entry = open_positions.pop(0)
                order = send(_exit_spec(entry, position_id))
            else:
                spec = next(specs)
                order = send(spec)
                if order.position_id is not None:
                    open_positions.append((order.position_id, spec))
            acked += order.status in ("submitted", "partially_filled", "filled")
        lat = np.asarray(latencies)
        result = {
            "orders": len(latencies),
            "open_positions_max": OPEN_POSITIONS,
            "acknowledged": acked,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "max_ms": round(float(lat.max()), 3),
            "mean_ms": round(statistics.fmean(latencies), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table([(k, str(v)) for k, v in result.items()], f"signal -> paper acknowledgement, {orders} orders"))
    return result
