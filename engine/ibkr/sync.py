"""``sync --broker ibkr``: live state through TWS/Gateway and Flex history from ``HISTORY_START``.

The Flex step downloads the configured query (its period is set in Client Portal; statements older than
``history_start`` are ignored by the lot engine only through what the query returns), imports it
idempotently and rebuilds the tax lots. The live step reads positions, account values and the day's
executions from the gateway and stores the executions as transactions, so nothing is lost between Flex
statements (which IBKR publishes once a day).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config import Settings, SettingsError


def flex_history(settings: Settings, download: Callable[[], bytes] | None = None,
                 save_dir: Path | None = None) -> dict[str, Any]:
    """Download (or take) one statement, keep a copy, import it. Returns the import counts."""
    from engine.db import get_engine, migrate
    from engine.ibkr.flex_download import FlexClient
    from engine.ibkr.flex_parse import parse_flex
    from engine.ibkr.flex_store import import_statement

    cfg = settings.ibkr
    if download is None:
        if cfg.flex_token is None or not cfg.flex_query_id:
            raise SettingsError("invalid settings:\n  ibkr.flex_token (QM_IBKR__FLEX_TOKEN) and ibkr.flex_query_id "
                                "(QM_IBKR__FLEX_QUERY_ID) are required to download Flex statements")
        client = FlexClient(cfg.flex_token, cfg.flex_query_id, base_url=cfg.flex_url)
        download = client.download
    body = download()
    directory = save_dir or settings.data_dir / "flex"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"flex_{datetime.now(UTC):%Y%m%dT%H%M%S}.xml"
    path.write_bytes(body)
    data = parse_flex(body)
    migrate(settings.db_url)
    counts = import_statement(get_engine(settings.db_url), data)
    return {"file": str(path), "counts": counts, "warnings": data.warnings, "accounts": sorted(data.accounts)}


def sync_ibkr(settings: Settings, live: bool = True, history: bool = True,
              broker: Any | None = None, download: Callable[[], bytes] | None = None) -> dict[str, Any]:
    """Live sync (positions, account, executions) and the Flex history from ``settings.ibkr.history_start``."""
    from engine.db import get_engine, migrate
    from engine.portfolio.lots.store import rebuild_lots

    out: dict[str, Any] = {"broker": "ibkr", "history_start": settings.ibkr.history_start.isoformat()}
    migrate(settings.db_url)
    db = get_engine(settings.db_url)
    if live:
        from engine.execution.brokers.ibkr import IBKRBroker, store_executions

        own = broker is None
        broker = broker or IBKRBroker.connect(settings.ibkr)
        try:
            out["positions"] = [p.__dict__ for p in broker.positions()]
            account = broker.account()
            out["account"] = {"cash": str(account.cash), "equity": str(account.equity),
                              "buying_power": str(account.buying_power)}
            out["executions_new"] = store_executions(db, broker, since=settings.ibkr.history_start)
        finally:
            if own:
                broker.close()
    if history:
        out["flex"] = flex_history(settings, download=download)
    result = rebuild_lots(db)
    out["lots"] = {"open": len(result.open_lots), "closed": len(result.closed_lots),
                   "wash_sales": len(result.wash_sales), "differences": len(result.differences)}
    return out
