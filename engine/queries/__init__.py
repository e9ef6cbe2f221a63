"""Read-only queries the console and reports use. No trading logic lives here, only reads.

Every function takes the database engine (and settings where it needs them) and returns plain values:
dicts, lists and DataFrames of floats, strings and dates, so the console can cache them. Money comes
back as float dollars (the console only displays it); times as timezone-aware UTC datetimes. The
functions live in one module per page family; this package re-exports them.
"""

from __future__ import annotations

from engine.queries.account import (  # noqa: F401
    account_history,
    account_summary,
    last_reconciliation,
    latest_snapshot,
    mode_summary,
)
from engine.queries.candidates import (  # noqa: F401
    candidate_detail,
    candidate_list,
    candidate_structure,
    payoff_curve,
    rejected_frame,
    rejection_rule,
)
from engine.queries.orders import (  # noqa: F401
    DECISION_ACTORS_EXCLUDED,
    ORDER_COLUMNS,
    _order_row,
    decision_history,
    fills_frame,
    gate_preview,
    order_events,
    order_status_counts,
    orders_frame,
    pending_count,
    pending_orders,
)
from engine.queries.positions import (  # noqa: F401
    CLOSED_COLUMNS,
    POSITION_COLUMNS,
    _legs_text,
    _nearest_expiry,
    closed_positions,
    next_action,
    open_positions,
    trade_stats,
)
from engine.queries.risk import (  # noqa: F401
    risk_overview,
)
from engine.queries.scanner import (  # noqa: F401
    INDEX_PROXIES,
    SCAN_COLUMNS,
    index_proxies,
    latest_scan,
    scan_results,
    symbol_bars,
    symbol_setup,
)
from engine.queries.settings import (  # noqa: F401
    LIVE_CREDENTIALS,
    _live_adapter_available,
    _range_text,
    live_mode_status,
    setting_overrides,
    settings_fields,
)
from engine.queries.system import (  # noqa: F401
    bar_coverage,
    data_freshness,
    dead_webhooks,
    heartbeats,
    job_runs,
    job_summary,
    next_jobs,
    operator_commands,
    outbox_counts,
    outbox_rows,
    scheduler_alive,
    scheduler_status,
    universe_summary,
)
