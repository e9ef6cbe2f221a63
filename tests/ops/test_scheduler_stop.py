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
