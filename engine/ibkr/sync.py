"""``sync --broker ibkr``: live state through TWS/Gateway and Flex history from ``HISTORY_START``.

The Flex step downloads the configured Activity query from ``history_start`` (or a week before the newest
stored trade) to yesterday in windows of at most 365 days, imports each statement idempotently and
rebuilds the tax lots. The live step is the shared broker sync (``engine.portfolio.sync``): positions,
balances and differences into ``BrokerSyncState`` (the Broker page, external risk, adoption) and the
day's executions as transactions, so nothing is lost between Flex statements (published once a day).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.config import Settings, SettingsError

OVERLAP_DAYS = 7  # re-read the last week each run: late corrections and cancellations land there


def _resume_from(db: Any, start: date) -> date:
    """Where the incremental download starts: the history start, or a week before the newest stored trade."""
    from sqlmodel import Session, func, select

    from engine.models import Transaction

    with Session(db) as session:
        newest = session.exec(select(func.max(Transaction.executed_at)).where(
            Transaction.broker == "ibkr", Transaction.type == "trade")).one()
    if newest is None:
        return start
    return max(start, newest.date() - timedelta(days=OVERLAP_DAYS))


def flex_history(settings: Settings, download: Callable[[], bytes] | None = None,
                 save_dir: Path | None = None, today: date | None = None) -> dict[str, Any]:
    """Download the Flex history from ``QM_IBKR__HISTORY_START`` (in windows of at most 365 days, resuming a
    week before the newest stored trade), keep a copy of each statement, import each idempotently.
    ``download`` replaces the web service with a function returning one statement (tests, imports)."""
    from engine.db import get_engine, migrate
    from engine.ibkr.flex_download import NOT_AVAILABLE, FlexClient, FlexDownloadError, history_windows
    from engine.ibkr.flex_parse import parse_flex
    from engine.ibkr.flex_store import import_statement

    cfg = settings.ibkr
    migrate(settings.db_url)
    db = get_engine(settings.db_url)
    bodies: list[tuple[str, Callable[[], bytes]]] = []
    if download is not None:
        bodies.append(("statement", download))
    else:
        if cfg.flex_token is None or not cfg.flex_query_id:
            raise SettingsError("invalid settings:\n  ibkr.flex_token (QM_IBKR__FLEX_TOKEN) and ibkr.flex_query_id "
                                "(QM_IBKR__FLEX_QUERY_ID) are required to download Flex statements")
        client = FlexClient(cfg.flex_token, cfg.flex_query_id, base_url=cfg.flex_url)
        end = (today or datetime.now(UTC).date()) - timedelta(days=1)  # today's statement is not final yet
        for lo, hi in history_windows(_resume_from(db, cfg.history_start), end):
            bodies.append((f"{lo:%Y%m%d}-{hi:%Y%m%d}", lambda lo=lo, hi=hi: client.download(lo, hi)))
    directory = save_dir or settings.data_dir / "flex"
    directory.mkdir(parents=True, exist_ok=True)
    files, warnings, accounts = [], [], set()
    totals: dict[str, dict[str, int]] = {}
    for label, fetch in bodies:
        try:
            body = fetch()
        except FlexDownloadError as exc:
            if exc.code == NOT_AVAILABLE:
                continue  # a window before the account existed
            raise
        path = directory / f"flex_{label}_{datetime.now(UTC):%Y%m%dT%H%M%S}.xml"
        path.write_bytes(body)
        files.append(str(path))
        data = parse_flex(body)
        warnings += data.warnings
        accounts |= data.accounts
        for kind, c in import_statement(db, data).items():
            t = totals.setdefault(kind, {"read": 0, "new": 0})
            t["read"] += c["read"]
            t["new"] += c["new"]
    return {"files": files, "file": files[-1] if files else None, "counts": totals, "warnings": warnings,
            "accounts": sorted(accounts)}


def sync_ibkr(settings: Settings, live: bool = True, history: bool = True,
              broker: Any | None = None, download: Callable[[], bytes] | None = None) -> dict[str, Any]:
    """Live sync (positions, account, executions) and the Flex history from ``settings.ibkr.history_start``."""
    from engine.db import get_engine, migrate
    from engine.portfolio.lots.store import rebuild_lots

    out: dict[str, Any] = {"broker": "ibkr", "history_start": settings.ibkr.history_start.isoformat()}
    migrate(settings.db_url)
    db = get_engine(settings.db_url)
    if live:
        from engine.execution.brokers.ibkr import IBKRBroker
        from engine.portfolio.sync import sync

        own = broker is None
        broker = broker or IBKRBroker.connect(settings.ibkr)
        try:
            # The shared sync (as for tastytrade): positions, balances and differences into BrokerSyncState,
            # the session's executions into the Transaction table; the history comes from Flex below.
            report = sync(db, broker, datetime.now(UTC))
        finally:
            if own:
                broker.close()
        out["environment"], out["account_number"] = report.environment, report.account
        out["positions"] = [p.__dict__ for p in report.positions]
        b = report.balances
        out["account"] = {"cash": str(b.cash_balance), "equity": str(b.net_liquidating_value),
                          "buying_power": str(b.buying_power)}
        out["executions_new"] = report.transactions_new
        out["differences"] = report.differences
    if history:
        out["flex"] = flex_history(settings, download=download)
    result = rebuild_lots(db)
    out["lots"] = {"open": len(result.open_lots), "closed": len(result.closed_lots),
                   "wash_sales": len(result.wash_sales), "differences": len(result.differences)}
    return out
