"""The read-only queries behind the console pages, checked against the engine's own numbers."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlmodel import Session, select

from engine import queries
from engine.config import get_settings
from engine.models import AccountSnapshot, OptionCandidate, Position


def _position(**kw) -> Position:  # type: ignore[no-untyped-def]
    base = {"strategy": "atr_matrix", "symbol": "ABC", "structure": "long_call", "quantity": 4, "initial_quantity": 4,
            "stop": 94.0, "targets": [118.0, 121.0, 124.0, 127.0], "targets_hit": 0,
            "legs": [{"instrument": "ABC   261120C00100000", "side": "buy", "ratio": 1, "asset": "option",
                      "underlying": "ABC", "right": "C", "strike": "100", "expiry": "2026-11-20"}]}
    return Position(**{**base, **kw})


def test_next_action_names_stop_next_target_and_time_exit() -> None:
    text = queries.next_action(_position(), 97.0, date(2026, 10, 1), close_at_dte=7)
    assert text == ("stop at 94.00 (−3.1%) · next target 118.00 (+21.6%) sells 1 · plan T1:1/T2:1/T3:1/T4:1 · "
                    "time exit Nov 13 (50 DTE)")
    later = queries.next_action(_position(targets_hit=3, quantity=1), 125.0, date(2026, 11, 16), close_at_dte=7)
    assert "next target 127.00" in later and "sells 1" in later and "time exit now (4 DTE)" in later
    done = queries.next_action(_position(targets_hit=4, quantity=0), 130.0, date(2026, 10, 1), close_at_dte=7)
    assert "all targets hit: trailing stop" in done


def test_next_action_shows_the_front_loaded_plan_and_an_exit_due_now() -> None:
    # 5 contracts: 2 at T1, then 1, 1, 1 (DESIGN §4); 3 contracts: T1, T2, T3 one each, nothing left for T4
    five = queries.next_action(_position(quantity=5, initial_quantity=5), 97.0, date(2026, 10, 1), close_at_dte=7)
    assert "next target 118.00 (+21.6%) sells 2" in five and "plan T1:2/T2:1/T3:1/T4:1" in five
    three = queries.next_action(_position(quantity=3, initial_quantity=3), 97.0, date(2026, 10, 1), close_at_dte=7)
    assert "sells 1" in three and "plan T1:1/T2:1/T3:1/T4:0" in three
    # below the stop the manager closes everything now, and the console says so first
    stopped = queries.next_action(_position(), 93.0, date(2026, 10, 1), close_at_dte=7)
    assert stopped.startswith("exit now: stop_hit: price 93.00 <= stop 94.00")


def test_rejection_rules_group_the_chain_filter_reasons() -> None:
    assert queries.rejection_rule("dte 7 < 21") == "dte"
    assert queries.rejection_rule("|delta| 0.11 outside long 0.55-0.70") == "delta"
    assert queries.rejection_rule("put not used by long_call") == "right not used by the structure"
    assert queries.rejection_rule("open_interest 120 < 500") == "open_interest"


def test_payoff_curve_matches_the_stored_candidate(filled, db) -> None:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        cand = session.exec(select(OptionCandidate).where(OptionCandidate.chosen)).first()
    detail = queries.candidate_detail(db, cand.id)
    curve = queries.payoff_curve(detail, r=0.04)
    structure = queries.candidate_structure(detail)
    assert math.isclose(-curve["at_expiry"].min(), float(structure.max_loss_per_contract("mid")), rel_tol=1e-9)
    for be in detail["breakevens"]:
        assert abs(float(structure.payoff_at_expiry([be])[0])) < 1e-6
    assert curve["today"].notna().all()
    assert detail["rejected"] and all({"occ_symbol", "reason"} <= set(r) for r in detail["rejected"])


def test_account_summary_and_risk_overview_agree_with_the_snapshot(filled, db) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    with Session(db) as session:
        snap = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.at.desc(),
                                                             AccountSnapshot.id.desc())).first()
        held = session.exec(select(Position).where(Position.status == "open")).all()
    summary = queries.account_summary(db, settings)
    assert summary["equity"] == float(snap.equity)
    assert summary["day_pnl"] == float(Decimal(snap.detail["day_pnl"]))
    assert summary["open_risk"] == float(sum(p.max_loss for p in held))
    risk = queries.risk_overview(db, settings, datetime.now(UTC))
    assert risk["equity"] == float(snap.equity)
    heat = next(r for r in risk["limits"] if r["rule"] == "heat")
    assert math.isclose(heat["used"], 100 * risk["heat"] / risk["equity"])
    assert risk["open_positions"] == len({p.symbol for p in held})
    assert math.isclose(risk["greeks"]["delta"], sum(p.greeks.get("delta", 0) for p in held), abs_tol=1e-6)


def test_gate_preview_uses_the_engine_gate_without_a_broker(filled, db) -> None:  # type: ignore[no-untyped-def]
    waiting = queries.pending_orders(db)
    preview = queries.gate_preview(db, get_settings(), waiting[0]["id"])
    rules = {c["rule"] for c in preview["checks"]}
    assert {"kill_switch", "daily_loss", "risk_per_trade", "symbol_risk", "heat", "open_positions",
            "sector_exposure", "buying_power"} <= rules
    assert preview["approved"] == all(c["passed"] for c in preview["checks"])


def test_empty_database_queries_return_empty_frames(empty, db) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    assert queries.latest_scan(db) is None
    assert queries.account_history(db).empty
    assert queries.open_positions(db, settings).empty and queries.closed_positions(db).empty
    assert queries.orders_frame(db).empty and queries.fills_frame(db).empty
    assert queries.pending_orders(db) == []
    assert queries.account_summary(db, settings)["equity"] == settings.starting_cash
    assert queries.data_freshness(settings)["sessions"] == 0
    assert queries.job_summary(db)["runs"].sum() == 0
