"""``python -m engine flex download|import``, ``lots import-trades|report`` and ``sync --broker ibkr`` (through
``engine.portfolio.cli_sync``, which dispatches ``sync`` by broker name).

Registered in ``engine/cli.py`` with ``add_ibkr_commands(sub)``. Exit codes: 0 done, 1 a data error
(message printed), 2 a settings problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.config import SettingsError, get_settings

__all__ = ["add_ibkr_commands"]


def add_ibkr_commands(subparsers: Any) -> None:
    flex = subparsers.add_parser("flex", help="IBKR Flex Query statements: download or import")
    actions = flex.add_subparsers(dest="flex_command", required=True, metavar="ACTION")
    p = actions.add_parser("download", help="download the configured Flex query (QM_IBKR__FLEX_TOKEN/_QUERY_ID)")
    p.set_defaults(handler=_cmd_flex_download)
    p = actions.add_parser("import", help="import saved Flex XML statements (idempotent)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(handler=_cmd_flex_import)

    lots = subparsers.add_parser("lots", help="tax lots: import trades, report")
    lactions = lots.add_subparsers(dest="lots_command", required=True, metavar="ACTION")
    p = lactions.add_parser("import-trades", help="import a CSV date,symbol,side,quantity,price,fees")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--account", required=True, metavar="NAME")
    p.set_defaults(handler=_cmd_import_trades)
    p = lactions.add_parser("report", help="closed and open lots, realized P&L, wash sales")
    p.add_argument("--account", metavar="NAME")
    p.add_argument("--year", type=int, metavar="Y")
    p.add_argument("--json", action="store_true", help="last line: one JSON object {closed, open}")
    p.set_defaults(handler=_cmd_report)



def _db():  # type: ignore[no-untyped-def]
    from engine.db import get_engine, migrate

    settings = get_settings()
    migrate(settings.db_url)
    return get_engine(settings.db_url)


def _print_counts(counts: dict[str, dict[str, int]]) -> None:
    for kind, c in counts.items():
        print(f"  {kind:<16} {c['read']:>6} read  {c['new']:>6} new")


def _cmd_flex_download(args: argparse.Namespace) -> int:
    from engine.ibkr.flex_download import FlexDownloadError
    from engine.ibkr.sync import flex_history

    try:
        out = flex_history(get_settings())
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except FlexDownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for f in out["files"]:
        print(f"saved {f}")
    _print_counts(out["counts"])
    for w in out["warnings"]:
        print(f"  warning: {w}")
    return 0


def _cmd_flex_import(args: argparse.Namespace) -> int:
    from engine.ibkr.flex_parse import FlexFormatError, parse_flex
    from engine.ibkr.flex_store import import_statement

    db = _db()
    total: dict[str, dict[str, int]] = {}
    for path in args.files:
        try:
            data = parse_flex(Path(path))
        except (FlexFormatError, OSError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 1
        counts = import_statement(db, data)
        print(f"{path}:")
        _print_counts(counts)
        for w in data.warnings:
            print(f"  warning: {w}")
        for kind, c in counts.items():
            t = total.setdefault(kind, {"read": 0, "new": 0})
            t["read"] += c["read"]
            t["new"] += c["new"]
    if len(args.files) > 1:
        print("total:")
        _print_counts(total)
    return 0


def _cmd_import_trades(args: argparse.Namespace) -> int:
    from engine.portfolio.lots.csv_trades import CsvTradeError, import_trades_csv

    try:
        counts = import_trades_csv(_db(), args.file, args.account)
    except (CsvTradeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {counts['read']} rows read, {counts['new']} new (account {args.account})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from engine.portfolio.lots.store import rebuild_lots, report

    result = rebuild_lots(_db())
    out = report(result, account=args.account, year=args.year)
    if not args.json:
        print(f"{'symbol':<22} {'qty':>10} {'acquired':>10} {'sold':>10} {'basis':>12} {'proceeds':>12} "
              f"{'realized':>11} {'wash':>9} term")
        for r in out["closed"]:
            print(f"{r['symbol']:<22} {r['quantity']:>10} {r['acquired']:>10} {r['sold']:>10} {r['basis']:>12} "
                  f"{r['proceeds']:>12} {r['realized']:>11} {r['wash_sale_disallowed']:>9} {r['term']}")
        print(f"open lots: {len(out['open'])}")
        for r in out["open"]:
            print(f"{r['symbol']:<22} {r['quantity']:>10} {r['acquired']:>10} hp {r['holding_period_start']} "
                  f"basis {r['basis']} wash adj {r['wash_sale_adjustment']}")
        return 0
    print(json.dumps(out))
    return 0


def cmd_sync_ibkr(args: argparse.Namespace) -> int:
    """`sync --broker ibkr`: the live sync through TWS/Gateway and the Flex history from HISTORY_START."""
    from engine.execution.ports import BrokerRejected, BrokerUnavailable
    from engine.ibkr.flex_download import FlexDownloadError
    from engine.ibkr.sync import sync_ibkr

    try:
        out = sync_ibkr(get_settings(), live=not args.no_live, history=not args.no_history)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        # The usual case: TWS/Gateway not running or on another host/port. Say what to check.
        print(f"error: {exc}\n  start TWS or IB Gateway with the API enabled, or set QM_IBKR__HOST and "
              "QM_IBKR__PORT (4002 Gateway paper, 4001 Gateway live, 7497/7496 TWS); --no-live runs only "
              "the Flex history", file=sys.stderr)
        return 1
    except (BrokerRejected, FlexDownloadError, ConnectionError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, default=str))
    return 0
