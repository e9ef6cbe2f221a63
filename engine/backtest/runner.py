"""One backtest run: load the data, run the strategy in its mode, compute the metrics, store the result.

``run_backtest(spec)`` is what the CLI, the console page, the search and the regression test call.
Indicators need history before the first decision day, so the data is loaded ``WARMUP_SESSIONS``
sessions before ``spec.start``; no entry is signalled before ``start`` and the equity curve and the
metrics cover [start, end] only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest.metrics import compute_metrics, drawdown_curve, monthly_returns
from engine.data import calendar
from engine.data.panel import Panel

__all__ = ["MODES", "SOURCES", "STRATEGIES", "BacktestResult", "BacktestSpec", "code_version", "load_panel",
           "parse_params", "run_backtest"]

STRATEGIES = ("atr_matrix", "ref_sma_atr")
MODES = ("options", "stock")
SOURCES = ("sim", "csv", "massive")
WARMUP_SESSIONS = 260  # > SMA200 + a margin, so every indicator is defined on the first decision day
ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BacktestSpec:
    strategy: str = "ref_sma_atr"
    mode: str = "stock"
    source: str = "sim"
    start: date = date(2021, 1, 4)
    end: date = date(2025, 12, 31)
    symbols: int | None = None  # first N symbols of the source; None = all
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 7  # simulated market seed

    def __post_init__(self) -> None:
        for name, value, allowed in (("strategy", self.strategy, STRATEGIES), ("mode", self.mode, MODES),
                                     ("source", self.source, SOURCES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.symbols is not None and self.symbols < 1:
            raise ValueError(f"symbols must be >= 1, got {self.symbols}")


@dataclass
class BacktestResult:
    spec: BacktestSpec
    trades: pd.DataFrame
    dates: np.ndarray
    equity: np.ndarray
    gross_exposure: np.ndarray
    metrics: dict[str, Any]
    data_start: date | None
    data_end: date | None
    n_symbols: int
    bars: int
    seconds: float = 0.0
    run_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def drawdown(self) -> np.ndarray:
        return drawdown_curve(self.equity)

    def monthly_returns(self) -> pd.DataFrame:
        return monthly_returns(self.dates, self.equity)


def code_version() -> str:
    """``git rev-parse --short HEAD`` (+ ``-dirty`` with uncommitted changes), or "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _coerce(name: str, raw: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"--param {name}={raw!r}: expected a {type(like).__name__}") from None
    return raw


def param_defaults(strategy: str, mode: str) -> dict[str, Any]:
    """The tunable parameters of a strategy/mode with their defaults (what ``--param`` accepts)."""
    if strategy == "ref_sma_atr":
        from engine.backtest.stock import RefSmaAtrParams

        return {f.name: getattr(RefSmaAtrParams(), f.name) for f in fields(RefSmaAtrParams)} | {"capital": 0.0}
    from engine.backtest.options_mode import option_param_defaults

    return option_param_defaults(mode)


def parse_params(strategy: str, mode: str, pairs: list[str] | None) -> dict[str, Any]:
    """``["fast=20", "stop_atr=2.5"]`` -> typed dict; unknown names and bad values raise ValueError."""
    defaults = param_defaults(strategy, mode)
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param {pair!r}: expected name=value")
        if name not in defaults:
            raise ValueError(f"--param {name}: unknown parameter for {strategy}/{mode}; known: {', '.join(defaults)}")
        out[name] = _coerce(name, raw.strip(), defaults[name])
    return out


def load_panel(spec: BacktestSpec, settings: Any = None) -> Panel:
    """Bars for [start - warm-up, end] from the spec's source (sim: generated; csv/massive: the bar store)."""
    first = calendar.sessions_back(spec.start, WARMUP_SESSIONS + 1)[0].astype(object)
    if spec.source == "sim":
        from engine.data.sim import SimMarket

        n = spec.symbols or (settings.sim_symbols if settings is not None else 500)
        return SimMarket(seed=spec.seed, n_symbols=n).daily_bars(first, spec.end, dtype=np.float64)
    from engine.config import get_settings
    from engine.data.barstore import BarStore

    settings = settings or get_settings()
    store = BarStore(settings.bar_store_dir, spec.source)
    panel = store.load(first, spec.end, dtype=np.float64)
    if panel.n_days == 0 or panel.n_symbols == 0:
        raise ValueError(f"no {spec.source} bars stored in {store.dir} for {first}..{spec.end}; "
                         f"import or backfill them first")
    if spec.symbols is not None:
        panel = panel.select(sorted(panel.symbols)[: spec.symbols])
    return panel


def run_backtest(spec: BacktestSpec, *, panel: Panel | None = None, settings: Any = None,
                 progress: Progress | None = None, store: Any = None, eod_dir: Path | None = None) -> BacktestResult:
    """Run ``spec``; with ``store`` (a SQLAlchemy engine) the run and its trades are saved at the end.
    ``eod_dir``: a folder of vendor EOD option chains (layout of ``options_eod/``) used for option fills
    where it has the symbol and day, the simulated surface otherwise."""
    import time

    t0 = time.perf_counter()
    panel = panel if panel is not None else load_panel(spec, settings)
    first_day = int(np.searchsorted(panel.dates, np.datetime64(spec.start, "D")))
    if first_day >= panel.n_days:
        raise ValueError(f"no sessions in the data between {spec.start} and {spec.end}")
    if eod_dir is not None and not Path(eod_dir).is_dir():
        raise ValueError(f"chains: {str(eod_dir)!r} is not a directory of EOD chain files")
    if spec.mode == "stock":
        result = _run_stock(spec, panel, first_day, progress)
    else:
        from engine.backtest.options_mode import run_options_backtest

        result = run_options_backtest(spec, panel, first_day, progress=progress, eod_dir=eod_dir)
    result.seconds = time.perf_counter() - t0
    if store is not None:
        from engine.backtest.store import save_run

        result.run_id = save_run(store, result)
    return result


def _run_stock(spec: BacktestSpec, panel: Panel, first_day: int, progress: Progress | None) -> BacktestResult:
    if spec.strategy != "ref_sma_atr":
        from engine.backtest.options_mode import run_options_backtest

        return run_options_backtest(spec, panel, first_day, progress=progress)
    from engine.backtest.stock import RefSmaAtrParams, run_ref_sma_atr

    params = dict(spec.params)
    capital = float(params.pop("capital", 0.0)) or None
    p = RefSmaAtrParams(**params)
    r = run_ref_sma_atr(panel, p, capital=capital, progress=progress, first_day=first_day)
    dates = r.dates[first_day:]
    equity, exposure = r.equity[first_day:], r.gross_exposure[first_day:]
    metrics = compute_metrics(dates, equity, r.trades, exposure, r.traded_notional)
    return BacktestResult(
        spec=spec, trades=r.trades, dates=dates, equity=equity, gross_exposure=exposure, metrics=metrics,
        data_start=panel.dates[0].astype(object), data_end=panel.dates[-1].astype(object),
        n_symbols=panel.n_symbols, bars=r.bars,
    )
