"""Parameter search and walk-forward on Dask ``distributed``, studies persisted with Optuna's RDB storage.

Walk-forward: the sessions of [start, end] are cut into rolling folds, each an in-sample window of
``is_sessions`` followed by an out-of-sample window of ``oos_sessions`` (folds step by the OOS
length). In each fold an Optuna study (random, grid or TPE sampler) searches the parameter space on
the in-sample window only; its best parameters are then run once on the out-of-sample window. The
result reports out-of-sample statistics only (the OOS windows chained into one equity curve) and the
stability of each parameter across folds.

Trials run on Dask: a ``LocalCluster`` of worker processes by default, the existing cluster at
``QM_DASK_SCHEDULER`` (e.g. ``tcp://host:8786``) when that is set, with no other change. Optuna's
ask/tell interface keeps the sampler in this process and sends each backtest to a worker.

Storage: the studies live in the project's database, in Optuna's tables beside ours (SQLite file or
PostgreSQL schema alike); ``engine.backtest.studies.study_storage`` keeps Optuna's schema bookkeeping
apart from our migrations'. A killed search resumes: completed trials are kept, trials left running by the dead
process are marked failed and re-asked, finished folds are not re-run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from engine.backtest.metrics import compute_metrics
from engine.data import calendar

__all__ = ["ParamRange", "SearchSpec", "dask_client", "parse_range", "run_walk_forward"]

SAMPLERS = ("random", "grid", "tpe")


@dataclass(frozen=True)
class ParamRange:
    name: str
    low: float
    high: float
    step: float | None = None
    integer: bool = False

    def grid(self) -> list[float | int]:
        step = self.step or ((self.high - self.low) / 4 if not self.integer else max(1, (self.high - self.low) // 4))
        vals = np.arange(self.low, self.high + step / 2, step)
        if self.integer:
            return [int(v) for v in np.rint(vals)]
        return [float(round(v, 10)) for v in vals]


def parse_range(text: str, defaults: dict[str, Any]) -> ParamRange:
    """``name=low:high[:step]``; integer when the parameter's default is an int."""
    name, sep, body = text.partition("=")
    parts = body.split(":")
    if not sep or len(parts) not in (2, 3):
        raise ValueError(f"--param-range {text!r}: expected name=low:high[:step]")
    name = name.strip()
    if name not in defaults:
        raise ValueError(f"--param-range {name}: unknown parameter; known: {', '.join(defaults)}")
    try:
        low, high = float(parts[0]), float(parts[1])
        step = float(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(f"--param-range {text!r}: low, high and step must be numbers") from None
    if not low < high:
        raise ValueError(f"--param-range {name}: low {low} must be below high {high}")
    is_int = isinstance(defaults[name], int) and not isinstance(defaults[name], bool)
    return ParamRange(name, low, high, step, is_int)


@dataclass(frozen=True)
class SearchSpec:
    study: str
    strategy: str = "ref_sma_atr"
    mode: str = "stock"
    source: str = "sim"
    symbols: int | None = 100
    seed: int = 7
    start: date = date(2019, 1, 2)
    end: date = date(2025, 12, 31)
    sampler: str = "tpe"
    trials: int = 20  # completed trials per fold
    folds: int = 3
    is_sessions: int = 504
    oos_sessions: int = 252
    objective: str = "sharpe"
    ranges: tuple[ParamRange, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        if self.trials < 1 or self.folds < 1 or self.is_sessions < 20 or self.oos_sessions < 5:
            raise ValueError("need trials >= 1, folds >= 1, is_sessions >= 20, oos_sessions >= 5")
        if not self.ranges:
            raise ValueError("give at least one --param-range")


def dask_client(workers: int = 2) -> Any:
    """The cluster at ``QM_DASK_SCHEDULER`` if set, else a local cluster of ``workers`` processes."""
    from dask.distributed import Client, LocalCluster

    address = os.environ.get("QM_DASK_SCHEDULER")
    if address:
        return Client(address)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def _folds(spec: SearchSpec) -> list[tuple[date, date, date, date]]:
    s = calendar.sessions(spec.start, spec.end).astype(object)
    out = []
    for k in range(spec.folds):
        i0 = k * spec.oos_sessions
        i1, i2 = i0 + spec.is_sessions, i0 + spec.is_sessions + spec.oos_sessions
        if i2 > len(s):
            raise ValueError(f"fold {k + 1}: needs {i2} sessions, {spec.start}..{spec.end} has {len(s)}")
        out.append((s[i0], s[i1 - 1], s[i1], s[i2 - 1]))
    return out


def _backtest_job(spec_fields: dict[str, Any], params: dict[str, Any], start: date, end: date) -> dict[str, Any]:
    """Runs on a Dask worker: one backtest, its metrics, daily returns and trades."""
    from engine.backtest.runner import BacktestSpec, run_backtest

    spec = BacktestSpec(strategy=spec_fields["strategy"], mode=spec_fields["mode"], source=spec_fields["source"],
                        symbols=spec_fields["symbols"], seed=spec_fields["seed"], start=start, end=end, params=params)
    r = run_backtest(spec)
    return {"metrics": r.metrics, "dates": [str(d) for d in r.dates], "equity": r.equity.tolist(),
            "trades": json.loads(r.trades[[c for c in ("symbol", "entry_date", "exit_date", "pnl", "risk",
                                                       "exit_reason") if c in r.trades]]
                                 .to_json(orient="records", date_format="iso"))}


def _sampler(spec: SearchSpec, resumed: int = 0) -> Any:
    """The study's sampler; a study resumed with ``resumed`` trials already in it draws from a seed moved
    on by that many, so a resumed random (or TPE start-up) search does not repeat the draws it made before
    the kill, while a fresh search with one seed stays reproducible."""
    import optuna

    seed = spec.seed + resumed
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({r.name: r.grid() for r in spec.ranges}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, spec.trials))


def _distributions(spec: SearchSpec) -> dict[str, Any]:
    import optuna.distributions as d

    out = {}
    for r in spec.ranges:
        if r.integer:
            out[r.name] = d.IntDistribution(int(r.low), int(r.high), step=int(r.step or 1))
        else:
            out[r.name] = d.FloatDistribution(r.low, r.high, step=r.step)
    return out


def _objective(metrics: dict[str, Any], name: str) -> float:
    v = metrics.get(name)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else -1e9


def _tell(study: Any, trial: Any, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` for the ask/tell loop. On the last grid point GridSampler's ``after_trial`` calls
    ``study.stop()``, which raises outside ``optimize()``; the trial is recorded by then (tell stores its
    state in a ``finally``) and ``submit`` stops at the end of the grid anyway, so that one error is moot."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _search_fold(study: Any, spec: SearchSpec, client: Any, is_start: date, is_end: date,
                 progress: Callable[[str], None] | None) -> None:
    from dask.distributed import as_completed
    from optuna.trial import TrialState

    dists = _distributions(spec)
    fields = asdict(spec)
    # Trials a killed run left running already hold their sampled parameters: run them again and tell
    # the same trial, rather than failing them (a grid sampler counts a failed point as visited, so
    # failing it would lose that point for good).
    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if set(t.params) == set(dists)]
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t not in stale:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # no parameters to rerun
    workers = max(1, len(client.scheduler_info().get("workers", {})))

    def done() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    pending: dict[Any, Any] = {}
    ac = as_completed()
    grid_left = math.prod(len(r.grid()) for r in spec.ranges) if spec.sampler == "grid" else None

    def submit() -> bool:
        if stale:
            trial: Any = stale.pop(0).number  # study.tell takes a trial's number
            params = {**spec.fixed, **study.trials[trial].params}
        else:
            if done() + len(pending) >= spec.trials:
                return False
            if grid_left is not None and len(study.trials) >= grid_left:
                return False
            trial = study.ask(dists)
            params = {**spec.fixed, **trial.params}
        fut = client.submit(_backtest_job, fields, params, is_start, is_end, pure=False)
        pending[fut] = trial
        ac.add(fut)
        return True

    for _ in range(max(workers, len(stale))):
        if not submit():
            break
    for fut in ac:
        trial = pending.pop(fut)
        try:
            value = _objective(fut.result()["metrics"], spec.objective)
        except Exception as exc:  # a failed backtest is a failed trial, not a failed search
            _tell(study, trial, state=TrialState.FAIL)
            if progress:
                progress(f"trial {getattr(trial, 'number', trial)} failed: {exc}")
        else:
            _tell(study, trial, value)
        if progress:
            progress(f"{study.study_name}: {done()}/{spec.trials} trials, best {spec.objective} "
                     f"{study.best_value if done() else float('nan'):.4f}")
        submit()


def run_walk_forward(spec: SearchSpec, storage: Any, client: Any,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folds = _folds(spec)
    fold_rows = []
    rets: list[pd.Series] = []
    trades: list[dict[str, Any]] = []
    for k, (is_start, is_end, oos_start, oos_end) in enumerate(folds, start=1):
        study = optuna.create_study(study_name=f"{spec.study}-fold{k}", storage=storage, direction="maximize",
                                    sampler=_sampler(spec), load_if_exists=True)
        if study.trials:
            study.sampler = _sampler(spec, resumed=len(study.trials))
        study.set_user_attr("spec", {"in_sample": [str(is_start), str(is_end)],
                                     "out_of_sample": [str(oos_start), str(oos_end)], "sampler": spec.sampler})
        oos = study.user_attrs.get("oos")
        if oos is None:
            _search_fold(study, spec, client, is_start, is_end, progress)
            best = {**spec.fixed, **study.best_params}
            oos = client.submit(_backtest_job, asdict(spec), best, oos_start, oos_end, pure=False).result()
            oos["best_params"], oos["best_in_sample"] = best, study.best_value
            study.set_user_attr("oos", oos)  # a resumed search does not re-run a finished fold
        eq = pd.Series(oos["equity"], index=pd.to_datetime(oos["dates"]))
        rets.append(eq.pct_change().fillna(eq.iloc[0] / eq.iloc[0] - 1.0))
        trades += oos["trades"]
        fold_rows.append({"fold": k, "in_sample": [str(is_start), str(is_end)],
                          "out_of_sample": [str(oos_start), str(oos_end)], "best_params": oos["best_params"],
                          "in_sample_objective": oos["best_in_sample"], "oos_metrics": oos["metrics"],
                          "trials": len(study.trials)})
    r = pd.concat(rets)
    equity = 100_000.0 * np.cumprod(1.0 + r.to_numpy())
    trade_frame = pd.DataFrame(trades) if trades else pd.DataFrame(columns=["pnl", "risk", "exit_reason"])
    oos_metrics = compute_metrics(r.index.to_numpy().astype("datetime64[D]"), equity, trade_frame)
    stability = {}
    for rg in spec.ranges:
        vals = np.array([row["best_params"][rg.name] for row in fold_rows], dtype=np.float64)
        sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        stability[rg.name] = {"values": vals.tolist(), "mean": float(vals.mean()), "std": sd,
                              "std_over_range": sd / (rg.high - rg.low)}
    url = storage if isinstance(storage, str) else storage.url
    return {"study": spec.study, "sampler": spec.sampler, "objective": spec.objective,
            "storage": sa.engine.make_url(url).render_as_string(hide_password=True),
            "folds": fold_rows, "oos_metrics": oos_metrics, "parameter_stability": stability}
