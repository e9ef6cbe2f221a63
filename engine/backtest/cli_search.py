"""`python -m engine search ...`: walk-forward parameter search on Dask (see engine.backtest.search)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_search_commands"]


def add_search_commands(subparsers: Any) -> None:
    from engine.backtest.cli_backtest import _date
    from engine.backtest.runner import MODES, SOURCES, STRATEGIES
    from engine.backtest.search import SAMPLERS

    p = subparsers.add_parser("search", help="walk-forward Optuna search on Dask; resumable")
    p.add_argument("--study", required=True, help="study name (rerun with the same name to resume)")
    p.add_argument("--strategy", choices=STRATEGIES, default="ref_sma_atr")
    p.add_argument("--mode", choices=MODES, default="stock")
    p.add_argument("--source", choices=SOURCES, default="sim")
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--trials", type=int, default=20, help="completed trials per fold")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--is-sessions", type=int, default=504)
    p.add_argument("--oos-sessions", type=int, default=252)
    p.add_argument("--objective", default="sharpe", help="metric to maximise in sample")
    p.add_argument("--param-range", action="append", default=[], metavar="NAME=LOW:HIGH[:STEP]")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="fixed parameter")
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    p.add_argument("--storage", help="a separate Optuna storage URL (default: the project database)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from engine.backtest.runner import param_defaults, parse_params
    from engine.backtest.search import SearchSpec, dask_client, parse_range, run_walk_forward
    from engine.backtest.studies import study_storage
    from engine.config import get_settings

    try:
        defaults = param_defaults(args.strategy, args.mode)
        spec = SearchSpec(study=args.study, strategy=args.strategy, mode=args.mode, source=args.source,
                          symbols=args.symbols, seed=args.seed, start=args.start, end=args.end, sampler=args.sampler,
                          trials=args.trials, folds=args.folds, is_sessions=args.is_sessions,
                          oos_sessions=args.oos_sessions, objective=args.objective,
                          ranges=tuple(parse_range(t, defaults) for t in args.param_range),
                          fixed=parse_params(args.strategy, args.mode, args.param))
    except ValueError as exc:
        print(f"search: {exc}", file=sys.stderr)
        return 2
    storage = args.storage or study_storage(get_settings().db_url)
    client = dask_client(args.workers)
    try:
        result = run_walk_forward(spec, storage, client, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"search: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    om = result["oos_metrics"]
    print(f"walk-forward {spec.study}: {len(result['folds'])} folds, out-of-sample only:")
    for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate"):
        print(f"  {k:<14} {om.get(k)}")
    for name, st in result["parameter_stability"].items():
        print(f"  {name}: folds {st['values']} (std {st['std']:.4g}, {100 * st['std_over_range']:.1f}% of range)")
    if args.json:
        print(json.dumps(result, default=str))
    return 0
