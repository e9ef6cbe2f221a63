"""Scan runs stored with their counts and a cache; candidates built and stored from the signals."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.bootstrap import initialise
from engine.clock import ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.db import session_scope
from engine.models import OptionCandidate, ScanResult, ScanRun, Signal
from engine.options.candidates import build_candidates
from engine.scanning import reason_code, run_scan

AS_OF = date(2026, 9, 30)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data_dir: Path = tmp_path_factory.mktemp("scan")
    settings = load_settings(data_dir=data_dir, sim_symbols=800)
    initialise(settings, sessions=330, progress=False)
    return settings


def test_scan_run_is_stored_with_counts_and_then_cached(seeded) -> None:  # type: ignore[no-untyped-def]
    settings = seeded
    ctx = build_context(settings, clock=ReplayClock(datetime(2026, 10, 1, 12, tzinfo=UTC)))
    first = run_scan(settings, ctx.db, as_of=AS_OF)
    assert not first.cache_hit and first.results is not None
    frame = first.results
    run = first.run
    assert run.data_date == AS_OF and run.n_scanned == len(frame) > 700
    assert run.n_signals == int(frame["signal"].sum()) > 0
    excluded = frame["excluded_reason"].dropna()
    assert run.n_excluded == len(excluded)
    # counts by reason add up to the reasons the rows carry
    expected = Counter(reason_code(r) for reasons in excluded for r in reasons.split("; "))
    assert run.excluded_by_reason == dict(expected)
    included = frame[frame["excluded_reason"].isna()]
    assert run.breadth["above_sma50"] == pytest.approx((included["close"] > included["sma50"]).mean())
    with Session(ctx.db) as s:
        rows = s.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id)).all()
        signals = s.exec(select(Signal).where(Signal.scan_run_id == run.id)).all()
    assert len(rows) == run.n_scanned and {r.rank for r in rows} == set(range(1, len(rows) + 1))
    assert len(signals) == run.n_signals
    assert all(sig.values["atr_distance"] is not None and len(sig.targets) == 4 for sig in signals)
    second = run_scan(settings, ctx.db, as_of=AS_OF)
    assert second.cache_hit and second.run.id == run.id and second.run.cache_hits == 1
    with Session(ctx.db) as s:
        assert len(s.exec(select(ScanRun)).all()) == 1  # no recomputation, no second run row


def test_candidates_are_stored_with_the_chosen_structure_and_rejections(seeded) -> None:  # type: ignore[no-untyped-def]
    settings = seeded
    now = datetime(2026, 10, 1, 13, 0, tzinfo=UTC)
    ctx = build_context(settings, clock=ReplayClock(now))
    run_scan(settings, ctx.db, as_of=AS_OF)
    with session_scope(ctx.db) as s:
        signals = s.exec(select(Signal).where(Signal.data_date == AS_OF)).all()
        outcomes = [build_candidates(s, ctx.market, settings, sig, now) for sig in signals[:5]]
    built = [o for o in outcomes if o.structure is not None]
    assert built, [o.note for o in outcomes]
    with Session(ctx.db) as s:
        for outcome in built:
            cands = s.exec(select(OptionCandidate).where(OptionCandidate.signal_id == outcome.signal_id)).all()
            chosen = [c for c in cands if c.chosen]
            assert len(chosen) == 1 and chosen[0].structure == outcome.structure.kind
            c = chosen[0]
            assert c.max_loss > 0 and c.legs and all(leg["occ_symbol"] for leg in c.legs)
            # every rejected contract says why, and rejected and chosen legs do not overlap
            assert c.rejected and all(r["reason"] for r in c.rejected)
            assert not {leg["occ_symbol"] for leg in c.legs} & {r["occ_symbol"] for r in c.rejected}
            # long legs follow DESIGN §5's delta band and expiry window
            for leg in c.legs:
                if leg["qty"] > 0 and leg["right"] == "C" and c.structure in ("long_call", "call_debit_spread"):
                    assert 0.55 <= leg["delta"] <= 0.70 and 21 <= leg["dte"] <= 60
            assert s.get(Signal, outcome.signal_id).status == "candidates_built"  # type: ignore[union-attr]


def test_a_long_call_over_the_risk_budget_becomes_a_debit_spread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine import pipeline
    from engine.models import Order

    # 0.3% of 100,000 = $300 per trade: most single calls cost more, their spreads less
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=800, risk={"risk_per_trade_pct": 0.3})
    initialise(settings, sessions=330, progress=False)
    ctx = build_context(settings, clock=ReplayClock(datetime(2026, 10, 1, 12, 30, tzinfo=UTC)))
    report = pipeline.run_premarket(ctx)
    switched = [line for line in report.lines if "call debit spread instead" in line]
    assert switched, report.lines
    with Session(ctx.db) as s:
        spreads = s.exec(select(OptionCandidate).where(OptionCandidate.structure == "call_debit_spread",
                                                       OptionCandidate.chosen)).all()
        noted = [c for c in spreads if any("long call not sized" in n for n in c.reasons["notes"])]
        assert noted
        for c in noted:
            calls = s.exec(select(OptionCandidate).where(OptionCandidate.signal_id == c.signal_id,
                                                         OptionCandidate.structure == "long_call")).all()
            assert calls and not any(x.chosen for x in calls)  # the spread replaced the call as the choice
            assert c.max_loss < calls[0].max_loss
        orders = s.exec(select(Order).where(Order.structure == "call_debit_spread")).all()
        for o in orders:  # every spread order fits the per-trade budget, fees included
            assert o.risk_per_unit * o.quantity <= 300
