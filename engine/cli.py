"""Command line: ``python -m engine <command>``. Handlers stay thin and call engine functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path

from sqlalchemy.exc import DBAPIError

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


def _cmd_scan(args: argparse.Namespace) -> int:
    from engine.db import get_engine, migrate, session_scope
    from engine.scanning import results_frame, run_scan

    settings = get_settings()
    migrate(settings.db_url)
    engine = get_engine(settings.db_url)
    as_of = date.fromisoformat(args.date) if args.date else None
    from engine.progress import ProgressBar

    bar = ProgressBar("scan", 3)  # load bars, run gate + strategy, store the run

    def step(message: str) -> None:
        bar.label = message
        bar.bump()

    outcome = run_scan(settings, engine, as_of=as_of, max_symbols=args.symbols, progress=step)
    bar.label = "stored"
    bar.update(bar.total)
    run = outcome.run
    with session_scope(engine) as session:
        top = results_frame(session, run.id, limit=args.top, signals_first=True)
    print(format_scan(run, top, outcome.cache_hit))
    return 0


def format_scan(run, top, cache_hit: bool) -> str:  # type: ignore[no-untyped-def]
    """The scan table: top setups with their levels, then exclusions by reason."""
    lines = [
        f"ATR Matrix scan of {run.data_date} ({run.data_source}): {run.n_scanned:,} symbols, "
        f"{run.n_signals} signals, {run.n_excluded:,} excluded"
        + (" [cached result]" if cache_hit else f" in {run.load_seconds + run.compute_seconds:.2f}s"),
        "",
        f"{'rank':>4} {'symbol':<7} {'zone':<11} {'score':>5} {'close':>9} {'atr%':>5} {'dist':>5} "
        f"{'stop':>9} {'target1':>9} {'target4':>9} signal",
    ]
    for r in top.itertuples():
        if r.excluded_reason:
            continue
        lines.append(
            f"{r.rank:>4} {r.symbol:<7} {r.zone!s:<11} {r.score:>5.2f} {r.close:>9.2f} {r.atr_pct:>5.1f} "
            f"{r.atr_distance:>5.2f} {_num(r.stop):>9} {_num(r.target_1):>9} {_num(r.target_4):>9} "
            f"{'YES' if r.signal else ''}"
        )
    lines += ["", "excluded by reason:"]
    for reason, count in sorted(run.excluded_by_reason.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {reason:<28} {count:>7,}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"


def _cmd_run_day(args: argparse.Namespace) -> int:
    from engine.bootstrap import last_completed_session
    from engine.clock import NEW_YORK, ReplayClock
    from engine.context import build_context
    from engine.data import calendar
    from engine.db import migrate
    from engine.replay import books_summary, run_days
    from engine.replay_target import replay_settings

    settings = get_settings()
    if args.symbols is not None:
        settings = settings.model_copy(update={"sim_symbols": args.symbols})
    if args.hold_to_expiry:  # no time exit: positions reach expiry and are settled
        settings = settings.model_copy(update={"exits": settings.exits.model_copy(update={"hold_to_expiry": True})})
    # run-day is a replay: with a live data source or a real broker configured it runs on the simulated market
    # with a paper broker in its own folder, exactly like the scheduler's replay (never the live book)
    settings, folder = replay_settings(settings)
    if folder is not None:
        print(f"run-day kept apart from live: simulated market and paper broker in {folder} "
              f"(see it with QM_DATA_DIR={folder} streamlit run app/console.py)", file=sys.stderr)
    migrate(settings.db_url)
    if args.date:
        start = date.fromisoformat(args.date)
    else:
        start = calendar.sessions_back(last_completed_session(), args.days)[0].astype(object)
    clock = ReplayClock(datetime.combine(start, time(8, 0), NEW_YORK))
    ctx = build_context(settings, clock=clock)
    _ensure_universe(ctx)
    summaries = run_days(ctx, clock, start, args.days, every_minutes=args.cycle_minutes, echo=print,
                         detail=not args.quiet)
    last = summaries[-1] if summaries else None
    if last is not None and last.equity is not None:
        print(f"final equity ${last.equity:,.2f} = cash ${last.cash:,.2f} + positions ${last.positions_value:,.2f}")
    result = books_summary(ctx)
    result["days"] = len(summaries)
    result["job_errors"] = sum(len(s.job_errors) for s in summaries)
    print(json.dumps(result))
    return 0 if result["job_errors"] == 0 else 1


def _ensure_universe(ctx: object) -> None:
    """A fresh data folder has no instruments table rows: without sectors every position would share one
    empty sector and the sector limit would refuse entries that a real run takes."""
    from sqlmodel import select

    from engine.data.universe import sync_universe
    from engine.db import session_scope
    from engine.models import Instrument

    with session_scope(ctx.db) as session:  # type: ignore[attr-defined]
        if session.exec(select(Instrument.symbol)).first() is None:
            sync_universe(session, ctx.market.universe(), ctx.market.name)  # type: ignore[attr-defined]


def _cmd_bench_scan(args: argparse.Namespace) -> int:
    from engine.bench.scan import bench_scan

    print(json.dumps(bench_scan(symbols=args.symbols, days=args.days, runs=args.runs)))
    return 0


def _cmd_bench_options(args: argparse.Namespace) -> int:
    from engine.bench.options import bench_options

    print(json.dumps(bench_options(quotes=args.quotes, runs=args.runs, sample=args.sample,
                                   american_quotes=args.american_quotes, american_sample=args.american_sample)))
    return 0


def _cmd_bench_orders(args: argparse.Namespace) -> int:
    from engine.bench.orders import bench_orders

    print(json.dumps(bench_orders(orders=args.orders)))
    return 0


def _cmd_chaos(args: argparse.Namespace) -> int:
    from engine.chaos import ChaosConfig, run_chaos

    result = run_chaos(ChaosConfig(kills=args.kills, sessions=args.sessions, symbols=args.symbols, seed=args.seed),
                       echo=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, default=str))
    clean = (result["completed"] and not result["differences"] and not result["broker_book_problems"]
             and result["duplicate_client_ids_at_broker"] == 0 and result["lost_orders"] == 0
             and result["stuck_orders"] == 0 and result["entries_filled_twice"] == 0
             and result["fills_missing_in_engine"] == 0)
    return 0 if clean else 1


def _cmd_bench_data(args: argparse.Namespace) -> int:
    from engine.bench.data import bench_data

    print(json.dumps(bench_data(symbols=args.symbols, days=args.days)))
    return 0


def _cmd_bench_console(args: argparse.Namespace) -> int:
    from engine.bench.console import bench_console

    print(json.dumps(bench_console(symbols=args.symbols, positions=args.positions, runs=args.runs)))
    return 0


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

    p = sub.add_parser("scan", help="run the ATR Matrix scan and print the top setups")
    p.add_argument("--date", help="data date (YYYY-MM-DD); default: the newest stored session")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--symbols", type=int, help="scan only the first N tradable symbols")
    p.set_defaults(handler=_cmd_scan)

    p = sub.add_parser("run-day", help="run whole trading days on the simulated market with a replay clock")
    p.add_argument("--date", help="first session (YYYY-MM-DD); default: --days sessions before the last one")
    p.add_argument("--days", type=int, default=1, help="number of sessions in a row")
    p.add_argument("--cycle-minutes", type=int, default=30, help="minutes between intraday cycles")
    p.add_argument("--quiet", action="store_true", help="print only one line per day")
    p.add_argument("--symbols", type=int, help="size of the simulated market (QM_SIM_SYMBOLS)")
    p.add_argument("--hold-to-expiry", action="store_true",
                   help="turn the time exit off so positions reach expiry and settle")
    p.set_defaults(handler=_cmd_run_day)

    p = sub.add_parser("chaos", help="kill paper trading at random order-path failpoints and audit the books")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--sessions", type=int, default=4, help="sessions to replay (extended while kills are owed)")
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(handler=_cmd_chaos)

    bench = sub.add_parser("bench", help="benchmarks (print a table, then one JSON line)")
    bsub = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    p = bsub.add_parser("scan", help="indicators + gate + signals over N symbols x D days vs a TA-Lib loop")
    p.add_argument("--symbols", type=int, default=32_345)
    p.add_argument("--days", type=int, default=300)
    p.add_argument("--runs", type=int, default=5)
    p.set_defaults(handler=_cmd_bench_scan)
    p = bsub.add_parser("options", help="implied vol and greeks on N simulated quotes vs QuantLib")
    p.add_argument("--quotes", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--sample", type=int, default=20_000, help="quotes QuantLib prices for the comparison")
    p.add_argument("--american-quotes", type=int, default=100_000,
                   help="American IV on N puts and dividend calls (0: skip)")
    p.add_argument("--american-sample", type=int, default=1_000, help="American quotes QuantLib inverts")
    p.set_defaults(handler=_cmd_bench_options)
    p = bsub.add_parser("orders", help="signal -> risk gate -> paper broker acknowledgement latency")
    p.add_argument("--orders", type=int, default=1000)
    p.set_defaults(handler=_cmd_bench_orders)
    p = bsub.add_parser("data", help="Massive backfill from a local fake server: time, store size, load, cache")
    p.add_argument("--symbols", type=int, default=32_345)
    p.add_argument("--days", type=int, default=300)
    p.set_defaults(handler=_cmd_bench_data)
    p = bsub.add_parser("console", help="render every console page on a 32,345-symbol scan and 200 positions")
    p.add_argument("--symbols", type=int, default=32_345)
    p.add_argument("--positions", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    p.set_defaults(handler=_cmd_bench_console)
    p = bsub.add_parser("store", help="generate N symbols x D days on the simulated market, store and load")
    p.add_argument("--symbols", type=int, default=32_345)
    p.add_argument("--days", type=int, default=300)
    p.set_defaults(handler=_cmd_bench_store)
    from engine.backtest.cli_backtest import add_backtest_commands, add_validate_command
    from engine.backtest.cli_search import add_search_commands
    from engine.cli_ops import add_ops_commands
    from engine.data.cli_data import add_data_commands
    from engine.ibkr.cli import add_ibkr_commands
    from engine.notify.cli import add_notify_commands
    from engine.portfolio.cli_sync import add_broker_commands

    add_data_commands(sub)
    add_broker_commands(sub)
    add_backtest_commands(sub, bsub)
    add_validate_command(sub)
    add_ops_commands(sub)
    add_search_commands(sub)
    add_notify_commands(sub)
    add_ibkr_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from engine.redact import install_log_redaction, redact

    try:
        # with the settings, log lines mask every configured secret value, not only URL passwords
        install_log_redaction(get_settings())
    except SettingsError:
        install_log_redaction()  # a command that needs the settings reports the error below, masked
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 2
    except LookupError as exc:
        if type(exc) is not LookupError:  # a KeyError or IndexError is a bug: let it show
            raise
        print(redact(str(exc)), file=sys.stderr)  # e.g. "no daily bars stored ...: run `python -m engine init`"
        return 2
    except DBAPIError as exc:
        if not _missing_schema(exc):
            raise
        print(f"the database is not initialised ({redact(str(exc.orig)).splitlines()[0]}); run "
              "`python -m engine init` first (or `make run`, which does it)", file=sys.stderr)
        return 2


def _missing_schema(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


if __name__ == "__main__":
    raise SystemExit(main())

