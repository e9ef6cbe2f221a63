"""after_job over a real replay: every report is built from what the jobs stored, and never twice.

One replay per test session (session-scoped fixture): 600 simulated symbols, 320 seeded sessions ending
2025-11-20, then the scheduler's own replay of 2025-11-21..2025-11-28 with a 30-minute intraday cycle. The
window is fixed so the run is reproducible; it holds five sessions, the Thanksgiving holiday (27th) and an
early close (28th, 13:00). The exit rules are tightened (premium stop 12%, time exit at 35 DTE) so that five
sessions also close positions; every figure the tests check is read back from the database.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from engine.clock import NEW_YORK
from engine.data import calendar
from engine.models import (
    AccountSnapshot,
    Fill,
    JobRun,
    NotificationOutbox,
    Order,
    Position,
    ScanResult,
    ScanRun,
    Signal,
)
from engine.notify import embeds, reports
from engine.notify.hooks import after_job
from engine.notify.outbox import preview

FIRST, LAST = date(2025, 11, 21), date(2025, 11, 28)
SESSIONS = [date(2025, 11, 21), date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]
SEEDED_THROUGH = date(2025, 11, 20)

pytestmark = pytest.mark.slow  # one ~12 s replay for the module


@dataclass
class Outbox:
    """The outbox rows at one moment (read in their own session: SQLite sessions here take the write lock)."""

    rows: dict[str, NotificationOutbox]

    def like(self, prefix: str) -> dict[str, NotificationOutbox]:
        return {k: r for k, r in self.rows.items() if k.startswith(prefix) and "#" not in k}

    def text(self, key: str) -> str:
        """All visible text of a notification (its parts joined)."""
        assert key in self.rows, f"no notification {key!r}"
        parts = [key, *sorted((k for k in self.rows if k.startswith(key + "#")), key=lambda k: int(k.split("#")[1]))]
        return "\n".join(preview(self.rows[k]) for k in parts)


@dataclass
class Replayed:
    ctx: Any
    settings: Any

    @property
    def db(self) -> Any:
        return self.ctx.db

    def outbox(self) -> Outbox:
        with Session(self.db) as s:
            return Outbox({r.idempotency_key: r for r in s.exec(select(NotificationOutbox))})


@pytest.fixture(scope="session")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    from engine import bootstrap, runtime
    from engine.clock import ReplayClock
    from engine.config import load_settings
    from engine.context import build_context

    root = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("QM_") and key not in ("QM_TEST_POSTGRES_URL", "QM_REQUIRE_POSTGRES"):
                mp.delenv(key)
        mp.delenv("DATABASE_URL", raising=False)
        mp.chdir(root)  # no developer .env
        mp.setattr(bootstrap, "last_completed_session", lambda now=None: SEEDED_THROUGH)
        settings = load_settings(data_dir=Path(root) / "var", sim_symbols=600,
                                 exits={"premium_stop_pct": 12.0, "close_at_dte": 35})
        bootstrap.initialise(settings, sessions=320, progress=False)
        ctx = build_context(settings, clock=ReplayClock(datetime(2025, 11, 21, 12, 0, tzinfo=UTC)))
        state = runtime.RuntimeState(instance="test")
        # The scheduler's jobs as a live session runs them (a replay would mark every report as replayed and
        # send it to the playground, tested in tests/ops/test_replay_apart.py), on a clock moved run by run.
        from engine.schedule import plan_range

        for run in plan_range(FIRST, LAST, timedelta(minutes=30)):
            ctx.clock.set(run.at)
            runtime.run_job(ctx, state, run.job_id, f"replay@{run.at.isoformat()}")
    return Replayed(ctx, settings)


def _at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=NEW_YORK)


def _session(db: Any) -> Session:
    return Session(db)


# --- every report exists, once ------------------------------------------------------------------------


def test_each_report_is_produced_once_per_day(replayed: Replayed) -> None:
    box = replayed.outbox()
    for day in SESSIONS:
        d = day.isoformat()
        for key, channel in ((f"morning_brew:{d}", "morning_brew"), (f"postmarket:{d}", "morning_brew"),
                             (f"digest:{d}", "portfolio"), (f"health:{d}", "system_status")):
            rows = box.like(key)
            assert set(rows) == {key}, key
            assert rows[key].channel == channel
    # Nothing for the holiday but the nightly upkeep.
    assert not box.like("morning_brew:2025-11-27")
    assert not box.like("digest:2025-11-27")
    kinds = Counter(r.kind for r in box.like("").values())
    assert kinds["morning_brew"] == kinds["postmarket"] == kinds["digest"] == kinds["health"] == len(SESSIONS)


def test_every_rendered_message_fits_discord(replayed: Replayed) -> None:
    box = replayed.outbox()
    rows = box.rows
    assert rows
    for key, row in rows.items():
        assert embeds.violations(row.payload["body"]) == [], key
        assert row.status == "not_configured"  # no webhook URLs in the test: kept for the console
        assert "placeholder" not in preview(row).lower()


# --- Morning Brew -------------------------------------------------------------------------------------


def test_morning_brew_reports_the_scan_it_was_built_from(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        for day in SESSIONS:
            text = box.text(f"morning_brew:{day.isoformat()}")
            run = reports.scan_for_day(s, day)
            assert run is not None and run.data_date < day
            assert f"Scan of {run.data_date.isoformat()}: {run.n_scanned:,} symbols" in text
            b = run.breadth
            assert f"Above SMA50: {reports.share(b['above_sma50'])}" in text
            assert f"In the entry zone: {reports.share(b['entry_zone'])}" in text
            assert f"Extended (ATR distance > 4): {reports.share(b['extended'])}" in text
            assert f"of {b['included']:,} symbols" in text
            for symbol in ("SPY", "QQQ", "IWM", "DIA"):
                row = s.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id,
                                                      ScanResult.symbol == symbol)).one()
                assert (f"**{symbol}** {row.close:,.2f} · zone {row.zone} · ATR distance {row.atr_distance:+.2f} "
                        f"· ATR% {row.atr_pct:.2f}%") in text
            signals = s.exec(select(Signal).where(Signal.data_date == run.data_date,
                                                  Signal.direction == "long")).all()
            assert f"{run.n_signals} entry signal" in text and len(signals) == run.n_signals
            for sig in signals:
                assert sig.symbol in text  # a setup field or the "other signals" line
            # The premarket runs at 08:30 ET: the open is an hour away.
            assert "Opens in 1h 00m (09:30 ET)" in text
            assert "Positions" in text and f"/ {replayed.settings.risk.max_open_positions}" in text


def test_morning_brew_setups_show_levels_option_and_order(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        ordered = s.exec(select(Signal).where(Signal.status == "ordered")).all()
        assert ordered
        checked = 0
        for sig in ordered:
            run = s.get(ScanRun, sig.scan_run_id)
            assert run is not None
            day = next(d for d in SESSIONS if reports.scan_for_day(s, d).id == run.id)  # type: ignore[union-attr]
            text = box.text(f"morning_brew:{day.isoformat()}")
            if f": {sig.symbol} (score" not in text:
                continue  # beyond the top five: listed by name only
            cand = reports.chosen_candidate(s, sig.id)  # type: ignore[arg-type]
            order = reports.entry_order(s, sig.id)  # type: ignore[arg-type]
            assert cand is not None and order is not None
            assert f"stop {sig.stop:,.2f}" in text
            assert " / ".join(f"{t:,.2f}" for t in sig.targets) in text
            assert f"net {reports.net(cand.net_mid)}" in text
            assert f"max loss {reports.money(cand.max_loss)}/contract" in text
            for leg in cand.legs:
                assert reports.occ(leg["occ_symbol"]) in text
            assert f"order x{order.quantity} limit {reports.net(order.limit_price)}" in text
            checked += 1
    assert checked >= len(SESSIONS)


def test_early_close_is_noted_on_the_brew(replayed: Replayed) -> None:
    box = replayed.outbox()
    assert "09:30-13:00 ET, **early close at 13:00 ET**" in box.text("morning_brew:2025-11-28")
    assert "early close" not in box.text("morning_brew:2025-11-26")
    # The health check knows the session ended at 13:00.
    health = box.text("health:2025-11-28")
    assert "All checks passed." in health and "to 12:35 ET" in health


# --- signals channel ----------------------------------------------------------------------------------


def test_every_entry_signal_is_announced_with_its_values(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        signals = s.exec(select(Signal).where(Signal.direction == "long")).all()
        assert signals
        assert len(box.like("signal:")) == len(signals)
        for sig in signals:
            text = box.text(f"signal:{sig.id}")
            assert f"Entry signal: {sig.symbol}" in text
            assert f"scan of {sig.data_date.isoformat()} · score {sig.score:.2f}" in text
            v = sig.values
            assert f"ATR distance {v['atr_distance']:.2f} in [0, 4]" in text
            assert f"ATR% {v['atr_pct']:.2f}% >= 3%" in text
            assert f"close {v['close']:,.2f} > SMA20 {v['sma20']:,.2f}" in text
            assert f"stop {sig.stop:,.2f}" in text
            assert "✗" not in text  # every rule of a signal passed


def test_every_exit_order_is_announced_with_its_rule(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        exits = s.exec(select(Order).where(Order.intent != "open")).all()
        assert exits, "the tightened exit rules close positions within five sessions"
        assert len(box.like("exit-order:")) == len(exits)
        for order in exits:
            text = box.text(f"exit-order:{order.client_order_id}")
            for part in order.reason.split("; "):
                assert f"• {part}" in text
            title = text.splitlines()[0]
            if reports.exit_kind(order.reason) == "scale_out":
                assert title == f"Exit order: {order.symbol} (scale-out)"
            else:
                assert all(code in title for code in reports.reason_codes(order.reason))  # the title names the rule


# --- portfolio channel --------------------------------------------------------------------------------


def test_a_fill_message_exists_for_every_fill(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        fills = s.exec(select(Fill)).all()
    assert fills
    assert len(box.like("fill:")) == len(fills)
    for f in fills:
        text = box.text(f"fill:{f.broker_fill_id}")
        assert f"Fill: {f.side.upper()} {f.quantity} {reports.occ(f.instrument)} @ {reports.money(f.price)}" in text
        assert reports.money(Decimal(f.commission) + Decimal(f.fees)) in text


def test_closed_positions_report_realized_pnl_and_r(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        closed = s.exec(select(Position).where(Position.status == "closed")).all()
        assert closed
        assert len(box.like("closed:")) == len(closed)
        for pos in closed:
            row = box.rows[f"closed:{pos.id}"]
            text = preview(row)
            assert reports.money(pos.realized_pnl, signed=True) in text
            r = Decimal(pos.realized_pnl) / Decimal(pos.initial_risk)
            assert f"{float(r):+.2f}R" in text
            assert (pos.exit_reason or "") in text
            stopped = "stop_hit" in (pos.exit_reason or "") or "premium_stop" in (pos.exit_reason or "")
            assert text.startswith("Stop hit" if stopped else "Position closed")
            expected = embeds.RED if pos.realized_pnl < 0 else embeds.GREEN if pos.realized_pnl > 0 else embeds.GREY
            assert row.payload["body"]["embeds"][0]["color"] == expected


def test_digest_equity_equals_the_days_snapshot(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        for day in SESSIONS:
            snap = s.exec(select(AccountSnapshot).where(AccountSnapshot.trade_date == day)).one()
            row = box.rows[f"digest:{day.isoformat()}"]
            text = preview(row)
            assert f"Equity **{reports.money(snap.equity)}** = cash {reports.money(snap.cash)}" in text
            day_pnl = Decimal(snap.detail["day_pnl"])
            assert f"Day P&L\n{reports.money(day_pnl, signed=True)}" in text
            total = Decimal(snap.equity) - Decimal(str(replayed.settings.starting_cash))
            assert f"Total P&L\n{reports.money(total, signed=True)}" in text
            assert f"Heat\n{reports.money(snap.open_risk)}" in text
            color = row.payload["body"]["embeds"][0]["color"]
            assert color == (embeds.GREEN if day_pnl > 0 else embeds.RED if day_pnl < 0 else embeds.GREY)
            assert f"Open positions\n{snap.detail['open_positions']} / " in text


# --- post-market report -------------------------------------------------------------------------------


def test_postmarket_win_rate_r_and_drawdown_match_the_database(replayed: Replayed) -> None:
    box = replayed.outbox()
    text = box.text(f"postmarket:{LAST.isoformat()}")
    # Independently of the report code: raw rows.
    with _session(replayed.db) as s:
        closed = s.exec(select(Position.realized_pnl, Position.initial_risk).where(Position.status == "closed")).all()
        equities = [Decimal(e) for e in s.exec(select(AccountSnapshot.equity).order_by(AccountSnapshot.trade_date))]
        orders_today = s.exec(select(Order).where(Order.created_at >= _at(LAST, 0, 0),
                                                  Order.created_at < _at(LAST + timedelta(days=1), 0, 0))).all()
    winners = sum(1 for pnl, _ in closed if Decimal(pnl) > 0)
    assert f"Win rate {winners}/{len(closed)} = {100 * winners / len(closed):.1f}%" in text
    rs = [float(Decimal(pnl) / Decimal(risk)) for pnl, risk in closed]
    assert f"average {sum(rs) / len(rs):+.2f}R, total {sum(rs):+.2f}R" in text
    peak = max(equities)
    dd = (equities[-1] - peak) / peak * 100
    assert f"from the peak {reports.money(peak)}" in text
    assert reports.signed_pct(dd) in text
    assert f"{reports.plural(len(orders_today), 'order')} today" in text
    assert "Next session 2025-12-01 (Monday): 09:30-16:00 ET" in text


def test_postmarket_plan_lists_names_one_rule_from_a_signal(replayed: Replayed) -> None:
    box = replayed.outbox()
    text = box.text(f"postmarket:{LAST.isoformat()}")
    with _session(replayed.db) as s:
        run = reports.latest_scan(s)
        assert run is not None
        picks = reports.plan_candidates(s, run, replayed.settings)
        rows = {r.symbol: r for r in s.exec(select(ScanResult).where(ScanResult.scan_run_id == run.id))}
    assert f"scan of {run.data_date.isoformat()}" in text
    for r, why in picks[: reports.TOP_LIST]:
        assert f"**{r.symbol}** {r.close:,.2f} · ATR distance {r.atr_distance:+.2f} · missing: {why}" in text
        row = rows[r.symbol]
        assert not row.signal and row.excluded_reason is None
        assert -0.5 <= row.atr_distance <= 4.5  # type: ignore[operator]


# --- system status ------------------------------------------------------------------------------------


def test_health_check_counts_the_days_job_runs(replayed: Replayed) -> None:
    box = replayed.outbox()
    with _session(replayed.db) as s:
        for day in SESSIONS:
            n = len(s.exec(select(JobRun).where(JobRun.job_id == "intraday",
                                                col(JobRun.trigger).like(f"replay@{day.isoformat()}%"))).all())
            text = box.text(f"health:{day.isoformat()}")
            assert f"premarket 1, intraday {n}, postmarket 1" in text
            previous = calendar.previous_session(day).isoformat()
            assert f"bars stored through {day.isoformat()}; required {previous}; today's bars stored: current" in text
            assert "the engine and the broker agree" in text
            assert "All checks passed." in text


# --- idempotency --------------------------------------------------------------------------------------


def _count(db: Any) -> int:
    with Session(db) as s:
        return len(s.exec(select(NotificationOutbox.id)).all())


def test_rerunning_after_job_enqueues_nothing_new(replayed: Replayed) -> None:
    ctx = replayed.ctx
    saved = ctx.clock.now()
    try:
        before = _count(ctx.db)
        for day in SESSIONS:
            runs = [("premarket", _at(day, 8, 30)), ("intraday", _at(day, 10, 5)), ("intraday", _at(day, 12, 35)),
                    ("postmarket", calendar.session_times(day)[1] + timedelta(minutes=30))]  # type: ignore[index]
            for job_id, at in runs:
                ctx.clock.set(at)
                after_job(ctx, job_id)
                after_job(ctx, job_id)
        assert _count(ctx.db) == before
        # The nightly check only speaks up about a problem (a stale heartbeat, after this long test session);
        # whatever it says, it says once.
        ctx.clock.set(_at(LAST, 20, 0))
        after_job(ctx, "nightly")
        once = _count(ctx.db)
        after_job(ctx, "nightly")
        assert _count(ctx.db) == once <= before + 1
    finally:
        ctx.clock.set(saved)


def test_keys_are_deterministic_business_keys(replayed: Replayed) -> None:
    box = replayed.outbox()
    prefixes = Counter(k.split(":", 1)[0] for k in box.like("") if "#" not in k)
    assert set(prefixes) <= {"morning_brew", "postmarket", "digest", "health", "health-nightly", "signal",
                             "signals-more", "exit-order", "fill", "scale-out", "closed", "job-failure"}
    # the runtime's own failure alerts (the nightly WAL checkpoint, see the report) are not ours to judge
    bodies = [json.dumps(r.payload["body"]) for k, r in box.like("").items() if not k.startswith("job-failure")]
    assert len(bodies) == len(set(bodies)), "two notifications with the same content"
