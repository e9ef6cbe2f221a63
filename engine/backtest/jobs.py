"""Backtests launched from the console: one background thread per run, progress readable at any time.

The page only calls ``launch`` and ``status``; the run itself is ``engine.backtest.runner.run_backtest``
and stores its result in the database when it ends, so the console stays responsive while it runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.backtest.runner import BacktestSpec, run_backtest

__all__ = ["Job", "launch", "status"]


@dataclass
class Job:
    key: str
    spec: BacktestSpec
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 1
    run_id: int | None = None
    error: str | None = None
    finished: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.finished else min(self.done / max(self.total, 1), 0.99)

    @property
    def eta_seconds(self) -> float | None:
        elapsed = time.monotonic() - self.started
        return None if self.done == 0 or self.finished else elapsed / self.fraction - elapsed


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def launch(spec: BacktestSpec, engine: Any, settings: Any = None) -> Job:
    key = f"bt-{int(time.time() * 1000)}"
    job = Job(key, spec)

    def progress(done: int, total: int) -> None:
        job.done, job.total = done, total

    def work() -> None:
        try:
            job.run_id = run_backtest(spec, settings=settings, progress=progress, store=engine).run_id
        except Exception as exc:  # shown on the page; the thread must not die silently
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = True

    with _LOCK:
        _JOBS[key] = job
    threading.Thread(target=work, name=key, daemon=True).start()
    return job


def status() -> list[Job]:
    with _LOCK:
        return sorted(_JOBS.values(), key=lambda j: j.started, reverse=True)
