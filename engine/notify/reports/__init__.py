"""Discord reports built from what the engine stored: pure reads of the database, never placeholder text.

Every builder takes an open ``Session`` (plus settings and the market time ``now``) and returns
:class:`Report` objects: a channel, a deterministic idempotency key and the :class:`Message`. Nothing here
writes; :func:`engine.notify.hooks.after_job` decides which reports a job produces and enqueues them.

Reports, channels and keys (built after which job):

- Morning Brew: ``morning_brew``, ``morning_brew:<date>`` (premarket)
- entry signal: ``signals``, ``signal:<signal id>``; beyond the best 25 of a day one list,
  ``signals-more:<scan date>`` (premarket)
- exit order: ``signals``, ``exit-order:<client order id>`` (every job: a sweep of the last days)
- fill: ``portfolio``, ``fill:<broker fill id>`` (every job)
- scale-out: ``portfolio``, ``scale-out:<client order id>`` (every job)
- stop hit / position closed: ``portfolio``, ``closed:<position id>`` (every job)
- portfolio digest: ``portfolio``, ``digest:<date>`` (postmarket)
- post-market report: ``morning_brew``, ``postmarket:<date>`` (postmarket)
- health check: ``system_status``, ``health:<date>`` (postmarket, always) and ``health-nightly:<date>``
  (nightly, only when a check fails)

The post-market report goes to ``morning_brew``: it is the evening half of the daily briefing (the day's
activity and tomorrow's plan), while ``portfolio`` carries the numbers (fills, closes, the digest).

Formatting: money ``$1,234.56`` (``+$``/``-$`` for P&L), changes as signed percents (``+1.23%``), shares of
a whole (breadth, heat) as plain percents (``57.7%``), dates ISO, times America/New_York ("ET"). Colours:
green for gains, red for losses and problems, blue for information, orange for exits.

Timestamps come back timezone-aware (UTC) from every database (engine.models.UTCDateTime).
"""

from __future__ import annotations

from engine.notify.reports.activity import (  # noqa: F401
    closed_positions,
    entry_price,
    exit_order,
    exit_orders,
    fill_report,
    fills,
    last_reported_fill_id,
    position_closed,
    position_r,
    scale_out,
    scale_outs,
)
from engine.notify.reports.briefing import (  # noqa: F401
    _check,
    _signal_order,
    breadth_text,
    entry_signal,
    entry_signals,
    morning_brew,
    proxy_line,
    risk_text,
    setup_fields,
    signal_reasons,
)
from engine.notify.reports.digest import (  # noqa: F401
    Drawdown,
    TradeStats,
    _failing_filters,
    _greek,
    drawdown,
    last_reason,
    plan_candidates,
    plan_text,
    portfolio_digest,
    position_line,
    postmarket_report,
    stats_text,
    trade_stats,
)
from engine.notify.reports.format import (  # noqa: F401
    ATTENTION_ATR,
    ATTENTION_DTE,
    HEARTBEAT_STALE,
    INDEX_PROXIES,
    PLAN_ABOVE,
    PLAN_BELOW,
    SIGNAL_LIST_MAX,
    SIGNAL_MESSAGES,
    STOP_CODES,
    SWEEP_LOOKBACK,
    TOP_LIST,
    TOP_POSITIONS,
    TOP_SETUPS,
    Report,
    _day_bounds,
    _dec,
    _lines,
    _ny_date,
    big_money,
    duration,
    hhmm,
    market_date,
    money,
    net,
    occ,
    open_line,
    plural,
    pnl_color,
    price,
    r_multiple,
    session_line,
    share,
    signed_pct,
)
from engine.notify.reports.health import (  # noqa: F401
    Check,
    _run_times,
    freshness_check,
    health_report,
    heartbeat_check,
    job_check,
    reconciliation_check,
)
from engine.notify.reports.reads import (  # noqa: F401
    attention_items,
    candidate_text,
    chosen_candidate,
    entry_order,
    exit_kind,
    levels_text,
    open_positions,
    order_text,
    reason_codes,
    scan_for_day,
    scan_rows,
    strategy_params,
)
from engine.readings import latest_scan, latest_snapshot  # noqa: F401  (callers read them here)
