"""`python -m engine sync --broker NAME [--json]` and `python -m engine broker preview ...` (issue 14).

Wire into ``engine/cli.py`` with ``add_broker_commands(sub)``. ``sync`` dispatches by broker name through
``SYNC_BUILDERS`` (each builds a ``SyncableBroker`` from settings), so another broker plugs in with one
``register_sync_broker(name, builder)``. Exit codes: 0 done, 1 a broker error, 2 a settings problem.
The last line printed is one JSON object when ``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.config import Settings, SettingsError, get_settings

__all__ = ["SYNC_BUILDERS", "add_broker_commands", "register_sync_broker"]


def _tastytrade(settings: Settings) -> Any:
    from engine.execution.brokers.tastytrade_factory import build_tastytrade

    return build_tastytrade(settings)


SYNC_BUILDERS: dict[str, Callable[[Settings], Any]] = {"tastytrade": _tastytrade}


def register_sync_broker(name: str, builder: Callable[[Settings], Any]) -> None:
    SYNC_BUILDERS[name] = builder


def add_broker_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("sync", help="sync a broker account: positions, balances, transactions")
    p.add_argument("--broker", required=True, help=f"broker name ({', '.join(sorted({*SYNC_BUILDERS, 'ibkr'}))})")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.add_argument("--no-live", action="store_true", help="ibkr: skip TWS/Gateway (Flex history only)")
    p.add_argument("--no-history", action="store_true", help="ibkr: skip the Flex download")
    p.set_defaults(handler=_cmd_sync)

    broker = subparsers.add_parser("broker", help="broker tools")
    actions = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    p = actions.add_parser("preview", help="the broker's dry run of one order: buying-power effect and fees")
    p.add_argument("--symbol", required=True, help="OCC option symbol (padded root, e.g. 'SPY   261218C00600000') "
                                                   "or a stock symbol")
    p.add_argument("--side", required=True, choices=["buy", "sell"])
    p.add_argument("--quantity", required=True, type=int)
    p.add_argument("--limit", required=True, help="limit price per share, positive (a sell receives at least it)")
    p.add_argument("--close", action="store_true", help="the order closes a position (default: opens one)")
    p.add_argument("--tif", default="day", choices=["day", "gtc"])
    p.add_argument("--broker", default=None, help="broker name (default: QM_BROKER)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(handler=_cmd_preview)


def _build(name: str, settings: Settings) -> Any:
    builder = SYNC_BUILDERS.get(name)
    if builder is None:
        raise SettingsError(f"invalid settings:\n  --broker = {name!r}: no sync for this broker; "
                            f"choose one of {sorted(SYNC_BUILDERS)}")
    return builder(settings)


def _close(broker: Any) -> None:
    close = getattr(broker, "close", None)
    if close is not None:
        close()


def _cmd_sync(args: argparse.Namespace) -> int:
    from engine.db import get_engine, migrate
    from engine.execution.ports import BrokerRejected, BrokerUnavailable
    from engine.portfolio.sync import sync

    if args.broker == "ibkr":  # live sync plus the Flex statement history (issue 15)
        from engine.ibkr.cli import cmd_sync_ibkr

        return cmd_sync_ibkr(args)
    settings = get_settings()
    try:
        broker = _build(args.broker, settings)
    except (BrokerUnavailable, BrokerRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        migrate(settings.db_url)
        report = sync(get_engine(settings.db_url), broker, datetime.now(UTC))
    except (BrokerUnavailable, BrokerRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        _close(broker)
    out = report.to_json()
    print(f"{report.broker} {report.environment} account {report.account}: {len(report.positions)} positions, "
          f"net liq ${report.balances.net_liquidating_value:,.2f}, cash ${report.balances.cash_balance:,.2f}, "
          f"buying power ${report.balances.buying_power:,.2f}, {report.transactions_new} new transactions, "
          f"{len(report.differences)} differences")
    for d in report.differences:
        print(f"  {d['kind']}: {d['instrument'].strip()} engine {d['engine']:+d} broker {d['broker']:+d}")
    if args.json:
        print(json.dumps(out, default=str))
    return 0


def preview_order(symbol: str, side: str, quantity: int, limit: str, close: bool = False,
                  time_in_force: str = "day") -> Any:
    """The ProposedOrder a one-leg preview asks about, validated with errors that name the flag."""
    from engine.execution.ports import AssetType, Leg, Side
    from engine.options.occ import parse_occ
    from engine.risk import Intent, ProposedOrder

    if quantity < 1:
        raise ValueError(f"--quantity must be at least 1, got {quantity}")
    try:
        price = Decimal(limit)
    except InvalidOperation:
        raise ValueError(f"--limit must be a price, got {limit!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"--limit must be a positive price per share, got {limit!r}")
    try:
        occ = parse_occ(symbol)
        leg = Leg(symbol if len(symbol) == 21 else occ.occ, Side(side), 1, AssetType.option, occ.root, occ.right,
                  occ.strike, occ.expiry)
    except ValueError:
        if " " in symbol.strip() or not symbol.strip():
            raise ValueError(f"--symbol {symbol!r} is neither an OCC option symbol nor a stock symbol") from None
        leg = Leg(symbol.strip().upper(), Side(side), 1, AssetType.stock, symbol.strip().upper())
    net = price if leg.side is Side.buy else -price  # the engine's convention: + debit, - credit
    return ProposedOrder(client_order_id=f"preview-{datetime.now(UTC):%Y%m%d%H%M%S}", underlying=leg.underlying,
                         sector="", intent=Intent.close if close else Intent.open, legs=(leg,), quantity=quantity,
                         limit_price=net, max_loss_per_unit=Decimal(0), buying_power_per_unit=Decimal(0),
                         time_in_force=time_in_force)


def _cmd_preview(args: argparse.Namespace) -> int:
    from engine.execution.brokers.tastytrade_orders import derive_price_effect
    from engine.execution.ports import BrokerRejected, BrokerUnavailable, PreviewingBroker

    settings = get_settings()
    name = args.broker or settings.broker.value
    try:
        order = preview_order(args.symbol, args.side, args.quantity, args.limit, args.close, args.tif)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        broker = _build(name, settings)
    except (BrokerUnavailable, BrokerRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if not isinstance(broker, PreviewingBroker):
            print(f"error: broker {name!r} has no dry run", file=sys.stderr)
            return 2
        preview = broker.preview(order)
    except (BrokerUnavailable, BrokerRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        _close(broker)
    effect = derive_price_effect(order.legs)
    out = {"broker": name, "account": getattr(broker, "account_number", ""), "symbol": args.symbol,
           "side": args.side, "quantity": args.quantity, "limit": float(Decimal(args.limit)),
           "price_effect": effect.value if effect is not None else None,
           "buying_power_effect": float(preview.buying_power_effect), "fees": float(preview.fees),
           "errors": list(preview.errors), "warnings": list(preview.warnings)}
    verdict = "REFUSED: " + "; ".join(preview.errors) if preview.errors else "accepted"
    print(f"{name} dry run of {args.side} {args.quantity} {args.symbol.strip()} at {args.limit}: buying power "
          f"${preview.buying_power_effect:,.2f}, fees ${preview.fees:,.2f}, {verdict}")
    if args.json:
        print(json.dumps(out))
    return 0
