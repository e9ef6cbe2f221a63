"""Neutral setups carry no long levels (issue 11 review: condors used the long setup's stop and targets), and
held stock of 100+ shares gets one covered call in the pre-market (DESIGN §5), end to end on the simulated
market with the engine's books matching the paper broker's."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session

from engine.models import ScanResult, ScanRun
from engine.scanning import current_signals, sync_signals

AS_OF = date(2026, 9, 30)


def test_neutral_setups_carry_no_long_stop_or_targets(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    def row(rank: int, symbol: str, zone: str, signal: bool) -> ScanResult:
        return ScanResult(scan_run_id=0, rank=rank, symbol=symbol, close=50.0, atr=2.0, sma50=40.0, zone=zone,
                          score=0.9, signal=signal, stop=47.0, target_1=54.0, target_2=56.0, target_3=58.0,
                          target_4=60.0, dollar_volume_20=50e6, atr_distance=5.0, atr_pct=4.0)

    with Session(migrated_sqlite) as s:
        run = ScanRun(strategy="atr_matrix", data_source="sim", data_date=AS_OF, params_hash="x",
                      params={"min_close": 10.0, "min_dollar_volume": 20e6}, status="ok")
        s.add(run)
        s.flush()
        for r in (row(1, "LONG", "entry", True), row(2, "EXT", "extended", False)):
            r.scan_run_id = run.id
            s.add(r)
        s.flush()
        sync_signals(s, run)
        s.commit()
        (long,) = current_signals(s, run)
        (ext,) = current_signals(s, run, direction="neutral")
        # the long setup keeps its ATR levels; the neutral one (an iron condor's) has none of them
        assert (long.stop, long.targets) == (47.0, [54.0, 56.0, 58.0, 60.0])
        assert (ext.stop, ext.targets, ext.atr, ext.entry_price) == (0.0, [], 2.0, 50.0)


# --- end to end on the simulated market --------------------------------------------------------------------

NY = "America/New_York"


def _put_leg(ch, strike_target: float, side):  # type: ignore[no-untyped-def]
    from engine.execution.brokers.quotes import parse_option_symbol
    from engine.execution.ports import AssetType, Leg

    puts = ch[ch["right"] == "P"]
    row = puts.iloc[(puts["strike"] - strike_target).abs().argsort().iloc[0]]
    spec = parse_option_symbol(row["occ_symbol"])
    assert spec is not None
    return Leg(row["occ_symbol"], side, 1, AssetType.option, spec.underlying, spec.right, spec.strike, spec.expiry)


def test_an_assigned_put_leaves_shares_and_the_next_premarket_writes_one_covered_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from sqlmodel import select

    from engine import pipeline
    from engine.bootstrap import initialise
    from engine.clock import ReplayClock
    from engine.config import load_settings
    from engine.context import build_context
    from engine.db import session_scope
    from engine.execution import service
    from engine.execution.ports import Side
    from engine.execution.reconcile import engine_instrument_positions, reconcile
    from engine.models import Order, Position
    from engine.risk import Intent

    ny = ZoneInfo(NY)
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=40, scan_top_n=1,
                             risk={"risk_per_trade_pct": 10, "max_symbol_risk_pct": 100, "max_heat_pct": 100})
    initialise(settings, sessions=330, progress=False)
    clock = ReplayClock(datetime(2026, 10, 5, 10, 0, tzinfo=ny))
    ctx = build_context(settings, clock=clock)
    symbol, expiry = "LI", date(2026, 10, 9)  # 163.02 on Oct 5, settles 153.19; liquid 30-45 day calls
    chain = ctx.market.option_chain(symbol, clock.now())
    chain = chain[chain["expiry"] == expiry]
    spot = float(chain["underlying_price"].iloc[0])
    # a bull put spread whose short put is deep in the money: it is assigned at expiry, the wing expires
    short, wing = _put_leg(chain, spot * 1.1, Side.sell), _put_leg(chain, spot * 0.7, Side.buy)
    width = (short.strike - wing.strike) * 100
    spec = service.OrderSpec("atr_matrix", "bps", symbol, "", "bull_put_credit_spread", Intent.open, (short, wing),
                             1, Decimal("0"), width, width)  # any credit: marketable
    with session_scope(ctx.db) as s:
        oid = service.propose(s, spec, settings, clock.now()).id
    entry = service.submit_one(ctx.db, settings, ctx.broker, oid, clock.now())
    assert entry.status == "filled", entry.risk_decision

    clock.set(datetime(2026, 10, 9, 16, 30, tzinfo=ny))  # after the expiry session's close
    pipeline.run_postmarket(ctx)
    with session_scope(ctx.db) as s:
        held = s.exec(select(Position).where(Position.status == "open")).all()
    assert [(p.structure, p.quantity) for p in held] == [("stock", 100)]  # the put's 100 shares

    clock.set(datetime(2026, 10, 12, 8, 30, tzinfo=ny))
    report = pipeline.run_premarket(ctx)
    assert report.counts.get("covered_call_orders") == 1, report.lines
    for minutes in range(9 * 60 + 45, 15 * 60 + 45, 30):  # the intraday cycles, until the credit is there
        clock.set(datetime(2026, 10, 12, minutes // 60, minutes % 60, tzinfo=ny))
        pipeline.execute_orders(ctx)
        with session_scope(ctx.db) as s:
            if s.exec(select(Order).where(Order.structure == "covered_call", Order.status == "filled")).first():
                break
    with session_scope(ctx.db) as s:
        (order,) = s.exec(select(Order).where(Order.structure == "covered_call")).all()
        assert (order.status, order.quantity, order.filled_quantity) == ("filled", 1, 1)
        assert order.reason.startswith("100 shares of LI held, 0 call(s) written")
        (call,) = s.exec(select(Position).where(Position.structure == "covered_call")).all()
        (leg,) = call.legs
        # DESIGN §5: a 30-45 day call sold against the shares, covered (no risk beyond the shares')
        assert leg["side"] == "sell" and leg["right"] == "C" and call.max_loss == 0
        assert 30 <= (date.fromisoformat(leg["expiry"]) - date(2026, 10, 12)).days <= 45
        assert call.stop == 0.0 and call.targets == []
        ours = engine_instrument_positions(s)
    theirs = {p.instrument: p.quantity for p in ctx.broker.positions()}
    assert ours == theirs == {symbol: 100, leg["instrument"]: -1}
    assert reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), clock.now()).differences == []

    # the next pre-market sees the shares covered: no second call
    clock.set(datetime(2026, 10, 13, 8, 30, tzinfo=ny))
    assert "covered_call_orders" not in pipeline.run_premarket(ctx).counts

    # The shares' stop is hit: the call is bought back first (the venue refuses to leave it naked), the
    # shares go at the next cycle; no order is refused on the way and the books still match the broker.
    with session_scope(ctx.db) as s:
        (shares,) = s.exec(select(Position).where(Position.structure == "stock", Position.status == "open")).all()
        shares.stop = 10_000.0
        s.add(shares)
    clock.set(datetime(2026, 10, 13, 10, 0, tzinfo=ny))
    first = pipeline.manage_positions(ctx)
    assert any("stock exit waits for its covered call" in line for line in first.lines), first.lines
    pipeline.execute_orders(ctx)
    clock.set(datetime(2026, 10, 13, 10, 15, tzinfo=ny))
    pipeline.manage_positions(ctx)
    pipeline.execute_orders(ctx)
    with session_scope(ctx.db) as s:
        assert s.exec(select(Position).where(Position.status == "open")).all() == []
        exits = s.exec(select(Order).where(Order.intent != "open")).all()
        assert sorted((o.structure, o.status) for o in exits) == [("covered_call", "filled"), ("stock", "filled")]
        assert s.exec(select(Order).where(Order.symbol == symbol, Order.status == "rejected")).all() == []
    assert ctx.broker.positions() == []
    assert reconcile(ctx.db, ctx.broker, Decimal(str(settings.starting_cash)), clock.now()).differences == []
