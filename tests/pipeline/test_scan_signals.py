"""The pre-market trades the signals of the scan that was run (issue 11, item 8), and the scan table puts
the signals first (DESIGN §4 ranking)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.models import Order, ScanResult, Signal
from engine.scanning import current_signals, run_scan

AS_OF = date(2026, 9, 30)
PREMARKET = datetime(2026, 10, 1, 8, 30, tzinfo=NEW_YORK)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("signals")
    initialise(load_settings(data_dir=path, sim_symbols=800), sessions=330, progress=False)
    return path


def _settings(data_dir: Path, min_atr_pct: float):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=data_dir, sim_symbols=800, strategy={"min_atr_pct": min_atr_pct})


def _day_signals(db) -> dict[str, Signal]:  # type: ignore[no-untyped-def]
    with Session(db) as s:
        return {sig.symbol: sig for sig in s.exec(select(Signal).where(Signal.data_date == AS_OF,
                                                                   Signal.direction == "long")).all()}


def test_a_new_scan_retires_the_signals_it_no_longer_produces(data_dir: Path) -> None:
    loose, strict = _settings(data_dir, 3.0), _settings(data_dir, 5.0)
    ctx = build_context(strict, clock=ReplayClock(PREMARKET.astimezone(UTC)))
    run3 = run_scan(loose, ctx.db, as_of=AS_OF)
    frame3 = run3.results
    assert frame3 is not None
    by_3 = set(frame3.loc[frame3["signal"].astype(bool), "symbol"])
    # the symbols only the loose scan takes: ATR% in [3, 5), read off the scan's own values
    only_loose = set(frame3.loc[frame3["signal"].astype(bool) & (frame3["atr_pct"] < 5.0), "symbol"])
    assert only_loose and only_loose < by_3

    run5 = run_scan(strict, ctx.db, as_of=AS_OF)
    assert not run5.cache_hit
    signals = _day_signals(ctx.db)
    open_now = {s for s, sig in signals.items() if sig.status == "new"}
    assert open_now == by_3 - only_loose
    assert all(signals[s].scan_run_id == run5.run.id for s in open_now)
    assert {s for s, sig in signals.items() if sig.status == "retired"} == only_loose
    with Session(ctx.db) as s:
        assert {sig.symbol for sig in current_signals(s, run5.run)} == open_now

    # back to 3%: the cached run is the newest for these parameters; its signals are current again
    again = run_scan(loose, ctx.db, as_of=AS_OF)
    assert again.cache_hit and again.run.id == run3.run.id
    signals = _day_signals(ctx.db)
    assert {s for s, sig in signals.items() if sig.status == "new"} == by_3
    assert all(sig.scan_run_id == run3.run.id for sig in signals.values())


def test_the_premarket_orders_only_signals_of_the_current_parameters(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    from engine.pipeline import run_premarket

    mine = tmp_path / "var"
    shutil.copytree(data_dir, mine)
    loose, strict = _settings(mine, 3.0), _settings(mine, 5.0)
    ctx = build_context(strict, clock=ReplayClock(PREMARKET.astimezone(UTC)))
    run_scan(loose, ctx.db, as_of=AS_OF)  # yesterday's settings scanned first
    report = run_premarket(ctx)
    with Session(ctx.db) as s:
        ordered = set(s.exec(select(Order.symbol).where(Order.intent == "open")).all())
        atr_pct = dict(s.exec(select(ScanResult.symbol, ScanResult.atr_pct)
                              .where(ScanResult.scan_run_id == report_run_id(s))).all())
    assert ordered, report.lines
    assert all(atr_pct[sym] >= 5.0 for sym in ordered), {sym: atr_pct[sym] for sym in ordered}


def report_run_id(session: Session) -> int:
    from engine.models import ScanRun

    return max(r.id for r in session.exec(select(ScanRun)).all())


def test_the_scan_table_ranks_signals_first(data_dir: Path) -> None:
    settings = _settings(data_dir, 3.0)
    ctx = build_context(settings, clock=ReplayClock(PREMARKET.astimezone(UTC)))
    run = run_scan(settings, ctx.db, as_of=AS_OF).run
    with Session(ctx.db) as s:
        rows = s.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id).order_by(ScanResult.rank)).all()
    flags = [r.signal for r in rows]
    n = sum(flags)
    assert n > 0 and all(flags[:n]) and not any(flags[n:])
    top = rows[:n]
    keys = [(-(r.score or 0), r.atr_distance) for r in top]
    assert keys == sorted(keys)  # then score, then the lower atr_distance


class _LockProbe:
    """Wraps the market and the broker: at every network-shaped call, checks that no transaction of the
    engine holds the database (another connection must be able to take the write lock at once)."""

    def __init__(self, inner, db_path: Path, calls: list[tuple[str, bool]]) -> None:  # type: ignore[no-untyped-def]
        self._inner, self._path, self._calls = inner, db_path, calls

    def _free(self) -> bool:
        import sqlite3

        conn = sqlite3.connect(self._path, timeout=0.05, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self._inner, name)
        if name not in ("option_chain", "atm_iv_series", "account") or not callable(attr):
            return attr

        def probed(*args, **kwargs):  # type: ignore[no-untyped-def]
            self._calls.append((name, self._free()))
            return attr(*args, **kwargs)

        return probed


def test_premarket_fetches_chains_quotes_and_account_outside_transactions(data_dir: Path, tmp_path: Path) -> None:
    """Issue 12, item 2 (pre-market path): no database transaction is held while a chain, an IV history or
    the account is requested."""
    import shutil

    from engine.pipeline import run_premarket

    mine = tmp_path / "var"
    shutil.copytree(data_dir, mine)
    settings = _settings(mine, 3.0)
    ctx = build_context(settings, clock=ReplayClock(PREMARKET.astimezone(UTC)))
    calls: list[tuple[str, bool]] = []
    db_path = Path(settings.db_url.split("///", 1)[1])
    ctx.market = _LockProbe(ctx.market, db_path, calls)  # type: ignore[assignment]
    ctx.broker = _LockProbe(ctx.broker, db_path, calls)  # type: ignore[assignment]
    report = run_premarket(ctx)
    assert report.counts.get("entry_orders", 0) > 0, report.lines
    names = {name for name, _ in calls}
    assert {"option_chain", "account"} <= names
    held = [name for name, free in calls if not free]
    assert held == [], f"{len(held)} of {len(calls)} calls made inside a transaction: {sorted(set(held))}"


def test_liquid_extended_zone_symbols_become_neutral_setups(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    """An extended-zone symbol (atr_distance 4-7) is no long entry but may carry an iron condor (DESIGN §5):
    the scan writes it as a neutral setup when it is liquid, and the pre-market reads it after the longs."""
    from engine.models import ScanRun
    from engine.scanning import sync_signals

    def row(rank: int, symbol: str, zone: str, signal: bool, dollar_volume: float = 50e6, close: float = 50.0):  # type: ignore[no-untyped-def]
        return ScanResult(scan_run_id=0, rank=rank, symbol=symbol, close=close, atr=2.0, sma50=40.0, zone=zone,
                          score=0.9, signal=signal, stop=47.0, target_1=54.0, target_2=56.0, target_3=58.0,
                          target_4=60.0, dollar_volume_20=dollar_volume, atr_distance=5.0, atr_pct=4.0)

    with Session(migrated_sqlite) as s:
        run = ScanRun(strategy="atr_matrix", data_source="sim", data_date=AS_OF, params_hash="x",
                      params={"min_close": 10.0, "min_dollar_volume": 20e6}, status="ok")
        s.add(run)
        s.flush()
        rows = [row(1, "LONG", "entry", True), row(2, "EXT", "extended", False),
                row(3, "THIN", "extended", False, dollar_volume=5e6), row(4, "CHEAP", "extended", False, close=8.0),
                row(5, "FAR", "scale_out", False)]
        for r in rows:
            r.scan_run_id = run.id
            s.add(r)
        s.flush()
        sync_signals(s, run)
        s.commit()
        assert [x.symbol for x in current_signals(s, run)] == ["LONG"]
        (ext,) = current_signals(s, run, direction="neutral")
    assert ext.symbol == "EXT" and ext.zone == "extended" and ext.direction == "neutral"
