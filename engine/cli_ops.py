"""Operator commands that never depend on the console: ``operator set-password`` and ``kill-switch on|off``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from typing import Any

PASSWORD_ENV = "QM_NEW_OPERATOR_PASSWORD"  # non-interactive set-password (scripts); never echoed


def add_ops_commands(subparsers: Any) -> None:
    op = subparsers.add_parser("operator", help="operator account: set the console password")
    actions = op.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    p = actions.add_parser("set-password", help="set the console's operator password (prompted, or "
                                                f"from {PASSWORD_ENV}); only its scrypt hash is stored")
    p.add_argument("--replace", action="store_true", help="change a password that is already set")
    p.set_defaults(handler=_cmd_set_password)

    p = subparsers.add_parser("kill-switch", help="turn the kill switch on or off (no new entries while on)")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("--reason", default="", help="recorded with the change")
    p.set_defaults(handler=_cmd_kill_switch)


def _engine():  # type: ignore[no-untyped-def]
    from engine.config import get_settings
    from engine.db import get_engine, migrate

    url = get_settings().db_url
    migrate(url)  # works on a data folder that was never initialised
    return get_engine(url)


def _cmd_set_password(args: argparse.Namespace) -> int:
    from engine import auth

    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            print(f"no terminal to prompt on: set {PASSWORD_ENV} for a non-interactive run", file=sys.stderr)
            return 2
        password = getpass.getpass("New operator password: ")
        if getpass.getpass("Repeat it: ") != password:
            print("the two passwords differ; nothing changed", file=sys.stderr)
            return 2
    try:
        auth.set_password(_engine(), password, replace=args.replace)
    except (ValueError, PermissionError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print("operator password set (only its hash is stored)")
    return 0


def _cmd_kill_switch(args: argparse.Namespace) -> int:
    from engine.db import session_scope
    from engine.operator import kill_switch_on, set_kill_switch

    on = args.state == "on"
    engine = _engine()
    actor = f"cli:{getpass.getuser()}" + (f" ({args.reason})" if args.reason else "")
    with session_scope(engine) as session:
        set_kill_switch(session, on, actor[:64], datetime.now(UTC))
    with session_scope(engine) as session:
        now_on = kill_switch_on(session)
    print(f"kill switch {'ON: no new entries pass the risk gate' if now_on else 'OFF: entries allowed again'}")
    return 0
