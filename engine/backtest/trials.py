"""Stored search trials for the console: the studies ``engine.backtest.search`` keeps in the project
database (``engine.backtest.studies.study_storage``), as plain frames (one row per finished trial: number,
objective value, parameters). ``storage`` is that storage object, or another Optuna storage URL."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["heatmap_table", "study_names", "trials_frame"]


def study_names(storage: Any) -> list[str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage=storage))


def trials_frame(storage: Any, study: str) -> pd.DataFrame:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=study, storage=storage)
    rows: list[dict[str, Any]] = [{"trial": t.number, "value": t.value, **t.params} for t in s.trials
                                  if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return pd.DataFrame(rows)


def heatmap_table(trials: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean objective per (y, x) pair of parameter values: rows ``y``, columns ``x`` (NaN: not tried)."""
    for name in (x, y):
        if name not in trials.columns:
            raise ValueError(f"parameter {name!r} is not in the trials (have: {', '.join(map(str, trials.columns))})")
    return trials.pivot_table(index=y, columns=x, values="value", aggfunc="mean").sort_index().sort_index(axis=1)
