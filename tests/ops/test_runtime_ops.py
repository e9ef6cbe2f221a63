"""Issue 12 items 4, 5 and 7: restarts catch up, one job at a time, alerts that neither flood nor go missing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session, col, select

from engine import runtime
from engine.clock import NEW_YORK, ReplayClock
from engine.config import load_settings
from engine.context import EngineContext
from engine.db import session_scope
from engine.models import Fill, JobRun, NotificationOutbox, Order
from engine.notify import reports


def _ny(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NEW_YORK)


@pytest.fixture
def ctx(migrated_sqlite, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runtime, "after_job", lambda ctx, job_id, replayed=False: None)
    monkeypatch.setattr(runtime, "refresh_settings", lambda ctx, state: None)
    clock = ReplayClock(_ny(2026, 11, 3, 17))
    return EngineContext(load_settings(), migrated_sqlite, None, None, clock)  # type: ignore[arg-type]


def _fake_jobs(monkeypatch: pytest.MonkeyPatch, calls: list[str], fail: set[str] | None = None,
               sleep: float = 0.0) -> None:
    def make(job_id: str):  # type: ignore[no-untyped-def]
        def job(_ctx):  # type: ignore[no-untyped-def]
            calls.append(job_id)
            time.sleep(sleep)
            if fail and job_id in fail:
                raise RuntimeError(f"{job_id} broke")
        return job
    monkeypatch.setattr(runtime, "JOBS", {j: make(j) for j in ("premarket", "intraday", "postmarket", "nightly")})


def _run(ctx, job_id: str, at: datetime, outcome: str = "ok") -> None:  # type: ignore[no-untyped-def]
    with session_scope(ctx.db) as s:
        s.add(JobRun(job_id=job_id, trigger="schedule", started_at=at, finished_at=at, outcome=outcome))


def test_a_restart_after_the_close_runs_the_missed_post_market_once(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Mon 2 Nov ran its pre-market; its post-market was killed mid-run; the scheduler was down until Tue 17:00
    # (after Tue's 16:30 post-market), having run Tue's pre-market in the morning.
    _run(ctx, "premarket", _ny(2026, 11, 2, 8, 30))
    _run(ctx, "postmarket", _ny(2026, 11, 2, 16, 30), outcome="running")
    _run(ctx, "premarket", _ny(2026, 11, 3, 8, 30))
    calls: list[str] = []
    _fake_jobs(monkeypatch, calls)
    assert runtime.mark_abandoned(ctx) == 1
    state = runtime.RuntimeState(instance="t")
    done = runtime.catch_up(ctx, state, _ny(2026, 11, 3, 17))
    # in planned order: Monday's post-market and nightly, then Tuesday's post-market
    assert [(r.job_id, r.at) for r in done] == [("postmarket", _ny(2026, 11, 2, 16, 30)),
                                                ("nightly", _ny(2026, 11, 2, 20)),
                                                ("postmarket", _ny(2026, 11, 3, 16, 30))]
    assert calls == ["postmarket", "nightly", "postmarket"]
    with Session(ctx.db) as s:
        outcomes = s.exec(select(JobRun.outcome).where(JobRun.job_id == "postmarket")
                          .order_by(col(JobRun.id))).all()
    assert outcomes == ["abandoned", "ok", "ok"]  # the killed run is not counted as run
    assert runtime.catch_up(ctx, state, _ny(2026, 11, 3, 17, 5)) == []  # once


def test_a_missed_pre_market_is_caught_up_only_while_its_session_is_open(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    _fake_jobs(monkeypatch, calls)
    for job, at in (("premarket", _ny(2026, 11, 2, 8, 30)), ("postmarket", _ny(2026, 11, 2, 16, 30)),
                    ("nightly", _ny(2026, 11, 2, 20))):
        _run(ctx, job, at)
    runtime.catch_up(ctx, runtime.RuntimeState(instance="t"), _ny(2026, 11, 3, 11))
    assert calls == ["premarket"]


def test_run_now_and_the_schedule_never_run_one_job_twice_at_once(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    _fake_jobs(monkeypatch, calls, sleep=1.0)
    state = runtime.RuntimeState(instance="t")
    scheduled = threading.Thread(target=runtime.run_job, args=(ctx, state, "intraday", "schedule"))
    scheduled.start()
    time.sleep(0.2)
    assert runtime.run_job(ctx, state, "intraday", "operator") is None  # the guard refused the overlap
    scheduled.join()
    assert calls == ["intraday"]
    assert runtime.run_job(ctx, state, "intraday", "operator").outcome == "ok"  # runs once the first finished


def test_one_failure_alert_per_job_and_day_with_a_count_and_a_recovery(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    _fake_jobs(monkeypatch, calls, fail={"intraday"})
    state = runtime.RuntimeState(instance="t")
    for _ in range(5):
        runtime.run_job(ctx, state, "intraday", "schedule")
    _fake_jobs(monkeypatch, calls)
    runtime.run_job(ctx, state, "intraday", "schedule")
    with Session(ctx.db) as s:
        rows = s.exec(select(NotificationOutbox).where(NotificationOutbox.channel == "system_status")
                      .order_by(col(NotificationOutbox.id))).all()
    kinds = [r.kind for r in rows]
    assert kinds == ["job_failure", "job_recovery"], kinds
    assert "after 5 failed run(s)" in str(rows[1].payload)


def _fill(s: Session, order_id: int, n: int, at: datetime) -> Fill:
    f = Fill(broker_fill_id=f"F{n}", order_id=order_id, client_order_id="qm-f", instrument="AAA", side="buy",
             quantity=1, price=Decimal("1.00"), commission=Decimal("0"), fees=Decimal("0"), filled_at=at)
    s.add(f)
    s.flush()
    return f


def test_the_fill_sweep_starts_at_the_last_fill_reported(ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 11, 20, 21, tzinfo=UTC)
    with session_scope(ctx.db) as s:
        o = Order(client_order_id="qm-f", strategy="s", symbol="AAA", structure="stock", quantity=3, legs=[])
        s.add(o)
        s.flush()
        _fill(s, o.id, 1, datetime(2026, 11, 5, 15, tzinfo=UTC))  # type: ignore[arg-type]
        s.add(NotificationOutbox(channel="portfolio", kind="fill", idempotency_key="fill:F1", payload={}))
        # then the scheduler was down for two weeks: these were recorded by the next reconcile
        _fill(s, o.id, 2, datetime(2026, 11, 6, 15, tzinfo=UTC))  # type: ignore[arg-type]
        _fill(s, o.id, 3, datetime(2026, 11, 19, 15, tzinfo=UTC))  # type: ignore[arg-type]
    with Session(ctx.db) as s:
        keys = [r.key for r in reports.fills(s, now)]
    assert keys == ["fill:F2", "fill:F3"]


def _outbox(ctx) -> list[NotificationOutbox]:  # type: ignore[no-untyped-def]
    with Session(ctx.db) as s:
        return list(s.exec(select(NotificationOutbox).order_by(col(NotificationOutbox.id))).all())


def test_each_failure_streak_alerts_once_and_each_recovery_once_on_the_same_day(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # all on Tue 3 Nov: fails twice, recovers, fails once more, recovers again
    calls: list[str] = []
    state = runtime.RuntimeState(instance="t")
    for failing, times in ((True, 2), (False, 1), (True, 1), (False, 1)):
        _fake_jobs(monkeypatch, calls, fail={"intraday"} if failing else None)
        for _ in range(times):
            runtime.run_job(ctx, state, "intraday", "schedule")
    rows = [r for r in _outbox(ctx) if r.channel == "system_status"]
    assert [r.kind for r in rows] == ["job_failure", "job_recovery", "job_failure", "job_recovery"]
    assert "after 2 failed run(s)" in str(rows[1].payload) and "after 1 failed run(s)" in str(rows[3].payload)
    assert len({r.idempotency_key for r in rows}) == 4


def test_a_replayed_recovery_goes_to_the_playground_marked(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    state = runtime.RuntimeState(instance="t", mode="replay")
    _fake_jobs(monkeypatch, calls, fail={"nightly"})
    runtime.run_job(ctx, state, "nightly", "replay@x")
    _fake_jobs(monkeypatch, calls)
    runtime.run_job(ctx, state, "nightly", "replay@y")
    rows = _outbox(ctx)
    assert [(r.channel, r.kind) for r in rows] == [("playground", "job_failure"), ("playground", "job_recovery")]
    assert all(r.idempotency_key.startswith("replay:") and "[REPLAY]" in str(r.payload) for r in rows)
