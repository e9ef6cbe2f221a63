"""`python -m engine data backfill|update|iv-backfill|status`: keep the bar store filled from the configured source.

Wire into ``engine/cli.py`` with ``add_data_commands(sub)`` on the top-level subparsers. Each handler
returns the process exit code: 0 done, 1 a data error (message printed), 2 a settings or API-key
problem, 130 interrupted (everything fetched so far is kept; run the command again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.config import DataSource, Settings, SettingsError, get_settings

__all__ = ["add_data_commands"]


def add_data_commands(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="market data: backfill, update, status")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = actions.add_parser(
        "backfill", help="fetch the daily bars of the last N sessions the store lacks (resumable)"
    )
    p.add_argument("--days", type=int, default=504, help="sessions of history (default 504 = 2 years; max 3780)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_backfill)

    p = actions.add_parser("update", help="fetch the sessions since the newest stored one, then check splits")
    p.add_argument("--no-splits", action="store_true", help="skip the split check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_update)

    p = actions.add_parser("iv-backfill", help="Massive: daily 30-day ATM IV from historical option aggregates")
    p.add_argument("--days", type=int, default=60, help="sessions to backfill (default 60; max 504)")
    p.add_argument("--symbols", nargs="+", metavar="SYMBOL",
                   help="default: held symbols and those signalled in the last 30 days")
    p.add_argument("--max-requests", type=int, default=300,
                   help="request budget of this run (default 300: an hour on the free plan)")
    p.add_argument("--quiet", action="store_true", help="accepted for symmetry; prints one JSON line")
    p.set_defaults(handler=_cmd_iv_backfill)

    p = actions.add_parser("status", help="coverage, gaps, requests and cache hit rate")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(handler=_cmd_status)


def _cmd_backfill(args: argparse.Namespace) -> int:
    return _run(args, "backfill")


def _cmd_update(args: argparse.Namespace) -> int:
    return _run(args, "update")


def _cmd_status(args: argparse.Namespace) -> int:
    from engine.data.status import data_status, format_status

    status = data_status(get_settings())
    print(json.dumps(status, default=str) if args.json else format_status(status))
    return 0


def _cmd_iv_backfill(args: argparse.Namespace) -> int:
    return _run(args, "iv-backfill")


def _iv_backfill_symbols(settings: Settings) -> list[str]:
    from datetime import date, timedelta

    from sqlmodel import select

    from engine.db import get_engine, read_scope
    from engine.models import Position, Signal

    with read_scope(get_engine(settings.db_url)) as session:
        held = session.exec(select(Position.symbol).where(Position.status == "open")).all()
        since = date.today() - timedelta(days=30)
        signalled = session.exec(select(Signal.symbol).where(Signal.data_date >= since)).all()
    return sorted(set(held) | set(signalled))


def _run(args: argparse.Namespace, action: str) -> int:
    from engine.data.ratelimit import DataSourceAuthError, DataSourceError
    from engine.db import migrate
    from engine.progress import ProgressBar

    settings = get_settings()
    progress = None if args.quiet else ProgressBar(f"{action} daily bars", 1)
    try:
        migrate(settings.db_url)
        if action == "iv-backfill" and settings.data_source is not DataSource.massive:
            raise SettingsError(f"iv-backfill needs QM_DATA_SOURCE=massive, got {settings.data_source.value!r}")
        if settings.data_source is DataSource.massive:
            result = _run_massive(settings, action, args, progress)
        else:
            result = _run_other(settings, action, args, progress)
    except (SettingsError, DataSourceAuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataSourceError as exc:
        print(f"error: {exc}\nEverything fetched so far is stored; run the command again to resume.", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything fetched so far is stored; run the command again to resume.", file=sys.stderr)
        return 130
    print(json.dumps(result, default=str))
    return 0


def _run_massive(settings: Settings, action: str, args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from engine.data.massive import MassiveMarketData

    market = MassiveMarketData.from_settings(settings)
    if action == "iv-backfill":
        from dataclasses import asdict

        from engine.data.massive_ivbackfill import iv_backfill

        symbols = [s.upper() for s in args.symbols] if args.symbols else _iv_backfill_symbols(settings)
        out = iv_backfill(market, symbols, args.days, args.max_requests, settings.risk_free_rate)
        return {"kind": action, **asdict(out)}
    if action == "backfill":
        report = market.backfill(days=args.days, progress=progress)
    else:
        report = market.update(progress=progress, splits=not args.no_splits)
    return report.as_dict()


def _run_other(settings: Settings, action: str, args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """Sources without requests to save (sim, csv): fill the store from the source in chunks."""
    from datetime import datetime

    from engine.data import calendar
    from engine.data.massive import NEW_YORK, last_completed_session
    from engine.data.sources import bar_store, fill_bar_store, get_market_data

    market = get_market_data(settings)
    store = bar_store(settings)
    end = last_completed_session(datetime.now(NEW_YORK))
    if action == "backfill":
        start = calendar.sessions_back(end, args.days)[0].astype(object)
    else:
        have = store.stored_dates()
        start = calendar.next_session(have[-1]) if len(have) else calendar.sessions_back(end, 504)[0].astype(object)
    written = fill_bar_store(market, store, start, end, progress=progress) if start <= end else 0
    return {"kind": action, "source": settings.data_source.value, "first": str(start), "last": str(end),
            "sessions_written": written}
