"""Report builders on small hand-built databases: formatting and the edge cases a replay may not reach."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlmodel import Session, select

from engine.clock import NEW_YORK
from engine.db import session_scope
from engine.models import (
    AccountSnapshot,
    Fill,
    Heartbeat,
    JobRun,
    NotificationOutbox,
    OptionCandidate,
    Order,
    OrderEvent,
    Position,
    ReconciliationRun,
    ScanResult,
    ScanRun,
    Signal,
)
from engine.notify import reports
from engine.notify.embeds import BLUE, GREEN, GREY, RED, plain_text, render, violations
from engine.notify.hooks import after_job, build_reports


def ny(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NEW_YORK)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Any:
    """Every builder on SQLite (naive timestamps) and PostgreSQL (timestamptz), when it is reachable."""
    if request.param == "sqlite":
        return request.getfixturevalue("migrated_sqlite")
    from engine.db import make_engine, migrate

    url = request.getfixturevalue("postgres_url")
    migrate(url)
    engine = make_engine(url)
    request.addfinalizer(engine.dispose)
    return engine


@pytest.fixture
def settings() -> Any:
    from engine.config import get_settings

    return get_settings()


def add(db: Any, *rows: Any) -> list[Any]:
    with session_scope(db) as s:
        for r in rows:
            s.add(r)
        s.flush()
    return list(rows)


def text_of(report: reports.Report) -> str:
    bodies = render(report.message)
    for body in bodies:
        assert violations(body) == []
    return plain_text(bodies)


def build(db: Any, fn: Any, *args: Any) -> Any:
    with Session(db) as s:
        return fn(s, *args)


def scan_run(db: Any, data_date: date, **kw: Any) -> ScanRun:
    breadth = {"above_sma50": 0.5767918, "entry_zone": 0.5017064, "extended": 0.0750853, "included": 586}
    run = ScanRun(strategy="atr_matrix", data_source="sim", data_date=data_date, params_hash="x", status="ok",
                  n_scanned=595, n_excluded=9, n_signals=kw.pop("n_signals", 0), breadth=breadth, **kw)
    return add(db, run)[0]


def result(run: ScanRun, symbol: str, rank: int = 1, **kw: Any) -> ScanResult:
    base = dict(close=50.0, atr=2.0, sma20=48.0, sma50=46.0, sma100=44.0, sma200=40.0, ema10=49.0,
                atr_distance=2.0, atr_pct=4.0, ma_aligned=True, range_pos_20=70.0, dollar_volume_20=5e7,
                zone="entry", score=1.0, signal=False)
    base.update(kw)
    return ScanResult(scan_run_id=run.id, rank=rank, symbol=symbol, **base)  # type: ignore[arg-type]


def position(symbol: str, **kw: Any) -> Position:
    base: dict[str, Any] = dict(strategy="atr_matrix", structure="long_call", quantity=2, initial_quantity=2,
                                entry_price=Decimal("4.00"), underlying_entry=50.0, entry_atr=2.0, stop=47.0,
                                targets=[60.0, 62.0, 64.0, 66.0], max_loss=Decimal("800"),
                                initial_risk=Decimal("800"), mark=Decimal("4.50"), unrealized_pnl=Decimal("100"),
                                greeks={"delta": 120.5, "theta": -8.25, "vega": 12.0, "underlying_price": 51.0},
                                legs=[{"instrument": f"{symbol:<6}260116C00050000", "side": "buy", "ratio": 1,
                                       "asset": "option", "underlying": symbol, "right": "C", "strike": "50",
                                       "expiry": "2026-01-16"}],
                                opened_at=ny(2025, 11, 20, 9, 35))
    base.update(kw)
    return Position(symbol=symbol, **base)


def order(symbol: str, cid: str, **kw: Any) -> Order:
    base: dict[str, Any] = dict(strategy="atr_matrix", structure="long_call", intent="open", quantity=2,
                                limit_price=Decimal("4.10"), status="filled", filled_quantity=2,
                                avg_fill_price=Decimal("4.05"), max_loss=Decimal("820"),
                                legs=[{"instrument": f"{symbol:<6}260116C00050000", "side": "buy", "ratio": 1,
                                       "asset": "option"}],
                                created_at=ny(2025, 11, 26, 8, 30), updated_at=ny(2025, 11, 26, 9, 35))
    base.update(kw)
    return Order(client_order_id=cid, symbol=symbol, **base)


# --- formatting ---------------------------------------------------------------------------------------


def test_money_percent_and_duration_formats() -> None:
    assert reports.money(1234.5) == "$1,234.50"
    assert reports.money(Decimal("-1234.567")) == "-$1,234.57"
    assert reports.money(0) == "$0.00"
    assert reports.money(12, signed=True) == "+$12.00"
    assert reports.money(-12, signed=True) == "-$12.00"
    assert reports.money(0, signed=True) == "$0.00"
    assert reports.money(None) == "n/a"
    assert reports.signed_pct(1.234) == "+1.23%"
    assert reports.signed_pct(-0.4) == "-0.40%"
    assert reports.signed_pct(0.001) == "0.00%"
    assert reports.share(0.5767918) == "57.7%"
    assert reports.net(Decimal("4.1")) == "$4.10 debit"
    assert reports.net(-0.85) == "$0.85 credit"
    assert reports.r_multiple(-0.5) == "-0.50R"
    assert reports.big_money(86_730_049.0) == "$86.7M"
    assert reports.duration(timedelta(seconds=42)) == "42s"
    assert reports.duration(timedelta(minutes=30)) == "30m"
    assert reports.duration(timedelta(hours=1)) == "1h 00m"
    assert reports.duration(timedelta(days=2, minutes=5)) == "2d 0h 05m"
    assert reports.occ("AECN  261218C00062500") == "AECN 261218C00062500"
    assert (reports.pnl_color(5), reports.pnl_color(-5), reports.pnl_color(0)) == (GREEN, RED, GREY)


def test_exit_rules_are_classified_from_the_reason() -> None:
    reason = "stop_hit: price 45.73 <= stop 46.78; premium_stop: value 4.78 is 20% below 5.98 paid (limit 12%)"
    assert reports.reason_codes(reason) == ["stop_hit", "premium_stop"]
    assert reports.exit_kind(reason) == "stop"
    assert reports.exit_kind("time_exit: 7 days to expiry <= 7") == "exit"
    assert reports.exit_kind("trend_break: close 45 < sma50 46") == "exit"
    assert reports.exit_kind("scale-out at target 1 (62.00)") == "scale_out"
    assert reports.exit_kind("target 2 of 4: price 63.10 >= 62.00") == "scale_out"


# --- Morning Brew -------------------------------------------------------------------------------------


def test_brew_on_an_empty_database_on_an_early_close_day(db: Any, settings: Any) -> None:
    now = ny(2025, 11, 28, 8, 30)
    report = build(db, reports.morning_brew, settings, now)
    assert (report.channel, report.key) == ("morning_brew", "morning_brew:2025-11-28")
    text = text_of(report)
    assert "2025-11-28 (Friday): 09:30-13:00 ET, **early close at 13:00 ET**" in text
    assert "Opens in 1h 00m (09:30 ET)" in text
    assert "No scan stored yet" in text
    assert "No open positions." in text
    assert "Heat $0.00 = 0.00% of equity (limit 10.00%)" in text
    assert "Positions 0 / 10" in text
    assert "Equity $100,000.00" in text  # the starting cash before any snapshot


def test_brew_with_a_scan_but_no_signals(db: Any, settings: Any) -> None:
    run = scan_run(db, date(2025, 11, 25))
    add(db, result(run, "SPY", close=601.25, atr_distance=-0.5678, atr_pct=1.2345, zone="below_trend"),
        result(run, "IWM", 2, excluded_reason="stale: 6 sessions", zone=None))
    text = text_of(build(db, reports.morning_brew, settings, ny(2025, 11, 26, 8, 30)))
    assert "Scan of 2025-11-25: 595 symbols, 586 included, 0 entry signals" in text
    assert "**SPY** 601.25 · zone below_trend · ATR distance -0.57 · ATR% 1.23%" in text
    assert "**QQQ**: not in the scan" in text
    assert "**IWM** 50.00: excluded (stale: 6 sessions)" in text
    assert "Above SMA50: 57.7%" in text and "In the entry zone: 50.2%" in text
    assert "Extended (ATR distance > 4): 7.5%" in text and "of 586 symbols" in text
    assert "No entry signals in the 2025-11-25 scan." in text
    # During and after the session the brew says so.
    assert "Open since 09:30 ET (1h 00m ago); closes in 5h 30m" in text_of(
        build(db, reports.morning_brew, settings, ny(2025, 11, 26, 10, 30)))
    assert "Closed at 16:00 ET" in text_of(build(db, reports.morning_brew, settings, ny(2025, 11, 26, 17, 0)))


def test_brew_setup_shows_levels_the_chosen_option_and_its_order(db: Any, settings: Any) -> None:
    run = scan_run(db, date(2025, 11, 25), n_signals=1)
    sig = add(db, Signal(scan_run_id=run.id, strategy="atr_matrix", symbol="ABC", data_date=date(2025, 11, 25),
                         score=0.9, zone="entry", entry_price=50.0, atr=2.0, stop=47.0,
                         targets=[60.0, 62.0, 64.0, 66.0], status="ordered", values={}))[0]
    add(db, OptionCandidate(signal_id=sig.id, symbol="ABC", structure="bull_put_credit_spread", chosen=True,
                            legs=[{"occ_symbol": "ABC   260116P00048000", "qty": -1},
                                  {"occ_symbol": "ABC   260116P00045000", "qty": 1}],
                            net_mid=-1.05, max_loss=195.0, breakevens=[46.95], iv_rank=72.4),
        order("ABC", "qm-abc-1", signal_id=sig.id, structure="bull_put_credit_spread", limit_price=Decimal("-1.00"),
              status="approved", filled_quantity=0, avg_fill_price=None, quantity=3, max_loss=Decimal("600")))
    text = text_of(build(db, reports.morning_brew, settings, ny(2025, 11, 26, 8, 30)))
    assert "Setup 1: ABC (score 0.90, zone entry)" in text
    assert "entry 50.00 · stop 47.00 (-6.0%) · targets 60.00 / 62.00 / 64.00 / 66.00" in text
    assert ("bull_put_credit_spread: SELL 1 ABC 260116P00048000; BUY 1 ABC 260116P00045000 · net $1.05 credit · "
            "max loss $195.00/contract · breakeven 46.95 · IV rank 72") in text
    assert "order x3 limit $1.00 credit, max loss $600.00: approved" in text
    assert "Pending entry risk" in text


def test_brew_flags_positions_needing_attention(db: Any, settings: Any) -> None:
    run = scan_run(db, date(2025, 11, 25))
    add(db, result(run, "NEAR", close=48.5, atr=2.0), result(run, "TGT", 2, close=61.0),
        result(run, "FINE", 3, close=52.0))
    soon = [{"instrument": "EXP   251205C00050000", "side": "buy", "ratio": 1, "asset": "option",
             "expiry": "2025-12-05"}]
    add(db, position("NEAR"), position("TGT"), position("FINE"), position("EXP", legs=soon))
    text = text_of(build(db, reports.morning_brew, settings, ny(2025, 11, 26, 8, 30)))
    assert "**NEAR** long_call x2: 0.75 ATR above stop 47.00 (close 48.50)" in text
    assert "**TGT** long_call x2: at target 1 60.00 (close 61.00)" in text
    assert "**EXP** long_call x2: 9 DTE (expires 2025-12-05)" in text  # no scan row: its last marked price
    assert "**FINE**" not in text
    assert "Positions 4 / 10" in text and "Heat $3,200.00 = 3.20% of equity" in text


def test_brew_notes_open_positions_that_need_nothing(db: Any, settings: Any) -> None:
    add(db, position("FINE", greeks={"underlying_price": 55.0}))
    text = text_of(build(db, reports.morning_brew, settings, ny(2025, 11, 26, 8, 30)))
    assert "1 open position; none within 1 ATR of its stop, at a target or within 10 DTE." in text


# --- signals channel ----------------------------------------------------------------------------------


def test_entry_signal_lists_each_value_against_the_scans_thresholds(db: Any, settings: Any) -> None:
    params = settings.strategy.model_dump(mode="json") | {"min_atr_pct": 2.5}
    run = scan_run(db, date(2025, 11, 25), params=params)
    values = {"close": 64.43, "atr": 2.04, "sma20": 63.02, "sma50": 61.23, "sma100": 61.06, "sma200": 55.35,
              "ema10": 65.25, "atr_distance": 1.5678, "atr_pct": 3.1654, "ma_aligned": True, "range_pos_20": 62.0,
              "dollar_volume_20": 86730049.8, "zone": "entry", "sector": "Information Technology"}
    sig = add(db, Signal(scan_run_id=run.id, strategy="atr_matrix", symbol="AECN", data_date=date(2025, 11, 25),
                         score=1.0, zone="entry", entry_price=64.43, atr=2.04, stop=61.37,
                         targets=[75.51, 77.55, 79.59, 81.63], status="no_candidate", values=values))[0]
    reps = build(db, reports.entry_signals, settings, ny(2025, 11, 26, 8, 30))
    assert [r.key for r in reps] == [f"signal:{sig.id}"] and reps[0].channel == "signals"
    text = text_of(reps[0])
    for line in ("✓ ATR distance 1.57 in [0, 4] (zone entry)", "✓ ATR% 3.17% >= 2.5%",
                 "✓ 20-day range position 62.0 >= 50", "✓ close 64.43 >= 10",
                 "✓ 20-day dollar volume $86.7M >= $20.0M", "✓ close 64.43 > SMA20 63.02",
                 "✓ MAs aligned: EMA10 65.25 >= SMA20 63.02 >= SMA50 61.23 >= SMA100 61.06 >= SMA200 55.35",
                 "entry 64.43 · stop 61.37 (-4.7%) · targets 75.51 / 77.55 / 79.59 / 81.63",
                 "no option candidate", "not ordered (signal no_candidate)", "sector Information Technology"):
        assert line in text, line
    # A day whose scan has no signals announces none.
    assert build(db, reports.entry_signals, settings, ny(2025, 11, 25, 8, 30)) == []


def test_beyond_25_signals_the_rest_share_one_message(db: Any, settings: Any) -> None:
    run = scan_run(db, date(2025, 11, 25), n_signals=27)
    add(db, *(Signal(scan_run_id=run.id, strategy="atr_matrix", symbol=f"S{i:02d}", data_date=date(2025, 11, 25),
                     score=1.0 - i / 100, zone="entry", entry_price=20.0 + i, atr=1.0, stop=19.0 + i,
                     targets=[30.0 + i], status="skipped", values={}) for i in range(27)))
    reps = build(db, reports.entry_signals, settings, ny(2025, 11, 26, 8, 30))
    assert len(reps) == 26 and all(r.key.startswith("signal:") for r in reps[:25])
    assert reps[-1].key == "signals-more:2025-11-25" and reps[-1].channel == "signals"
    text = text_of(reps[-1])
    assert text.startswith("2 more entry signals in the 2025-11-25 scan")
    assert "**S25** score 0.75 · close 45.00 · stop 44.00 · T1 55.00 · skipped" in text and "**S26**" in text
    assert "S24" not in text  # the 25th best has its own message


def test_exit_order_for_a_stop_is_red_and_names_the_rule(db: Any) -> None:
    pos = add(db, position("ABC"))[0]
    reason = "stop_hit: price 46.50 <= stop 47.00; premium_stop: value 1.90 is 53% below 4.00 paid (limit 50%)"
    add(db, order("ABC", "qm-exit-1", intent="close", position_id=pos.id, reason=reason, status="approved",
                  limit_price=Decimal("-1.85"), filled_quantity=0, avg_fill_price=None,
                  created_at=ny(2025, 11, 26, 10, 5)))
    reps = build(db, reports.exit_orders, ny(2025, 11, 26, 10, 5))
    assert [r.key for r in reps] == ["exit-order:qm-exit-1"]
    text = text_of(reps[0])
    assert text.startswith("Exit order: ABC (stop_hit + premium_stop)")
    assert "• stop_hit: price 46.50 <= stop 47.00" in text and "• premium_stop: value 1.90" in text
    assert "long_call x2 limit $1.85 credit (approved)" in text
    assert "opened 2025-11-20 at $4.00 debit/unit" in text and "1R $800.00" in text
    assert reps[0].message.color == RED
    # An exit older than the sweep window is not announced again.
    assert build(db, reports.exit_orders, ny(2025, 12, 5, 10, 5)) == []


# --- portfolio channel --------------------------------------------------------------------------------


def test_fill_message_has_instrument_side_quantity_price_and_fees(db: Any) -> None:
    o = add(db, order("ABC", "qm-open-1"))[0]
    add(db, Fill(broker_fill_id="PB1-1", order_id=o.id, client_order_id=o.client_order_id,
                 instrument="ABC   260116C00050000", side="buy", quantity=2, price=Decimal("4.05"),
                 commission=Decimal("2.00"), fees=Decimal("0.20"), filled_at=ny(2025, 11, 26, 9, 35)))
    reps = build(db, reports.fills, ny(2025, 11, 26, 10, 0))
    assert [(r.channel, r.key) for r in reps] == [("portfolio", "fill:PB1-1")]
    text = text_of(reps[0])
    assert text.startswith("Fill: BUY 2 ABC 260116C00050000 @ $4.05")
    assert "2 x 100" in text and "$810.00" in text
    assert "$2.20 (commission $2.00, fees $0.20)" in text and "open ABC long_call" in text
    assert reps[0].message.color == BLUE


def test_scale_out_and_closed_position_messages(db: Any) -> None:
    held = add(db, position("UP", quantity=1, realized_pnl=Decimal("150.50"), stop=50.0))[0]
    add(db, order("UP", "qm-t1", intent="close", position_id=held.id, quantity=1, filled_quantity=1,
                  avg_fill_price=Decimal("-5.60"), reason="scale-out at target 1 (60.00)",
                  updated_at=ny(2025, 11, 26, 11, 5)))
    loser = add(db, position("DOWN", quantity=0, status="closed", realized_pnl=Decimal("-400.00"),
                             initial_risk=Decimal("800"), closed_at=ny(2025, 11, 26, 11, 35),
                             exit_reason="stop_hit: price 46.50 <= stop 47.00"))[0]
    add(db, order("DOWN", "qm-open-d", position_id=loser.id, avg_fill_price=Decimal("4.00")),
        order("DOWN", "qm-stop-d", intent="close", position_id=loser.id, avg_fill_price=Decimal("-2.00"),
              reason="stop_hit: price 46.50 <= stop 47.00", updated_at=ny(2025, 11, 26, 11, 35)))
    now = ny(2025, 11, 26, 12, 0)
    outs = build(db, reports.scale_outs, now)
    assert [r.key for r in outs] == ["scale-out:qm-t1"]
    text = text_of(outs[0])
    assert "1 of 1 at $5.60 credit/unit" in text and "+$150.50" in text and "Stop now\n50.00" in text
    closed = build(db, reports.closed_positions, now)
    assert [r.key for r in closed] == [f"closed:{loser.id}"]
    text = text_of(closed[0])
    assert text.startswith("Stop hit: DOWN long_call")
    assert "-$400.00" in text and "-0.50R" in text and "$4.00 debit/unit" in text and "2 at $2.00 credit" in text
    assert closed[0].message.color == RED


def test_digest_colours_and_empty_portfolio(db: Any, settings: Any) -> None:
    assert "No account snapshot stored yet." in text_of(build(db, reports.portfolio_digest, settings,
                                                               ny(2025, 11, 26, 16, 30)))
    add(db, AccountSnapshot(at=ny(2025, 11, 25, 16, 30), trade_date=date(2025, 11, 25), cash=Decimal("100250.50"),
                            equity=Decimal("100250.50"), detail={"day_pnl": "250.50", "open_positions": 0}),
        AccountSnapshot(at=ny(2025, 11, 26, 16, 30), trade_date=date(2025, 11, 26), cash=Decimal("99000"),
                        positions_value=Decimal("1000"), equity=Decimal("100000.00"),
                        realized_pnl_day=Decimal("-150"), unrealized_pnl=Decimal("-100.5"),
                        detail={"day_pnl": "-250.50", "open_positions": 0}))
    down = build(db, reports.portfolio_digest, settings, ny(2025, 11, 26, 16, 30))
    text = text_of(down)
    assert down.key == "digest:2025-11-26" and down.message.color == RED
    assert "Equity **$100,000.00** = cash $99,000.00 + positions $1,000.00" in text
    assert "Day P&L\n-$250.50 (-0.25%)" in text and "Total P&L\n$0.00 (0.00%)" in text
    assert "Realized today\n-$150.00" in text and "Unrealized\n-$100.50" in text
    assert "No open positions." in text
    up = build(db, reports.portfolio_digest, settings, ny(2025, 11, 25, 16, 30))
    assert up.message.color == GREEN and "Day P&L\n+$250.50" in text_of(up)


def test_digest_lists_positions_with_pnl_and_greeks(db: Any, settings: Any) -> None:
    add(db, AccountSnapshot(at=ny(2025, 11, 26, 16, 30), trade_date=date(2025, 11, 26), equity=Decimal("100100"),
                            open_risk=Decimal("800"), detail={"day_pnl": "100", "open_positions": 1}),
        position("ABC", realized_pnl=Decimal("-2.20")))
    text = text_of(build(db, reports.portfolio_digest, settings, ny(2025, 11, 26, 16, 30)))
    assert ("**ABC** long_call x2 · entry $4.00 debit · mark $4.50 debit · P&L +$97.80 (unrealized +$100.00) · "
            "Δ 120.5 Θ -8.25 V 12.00 · stop 47.00") in text
    assert "Heat\n$800.00 = 0.80% of equity (limit 10.00%)" in text
    assert "delta 120.50, theta/day -8.25, vega 12.00" in text


# --- post-market report -------------------------------------------------------------------------------


def test_postmarket_report_without_activity(db: Any, settings: Any) -> None:
    report = build(db, reports.postmarket_report, settings, ny(2025, 11, 26, 16, 30))
    assert (report.channel, report.key) == ("morning_brew", "postmarket:2025-11-26")
    text = text_of(report)
    for line in ("0 orders today (none); 0 fills", "No orders today.", "No account snapshot for today.",
                 "No closed positions yet.", "No account snapshots yet.",
                 "Next session 2025-11-28 (Friday): 09:30-13:00 ET, **early close at 13:00 ET**",
                 "No scan stored: no watch list."):
        assert line in text, line
    assert report.message.color == GREY


def test_postmarket_win_rate_r_multiples_and_drawdown(db: Any, settings: Any) -> None:
    closed = dict(quantity=0, status="closed", initial_risk=Decimal("100"), closed_at=ny(2025, 11, 26, 11, 0))
    add(db, position("W1", realized_pnl=Decimal("200"), **closed),
        position("W2", realized_pnl=Decimal("50"), **closed),
        position("L1", realized_pnl=Decimal("-100"), **closed),
        position("OPEN"))
    for day, equity, pnl in ((date(2025, 11, 24), "100000", "0"), (date(2025, 11, 25), "101000", "1000"),
                             (date(2025, 11, 26), "99990", "-1010")):
        add(db, AccountSnapshot(at=ny(day.year, day.month, day.day, 16, 30), trade_date=day, equity=Decimal(equity),
                                detail={"day_pnl": pnl}))
    rejected = add(db, order("REJ", "qm-rej", status="rejected", filled_quantity=0, avg_fill_price=None))[0]
    add(db, OrderEvent(order_id=rejected.id, client_order_id="qm-rej", to_status="rejected",
                       reason="risk gate: max_heat 10.4% > 10%", at=ny(2025, 11, 26, 9, 35)))
    report = build(db, reports.postmarket_report, settings, ny(2025, 11, 26, 16, 30))
    text = text_of(report)
    assert "Win rate 2/3 = 66.7%" in text
    assert "Realized on closed positions +$150.00" in text
    assert "R multiples: average +0.50R, total +1.50R, best +2.00R, worst -1.00R" in text
    assert "-1.00% (-$1,010.00) from the peak $101,000.00 of 2025-11-25" in text
    assert "Max drawdown to date -1.00%" in text
    assert "1 order today (1 open rejected)" in text
    assert "REJ open long_call x2 · rejected · limit $4.10 debit (risk gate: max_heat 10.4% > 10%)" in text
    assert report.message.color == RED  # the day lost money


def test_plan_keeps_names_exactly_one_rule_from_a_signal(db: Any, settings: Any) -> None:
    run = scan_run(db, date(2025, 11, 25))
    add(db, result(run, "ONE", 1, atr_pct=2.0),  # in the zone, ATR% too low: listed
        result(run, "TWO", 2, atr_pct=2.0, ma_aligned=False),  # two rules fail: not listed
        result(run, "BELOW", 3, atr_distance=-0.3, zone="below_trend"),  # just below the zone: listed
        result(run, "FAR", 4, atr_distance=-0.8, zone="below_trend"),  # too far below: not listed
        result(run, "ABOVE", 5, atr_distance=4.3, zone="extended"),  # just above the zone: listed
        result(run, "SIG", 6, signal=True),  # already a signal: not listed
        result(run, "BAD", 7, excluded_reason="stale: 6 sessions"))  # failed the gate: not listed
    picks = build(db, reports.plan_candidates, run, settings)
    assert [(r.symbol, why) for r, why in picks] == [
        ("ONE", "ATR% 2.00% < 3%"), ("BELOW", "ATR distance -0.30 outside [0, 4]"),
        ("ABOVE", "ATR distance +4.30 outside [0, 4]")]
    text = text_of(build(db, reports.postmarket_report, settings, ny(2025, 11, 26, 16, 30)))
    assert "**ONE** 50.00 · ATR distance +2.00 · missing: ATR% 2.00% < 3%" in text
    assert "TWO" not in text and "FAR" not in text


def test_live_clock_in_utc_finds_the_days_orders_and_fills(db: Any, settings: Any) -> None:
    """Live, the clock is UTC: windows and stored values are UTC (on SQLite too)."""
    created = datetime(2025, 11, 26, 13, 30, tzinfo=UTC)  # 08:30 ET
    o = add(db, order("ABC", "qm-utc", created_at=created, updated_at=created + timedelta(hours=1)),
            order("OLD", "qm-old", created_at=datetime(2025, 11, 26, 3, 0, tzinfo=UTC)))[0]  # 22:00 ET the day before
    add(db, Fill(broker_fill_id="PBU-1", order_id=o.id, client_order_id=o.client_order_id, instrument="ABC",
                 side="buy", quantity=2, multiplier=1, price=Decimal("10"), filled_at=created + timedelta(hours=1)))
    now = datetime(2025, 11, 26, 21, 30, tzinfo=UTC)  # 16:30 ET
    text = text_of(build(db, reports.postmarket_report, settings, now))
    assert "1 order today (1 open filled); 1 fill, 2 contracts" in text
    assert "OLD" not in text
    assert [r.key for r in build(db, reports.fills, now)] == ["fill:PBU-1"]


# --- system status ------------------------------------------------------------------------------------


def day_runs(db: Any, day: date, intraday: list[tuple[int, int]], jobs: tuple[str, ...] = ("premarket",
                                                                                          "postmarket")) -> None:
    at = {"premarket": (8, 30), "postmarket": (16, 30), "nightly": (20, 0)}
    rows = [JobRun(job_id=j, trigger=f"replay@{ny(day.year, day.month, day.day, *at[j]).isoformat()}",
                   outcome="ok") for j in jobs]
    rows += [JobRun(job_id="intraday", trigger=f"replay@{ny(day.year, day.month, day.day, h, m).isoformat()}",
                    outcome="ok") for h, m in intraday]
    add(db, *rows)


EVERY_30 = [(9, 35), (10, 5), (10, 35), (11, 5), (11, 35), (12, 5), (12, 35), (13, 5), (13, 35), (14, 5), (14, 35),
            (15, 5), (15, 35)]


def test_health_is_green_when_everything_ran(db: Any, settings: Any) -> None:
    wall = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    add(db, Heartbeat(component="scheduler", instance_id="host:1", at=wall - timedelta(seconds=10)),
        Heartbeat(component="console", instance_id="web:1", at=wall - timedelta(hours=5)),  # closed: no problem
        ReconciliationRun(at=ny(2025, 11, 26, 9, 35)))
    day_runs(db, date(2025, 11, 26), EVERY_30)
    report = build(db, reports.health_report, settings, ny(2025, 11, 26, 16, 30), "postmarket",
                   date(2025, 11, 26), wall)
    text = text_of(report)
    assert (report.channel, report.key, report.message.color) == ("system_status", "health:2025-11-26", GREEN)
    assert "All checks passed." in text
    assert "scheduler (host:1): last beat 10s ago" in text and "console (web:1): last beat 5h 00m ago" in text
    assert "premarket 1, intraday 13, postmarket 1, nightly 0; failures 0" in text
    assert "intraday cycles 09:35 ET to 15:35 ET, every 30m, largest gap 30m" in text
    assert "bars stored through 2025-11-26; required 2025-11-25; today's bars stored: current" in text
    assert "1 run, the engine and the broker agree." in text
    # The nightly check stays quiet when nothing is wrong.
    day_runs(db, date(2025, 11, 26), [], ("nightly",))
    assert build(db, reports.health_report, settings, ny(2025, 11, 26, 20, 0), "nightly", date(2025, 11, 26),
                 wall) is None


def test_health_reports_gaps_stale_data_heartbeats_and_differences(db: Any, settings: Any) -> None:
    wall = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    add(db, Heartbeat(component="scheduler", instance_id="host:1", at=wall - timedelta(minutes=7)),
        ReconciliationRun(at=ny(2025, 11, 26, 9, 35)),
        ReconciliationRun(at=ny(2025, 11, 26, 10, 5), ok=False,
                          differences=[{"kind": "position", "symbol": "ABC", "engine": 2, "broker": 1}]),
        ReconciliationRun(at=ny(2025, 11, 25, 10, 5), ok=False, differences=[{"kind": "cash", "engine": 1}]))
    day_runs(db, date(2025, 11, 26), [(9, 35), (10, 5), (10, 35), (14, 35), (15, 5), (15, 35)], ("postmarket",))
    report = build(db, reports.health_report, settings, ny(2025, 11, 26, 16, 30), "postmarket",
                   date(2025, 11, 24), wall)
    text = text_of(report)
    assert report.message.color == RED
    assert "scheduler heartbeat is 7m old (limit 2m)" in text
    assert "premarket did not run today" in text
    assert "no intraday cycle 10:35 ET to 14:35 ET (4h 00m)" in text
    assert "daily bars end 2025-11-24, 1 session behind 2025-11-25" in text
    assert "1 of 2 reconciliation runs found differences (1 distinct)" in text  # yesterday's is not today's
    assert '"symbol": "ABC"' in text and '"kind": "cash"' not in text
    nightly = build(db, reports.health_report, settings, ny(2025, 11, 26, 20, 0), "nightly", date(2025, 11, 25),
                    wall)
    assert nightly is not None and nightly.key == "health-nightly:2025-11-26"
    # The post-market already reported the gap, the missed pre-market and the reconciliation differences.
    assert "reconciliation" not in nightly.message.description
    assert "intraday" not in nightly.message.description and "premarket" not in nightly.message.description
    # After the nightly backfill today's bars are required.
    assert "daily bars end 2025-11-25, 1 session behind 2025-11-26" in nightly.message.description


def test_postmarket_does_not_require_todays_bars_yet(db: Any, settings: Any) -> None:
    check = reports.freshness_check(date(2025, 11, 25), ny(2025, 11, 26, 16, 30), "postmarket")
    assert check.problems == []
    assert check.text == ("bars stored through 2025-11-25; required 2025-11-25; "
                          "today's bars not stored yet (the nightly backfills): current")
    # On a holiday the nightly wants the last session before it.
    assert reports.freshness_check(date(2025, 11, 26), ny(2025, 11, 27, 20, 0), "nightly").problems == []


def test_health_without_any_bars_or_runs(db: Any, settings: Any) -> None:
    text = text_of(build(db, reports.health_report, settings, ny(2025, 11, 26, 16, 30), "postmarket", None,
                         datetime(2026, 1, 5, tzinfo=UTC)))
    assert "no daily bars stored" in text and "no intraday cycle ran between 09:30 ET and 16:00 ET" in text
    assert "No heartbeats recorded." in text and "No reconciliation runs in this window." in text


# --- hooks --------------------------------------------------------------------------------------------


def test_build_reports_per_job(db: Any, settings: Any) -> None:
    with Session(db) as s:
        pre = build_reports(s, settings, "premarket", ny(2025, 11, 26, 8, 30))
        intra = build_reports(s, settings, "intraday", ny(2025, 11, 26, 10, 5))
        post = build_reports(s, settings, "postmarket", ny(2025, 11, 26, 16, 30), date(2025, 11, 26),
                             datetime(2026, 1, 5, tzinfo=UTC))
    assert [r.key for r in pre] == ["morning_brew:2025-11-26"]
    assert intra == []
    assert [r.key for r in post] == ["digest:2025-11-26", "postmarket:2025-11-26", "health:2025-11-26"]


def test_after_job_twice_enqueues_once(db: Any, settings: Any) -> None:
    o = add(db, order("ABC", "qm-open-1"))[0]
    add(db, Fill(broker_fill_id="PB9-1", order_id=o.id, client_order_id=o.client_order_id, instrument="ABC",
                 side="buy", quantity=1, multiplier=1, price=Decimal("50.25"), filled_at=ny(2025, 11, 26, 9, 35)))
    ctx = SimpleNamespace(settings=settings, db=db, now=ny(2025, 11, 26, 8, 30))
    for job_id, at in (("premarket", (8, 30)), ("intraday", (9, 35)), ("postmarket", (16, 30)),
                       ("nightly", (20, 0))):
        ctx.now = ny(2025, 11, 26, *at)
        after_job(ctx, job_id)
        with Session(db) as s:
            first = sorted(s.exec(select(NotificationOutbox.idempotency_key)).all())
        after_job(ctx, job_id)
        with Session(db) as s:
            assert sorted(s.exec(select(NotificationOutbox.idempotency_key)).all()) == first
    assert {"morning_brew:2025-11-26", "fill:PB9-1", "digest:2025-11-26", "postmarket:2025-11-26",
            "health:2025-11-26", "health-nightly:2025-11-26"} <= set(first)
    with Session(db) as s:
        channels = dict(s.exec(select(NotificationOutbox.idempotency_key, NotificationOutbox.channel)).all())
    assert channels["fill:PB9-1"] == "portfolio" and channels["health-nightly:2025-11-26"] == "system_status"
