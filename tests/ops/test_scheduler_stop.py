"""A stop (SIGTERM or a lost lease) ends the live loop wherever it arrives.

CI caught the case this file pins: started between the post-market and the nightly run, the scheduler
spends its first seconds catching up missed jobs; a SIGTERM then set the stop flag, the attempt to shut
down the not-yet-started APScheduler failed in a thread, and ``scheduler.start()`` blocked for ever.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from types import ModuleType

import pytest

from engine import runtime

ROOT = Path(__file__).resolve().parents[2]


def _scheduler_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scheduler_under_test", ROOT / "scheduler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_live_in_thread(module: ModuleType, state: runtime.RuntimeState) -> threading.Thread:
    # run_live only hands ctx to the jobs it plans; none of them comes due within this test
    thread = threading.Thread(target=module.run_live, args=(object(), state), daemon=True)
    thread.start()
    return thread


def test_a_stop_during_the_catch_up_ends_run_live_without_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _scheduler_module()
    state = runtime.RuntimeState(instance="test:1")

    def catch_up_interrupted(ctx: object, st: runtime.RuntimeState, now: object) -> list[object]:
        st.stopping.set()  # SIGTERM arrives while a missed post-market job is still running
        return []

    monkeypatch.setattr(runtime, "catch_up", catch_up_interrupted)
    thread = _run_live_in_thread(module, state)
    thread.join(timeout=20)
    assert not thread.is_alive(), "run_live kept running after a stop during the catch-up"


def test_a_stop_after_the_start_shuts_the_scheduler_down(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _scheduler_module()
    state = runtime.RuntimeState(instance="test:2")
    monkeypatch.setattr(runtime, "catch_up", lambda ctx, st, now: [])
    thread = _run_live_in_thread(module, state)
    thread.join(timeout=2)
    assert thread.is_alive()  # live: it runs until told to stop
    state.stopping.set()
    thread.join(timeout=20)
    assert not thread.is_alive(), "run_live did not return after the stop"


def test_a_stop_waits_for_an_operator_run_now_job_before_returning(monkeypatch: pytest.MonkeyPatch,
                                                                   migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    """run_live returns (and main releases the lease) only after a run-now job on its own thread finished."""
    import time
    from datetime import UTC, datetime

    from engine.clock import ReplayClock
    from engine.config import load_settings
    from engine.context import EngineContext

    module = _scheduler_module()
    monkeypatch.setattr(module, "COMMAND_POLL_SECONDS", 1)
    monkeypatch.setattr(runtime, "catch_up", lambda ctx, st, now: [])
    monkeypatch.setattr(runtime, "refresh_settings", lambda ctx, st: None)
    monkeypatch.setattr(runtime, "after_job", lambda ctx, job_id, replayed=False: None)
    started, calls = threading.Event(), []

    def slow_nightly(_ctx: object) -> None:
        started.set()
        time.sleep(2.0)
        calls.append("nightly finished")

    monkeypatch.setitem(runtime.JOBS, "nightly", slow_nightly)
    ctx = EngineContext(load_settings(), migrated_sqlite, None, None,  # type: ignore[arg-type]
                        ReplayClock(datetime.now(UTC), speed=1.0))
    state = runtime.RuntimeState(instance="test:3")
    state.run_now.append("nightly")  # the operator's "run now", applied by the next commands poll
    thread = threading.Thread(target=module.run_live, args=(ctx, state), daemon=True)
    thread.start()
    assert started.wait(timeout=20), "the run-now job never started"
    state.stopping.set()  # SIGTERM while the operator's job runs
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert calls == ["nightly finished"], "run_live returned while the run-now job was still running"
