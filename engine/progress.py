"""A small terminal progress bar with an ETA, for CLI commands that take more than a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.label, self.total, self.width = label, max(total, 1), width
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last_draw = 0.0
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def bump(self) -> None:
        """One more step done (for step-wise work without a natural count)."""
        self.update(self.done + 1)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if done < self.total and now - self._last_draw < 0.1:
            return  # redraw at most ten times a second
        self._last_draw = now
        frac = min(done / self.total, 1.0)
        elapsed = now - self.start
        eta = (elapsed / frac - elapsed) if frac > 0 else float("nan")
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        eta_text = f"ETA {eta:5.1f}s" if frac < 1 else f"done in {elapsed:.1f}s"
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {eta_text}   ")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
