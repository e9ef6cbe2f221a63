"""`python -m engine backtest ...` and `python -m engine bench backtest ...`.

Wire into ``engine/cli.py`` with ``add_backtest_commands(sub, bench_sub)``. ``--json`` makes the last
line of stdout one JSON object of the metrics; the progress bar goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

__all__ = ["add_backtest_commands"]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def add_backtest_commands(subparsers: Any, bench_subparsers: Any | None = None) -> None:
    from engine.backtest.runner import MODES, SOURCES, STRATEGIES

    p = subparsers.add_parser("backtest", help="run a backtest on the engine's own code and store the run")
    p.add_argument("--strategy", choices=STRATEGIES, default="atr_matrix")
    p.add_argument("--mode", choices=MODES, default="options")
    p.add_argument("--source", choices=SOURCES, default="sim")
    p.add_argument("--symbols", type=int, help="first N symbols of the source (sim default: 500)")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter")
    p.add_argument("--seed", type=int, default=7, help="simulated market seed")
    p.add_argument("--chains", metavar="PATH", help="folder of vendor EOD option chains (options_eod/ layout) "
                   "for option fills; the simulated surface where it has no chain")
    p.add_argument("--trades-csv", metavar="PATH", help="write the trade list to this CSV")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the metrics")
    p.add_argument("--no-store", action="store_true", help="do not store the run in the database")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_backtest)

    if bench_subparsers is not None:
        b = bench_subparsers.add_parser("backtest", help="stock-mode ref_sma_atr vs backtrader and vectorbt")
        b.add_argument("--symbols", type=int, default=500)
        b.add_argument("--years", type=float, default=5)
        b.add_argument("--mode", choices=MODES, default="stock")
        b.add_argument("--backtrader-symbols", type=int, default=50)
        b.add_argument("--block", type=int, default=4096, help="symbols per streamed block for large universes")
        b.add_argument("--no-reference", action="store_true", help="skip backtrader and vectorbt")
        b.set_defaults(handler=_cmd_bench_backtest)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from engine.backtest.report import format_metrics, write_trades_csv
    from engine.backtest.runner import BacktestSpec, parse_params, run_backtest
    from engine.config import get_settings
    from engine.progress import ProgressBar

    try:
        params = parse_params(args.strategy, args.mode, args.param)
        spec = BacktestSpec(strategy=args.strategy, mode=args.mode, source=args.source, start=args.start,
                            end=args.end, symbols=args.symbols if args.symbols or args.source != "sim" else 500,
                            params=params, seed=args.seed)
    except ValueError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    engine = None
    if not args.no_store:
        from engine.db import get_engine, migrate

        migrate(settings.db_url)
        engine = get_engine(settings.db_url)
    bar = None if args.quiet else ProgressBar(f"backtest {spec.strategy}/{spec.mode}", 1)
    try:
        result = run_backtest(spec, settings=settings, progress=bar, store=engine,
                              eod_dir=Path(args.chains) if args.chains else None)
    except ValueError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 1
    title = (f"{spec.strategy} {spec.mode} on {spec.source} ({result.n_symbols:,} symbols, "
             f"{spec.start}..{spec.end}) in {result.seconds:.2f}s"
             + (f", stored as run {result.run_id}" if result.run_id is not None else ""))
    print(format_metrics(result.metrics, title))
    if "fill_source" in result.trades and len(result.trades):
        counts = result.trades["fill_source"].value_counts().to_dict()
        print("option fills by source: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.trades_csv:
        n = write_trades_csv(result.trades, args.trades_csv)
        print(f"wrote {n} trades to {args.trades_csv}")
    if args.json:
        print(json.dumps(result.metrics | {"run_id": result.run_id, "seconds": round(result.seconds, 4)},
                         default=str))
    return 0


def _cmd_bench_backtest(args: argparse.Namespace) -> int:
    from engine.bench.backtest import bench_backtest

    print(json.dumps(bench_backtest(symbols=args.symbols, years=args.years, mode=args.mode,
                                    backtrader_symbols=args.backtrader_symbols, block=args.block,
                                    reference=not args.no_reference)))
    return 0


def add_validate_command(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="paper trading on a replay clock vs a backtest over the same "
                              "simulated sessions: same orders and fills?")
    p.add_argument("--days", type=int, required=True, help="number of simulated sessions")
    p.add_argument("--symbols", type=int, default=300, help="simulated symbols (default 300)")
    p.add_argument("--date", type=_date, help="first session (default: --days sessions before the last completed)")
    p.add_argument("--cycle-minutes", type=int, default=5, help="minutes between intraday cycles (scheduler: 5)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the comparison")
    p.set_defaults(handler=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from engine.backtest.validate import validate

    try:
        out = validate(args.days, symbols=args.symbols, start=args.date, cycle_minutes=args.cycle_minutes,
                       echo=lambda line: print(line, file=sys.stderr))
    except ValueError as exc:
        print(f"validate: {exc}", file=sys.stderr)
        return 2
    print(f"{out['days']} sessions {out['start']}..{out['end']}, {out['symbols']} symbols: "
          f"live {out['orders_live']} orders / {out['fills_live']} filled; "
          f"backtest {out['orders_backtest']} orders / {out['fills_backtest']} filled")
    for e in out["job_errors"]:
        print(f"job error: {e}")
    for d in out["differences"]:
        extra = (f" (backtest: {d['backtest_quantity']} @ {d['backtest_price']})" if d["kind"] == "differs" else "")
        print(f"{d['kind']:<13} {d['date']} {d['symbol']:<6} {d['side']:<4} {d['structure']:<22} "
              f"{d['quantity']} @ {d['price']}{extra}  legs {' '.join(d['legs'])}")
    print("MATCH: same orders and fills" if out["match"] else f"DIFFER: {len(out['differences'])} differences")
    if args.json:
        print(json.dumps(out, default=str))
    return 0 if out["match"] else 1
