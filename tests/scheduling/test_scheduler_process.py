"""The scheduler process: one per database (lease), takeover after a crash, commands applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine import runtime
from engine.bootstrap import initialise
from engine.clock import ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.db import get_engine, migrate, session_scope
from engine.lease import holder_of
from engine.models import Heartbeat, JobRun, OperatorCommand, SettingOverride
from engine.operator import enqueue_command, kill_switch_on

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_")}
    env.update({"QM_DATA_DIR": str(data_dir), "QM_SIM_SYMBOLS": "50", "PYTHONPATH": str(ROOT)})
    return subprocess.Popen([sys.executable, str(ROOT / "scheduler.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_second_scheduler_refuses_then_takes_over_after_a_crash(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = load_settings(data_dir=data_dir, sim_symbols=50)
    migrate(settings.db_url)
    engine = get_engine(settings.db_url)
    first = _start(data_dir, "--lease-seconds", "6")
    try:
        _wait_for(lambda: holder_of(engine, "scheduler") is not None)
        holder = holder_of(engine, "scheduler")
        assert holder is not None and holder.endswith(f":{first.pid}")
        # a second instance that may wait 2 s gives up: the lease is held and renewed
        second = _start(data_dir, "--lease-seconds", "6", "--wait-for-lease", "2")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3, out
        assert "another scheduler holds the lease" in out
        # the first one crashes (no cleanup, lease not released); a third takes over once it expires
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        third = _start(data_dir, "--lease-seconds", "6", "--wait-for-lease", "60")
        try:
            _wait_for(lambda: (holder_of(engine, "scheduler") or "").endswith(f":{third.pid}"), timeout=60)
            with Session(engine) as s:
                beat = s.get(Heartbeat, "scheduler")
                assert beat is not None and beat.instance_id.endswith(f":{third.pid}")
        finally:
            third.send_signal(signal.SIGTERM)
            third.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()


@pytest.fixture
def replay_ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=300)
    initialise(settings, sessions=300, progress=False)
    clock = ReplayClock(datetime(2026, 10, 1, 12, tzinfo=UTC))
    return build_context(settings, clock=clock), clock


def test_console_commands_are_applied_and_recorded(replay_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = replay_ctx
    state = runtime.RuntimeState(instance="test")
    now = datetime(2026, 10, 1, 12, tzinfo=UTC)
    with session_scope(ctx.db) as s:
        enqueue_command(s, "pause_job", {"job_id": "intraday"}, "operator", "lunch", now)
        enqueue_command(s, "kill_switch", {"on": True}, "operator", "news", now)
        enqueue_command(s, "set_approval_mode", {"mode": "manual"}, "operator", "careful", now)
        enqueue_command(s, "run_job", {"job_id": "nightly"}, "operator", "refresh data", now)
        enqueue_command(s, "pause_job", {"job_id": "nope"}, "operator", "typo", now)
    applied = runtime.apply_commands(ctx, state)
    assert [c.status for c in applied] == ["applied", "applied", "applied", "applied", "failed"]
    assert state.paused == {"intraday"}
    with Session(ctx.db) as s:
        assert kill_switch_on(s)
        mode = s.get(SettingOverride, "approval_mode")
        assert mode is not None and mode.value == {"value": "manual"}
        cmds = s.exec(select(OperatorCommand).order_by(OperatorCommand.id)).all()
        assert all(c.applied_at is not None and c.applied_by == "scheduler test" for c in cmds)
        assert "unknown job 'nope'" in (cmds[-1].result or "")
        # run_job ran the nightly job right away, recorded as an operator run
        assert s.exec(select(JobRun).where(JobRun.job_id == "nightly", JobRun.trigger == "operator")).first()
    # a paused job is skipped by the schedule
    runtime.run_job(ctx, state, "intraday", "schedule")
    with Session(ctx.db) as s:
        assert s.exec(select(JobRun).where(JobRun.job_id == "intraday")).first() is None


def test_replay_fires_the_plan_at_market_times_and_resumes(replay_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, clock = replay_ctx
    state = runtime.RuntimeState(instance="test")
    fired: list[tuple[str, datetime]] = []
    day = date(2026, 11, 27)  # early close
    n = runtime.replay(ctx, clock, state, day, day, speed=0,
                       on_run=lambda r: fired.append((r.job_id, clock.now())),
                       intraday_every=timedelta(minutes=60))
    assert n == len(fired) > 0
    jobs = [j for j, _ in fired]
    assert jobs[0] == "premarket" and jobs[-1] == "nightly" and jobs[-2] == "postmarket"
    post_at = dict(fired)["postmarket"].astimezone(UTC)
    assert post_at == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 13:00 EST close + 30 min
    with Session(ctx.db) as s:
        runs = [r for r in s.exec(select(JobRun).where(JobRun.trigger.like("replay@%"))).all()
                if not r.job_id.startswith("notify:")]
        assert {r.job_id for r in runs} == {"premarket", "intraday", "postmarket", "nightly"}
        assert all(r.outcome == "ok" for r in runs), [r.error for r in runs if r.outcome != "ok"]
    # a restarted replay of the same day has nothing left to do
    assert runtime.replay(ctx, clock, state, day, day, speed=0, intraday_every=timedelta(minutes=60)) == 0
