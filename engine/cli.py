"""Command line: ``python -m engine <command>``. Handlers stay thin and call engine functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from engine.config import SettingsError, get_settings

Handler = Callable[[argparse.Namespace], int]


def _cmd_init(args: argparse.Namespace) -> int:
    from engine.bootstrap import initialise

    summary = initialise(get_settings(), sessions=args.sessions, progress=not args.quiet)
    print(json.dumps(summary, default=str))
    return 0


def _cmd_import_bars(args: argparse.Namespace) -> int:
    from engine.data.barstore import BarStore
    from engine.data.importer import import_bars

    settings = get_settings()
    store = BarStore(settings.bar_store_dir, args.source)
    report = import_bars([Path(p) for p in args.paths], store, symbol=args.symbol)
    for line in report.errors[: args.show_errors]:
        print(f"rejected {line}", file=sys.stderr)
    if len(report.errors) > args.show_errors:
        print(f"... and {report.rows_rejected - args.show_errors} more rejected rows", file=sys.stderr)
    print(
        f"imported {report.rows_imported} rows for {len(report.symbols)} symbols from {report.files} files "
        f"into {store.dir}; rejected {report.rows_rejected}"
    )
    return 0 if report.rows_imported or not report.rows_read else 1


def _cmd_bench_store(args: argparse.Namespace) -> int:
    from engine.bench.store import bench_store

    print(json.dumps(bench_store(symbols=args.symbols, days=args.days)))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="QuantMatrix engine commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="apply database migrations and seed the configured market data")
    p.add_argument("--sessions", type=int, default=420, help="trading sessions of daily bars to seed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_cmd_init)

    p = sub.add_parser("import-bars", help="import daily bars from CSV/Parquet files into the bar store")
    p.add_argument("paths", nargs="+", help="files or folders of .csv/.parquet")
    p.add_argument("--source", default="csv", help="bar-store partition to write (default: csv)")
    p.add_argument("--symbol", help="symbol for files without a symbol column")
    p.add_argument("--show-errors", type=int, default=20)
    p.set_defaults(handler=_cmd_import_bars)

    bench = sub.add_parser("bench", help="benchmarks (print a table, then one JSON line)")
    bsub = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    p = bsub.add_parser("store", help="generate N symbols x D days on the simulated market, store and load")
    p.add_argument("--symbols", type=int, default=32_345)
    p.add_argument("--days", type=int, default=300)
    p.set_defaults(handler=_cmd_bench_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

