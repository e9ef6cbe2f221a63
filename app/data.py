"""Cached reads for the pages: thin wrappers around ``engine.queries`` with short time-to-live.

Each wrapper takes the database key first so cached results never cross databases. Live figures keep a
few seconds; immutable things (a finished scan's rows, bars of a past session) keep longer. Every write
from the console clears these caches (``app.state.refresh``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from app.state import db_key, effective, now, reader, settings
from engine import queries

LIVE = 5  # seconds: figures the scheduler changes all day
SLOW = 60


@st.cache_data(ttl=LIVE, show_spinner=False)
def _account_summary(key: str) -> dict[str, Any]:
    return queries.account_summary(reader(), effective())


def account_summary() -> dict[str, Any]:
    return _account_summary(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _account_history(key: str) -> pd.DataFrame:
    return queries.account_history(reader())


def account_history() -> pd.DataFrame:
    return _account_history(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _mode(key: str) -> dict[str, Any]:
    return queries.mode_summary(reader(), settings())


def mode() -> dict[str, Any]:
    return _mode(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _pending_count(key: str) -> int:
    return queries.pending_count(reader())


def pending_count() -> int:
    return _pending_count(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _scheduler(key: str) -> dict[str, Any]:
    return queries.scheduler_status(reader(), now())


def scheduler() -> dict[str, Any]:
    return _scheduler(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _heartbeats(key: str) -> pd.DataFrame:
    return queries.heartbeats(reader(), now())


def heartbeats() -> pd.DataFrame:
    return _heartbeats(db_key())


@st.cache_data(ttl=30, show_spinner=False)
def next_jobs() -> pd.DataFrame:
    return queries.next_jobs(now())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _last_reconciliation(key: str) -> dict[str, Any] | None:
    return queries.last_reconciliation(reader())


def last_reconciliation() -> dict[str, Any] | None:
    return _last_reconciliation(db_key())


# --- scans -------------------------------------------------------------------------------------------


@st.cache_data(ttl=LIVE, show_spinner=False)
def _latest_scan(key: str) -> dict[str, Any] | None:
    return queries.latest_scan(reader())


def latest_scan() -> dict[str, Any] | None:
    return _latest_scan(db_key())


@st.cache_data(ttl=3600, show_spinner="Loading the scan…", max_entries=4)
def _scan_results(key: str, run_id: int) -> pd.DataFrame:
    return queries.scan_results(reader(), run_id)


def scan_results(run_id: int) -> pd.DataFrame:
    """A finished scan never changes: its rows are cached by run id."""
    return _scan_results(db_key(), run_id)


@st.cache_data(ttl=600, show_spinner="Loading bars…", max_entries=64)
def _symbol_bars(key: str, symbol: str, end: date | None, params_key: str) -> pd.DataFrame:
    return queries.symbol_bars(effective(), symbol, end)


def symbol_bars(symbol: str, end: date | None) -> pd.DataFrame:
    params = effective().strategy
    return _symbol_bars(db_key(), symbol, end, f"{params.sma_fast}/{params.sma_trend}/{params.sma_slow}/"
                                               f"{params.atr_period}")


@st.cache_data(ttl=SLOW, show_spinner=False)
def _universe(key: str) -> dict[str, Any]:
    return queries.universe_summary(reader())


def universe() -> dict[str, Any]:
    return _universe(db_key())


@st.cache_data(ttl=SLOW, show_spinner=False)
def _freshness(key: str) -> dict[str, Any]:
    return queries.data_freshness(settings(), now())


def freshness() -> dict[str, Any]:
    return _freshness(db_key())


@st.cache_data(ttl=SLOW, show_spinner=False)
def _index_proxies(key: str) -> pd.DataFrame:
    return queries.index_proxies(settings())


def index_proxies() -> pd.DataFrame:
    return _index_proxies(db_key())


# --- candidates, orders ------------------------------------------------------------------------------


@st.cache_data(ttl=LIVE, show_spinner=False)
def _candidates(key: str) -> pd.DataFrame:
    return queries.candidate_list(reader())


def candidates() -> pd.DataFrame:
    return _candidates(db_key())


@st.cache_data(ttl=SLOW, show_spinner=False, max_entries=64)
def _candidate_detail(key: str, candidate_id: int) -> dict[str, Any] | None:
    return queries.candidate_detail(reader(), candidate_id)


def candidate_detail(candidate_id: int) -> dict[str, Any] | None:
    return _candidate_detail(db_key(), candidate_id)


@st.cache_data(ttl=SLOW, show_spinner=False, max_entries=64)
def _payoff(key: str, candidate_id: int, r: float) -> pd.DataFrame:
    detail = queries.candidate_detail(reader(), candidate_id)
    return queries.payoff_curve(detail, r) if detail else pd.DataFrame()


def payoff(candidate_id: int) -> pd.DataFrame:
    """Payoff at expiry and today (model) for a stored candidate; the candidate never changes."""
    return _payoff(db_key(), candidate_id, effective().risk_free_rate)


@st.cache_data(ttl=LIVE, show_spinner=False)
def _pending_orders(key: str) -> list[dict[str, Any]]:
    return queries.pending_orders(reader())


def pending_orders() -> list[dict[str, Any]]:
    return _pending_orders(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _gate_preview(key: str, order_id: int, quantity: int, limit_price: float | None) -> dict[str, Any]:
    # quantity and limit are part of the key: an override changes what the gate sees
    return queries.gate_preview(reader(), effective(), order_id, now())


def gate_preview(order: dict[str, Any]) -> dict[str, Any]:
    return _gate_preview(db_key(), int(order["id"]), int(order["quantity"]), order.get("limit_price"))


@st.cache_data(ttl=LIVE, show_spinner=False)
def _decisions(key: str) -> pd.DataFrame:
    return queries.decision_history(reader())


def decisions() -> pd.DataFrame:
    return _decisions(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _orders(key: str) -> pd.DataFrame:
    return queries.orders_frame(reader())


def orders() -> pd.DataFrame:
    return _orders(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _order_events(key: str, order_id: int) -> pd.DataFrame:
    return queries.order_events(reader(), order_id)


def order_events(order_id: int) -> pd.DataFrame:
    return _order_events(db_key(), order_id)


@st.cache_data(ttl=LIVE, show_spinner=False)
def _fills(key: str) -> pd.DataFrame:
    return queries.fills_frame(reader())


def fills() -> pd.DataFrame:
    return _fills(db_key())


# --- positions, risk ---------------------------------------------------------------------------------


@st.cache_data(ttl=LIVE, show_spinner=False)
def _open_positions(key: str) -> pd.DataFrame:
    return queries.open_positions(reader(), effective())


def open_positions() -> pd.DataFrame:
    return _open_positions(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _closed_positions(key: str) -> pd.DataFrame:
    return queries.closed_positions(reader())


def closed_positions() -> pd.DataFrame:
    return _closed_positions(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _risk(key: str) -> dict[str, Any]:
    return queries.risk_overview(reader(), effective(), now())


def risk() -> dict[str, Any]:
    return _risk(db_key())


# --- alerts, system, settings -------------------------------------------------------------------------


@st.cache_data(ttl=LIVE, show_spinner=False)
def _outbox_counts(key: str) -> pd.DataFrame:
    return queries.outbox_counts(reader())


def outbox_counts() -> pd.DataFrame:
    return _outbox_counts(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _outbox_rows(key: str, status: str | None, channel: str | None) -> pd.DataFrame:
    return queries.outbox_rows(reader(), status, channel)


def outbox_rows(status: str | None, channel: str | None) -> pd.DataFrame:
    return _outbox_rows(db_key(), status, channel)


@st.cache_data(ttl=LIVE, show_spinner=False)
def _dead_webhooks(key: str) -> list[dict[str, Any]]:
    return queries.dead_webhooks(reader())


def dead_webhooks() -> list[dict[str, Any]]:
    return _dead_webhooks(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _job_summary(key: str) -> pd.DataFrame:
    return queries.job_summary(reader())


def job_summary() -> pd.DataFrame:
    return _job_summary(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _job_runs(key: str, failures_only: bool) -> pd.DataFrame:
    return queries.job_runs(reader(), failures_only=failures_only)


def job_runs(failures_only: bool = False) -> pd.DataFrame:
    return _job_runs(db_key(), failures_only)


@st.cache_data(ttl=LIVE, show_spinner=False)
def _commands(key: str) -> pd.DataFrame:
    return queries.operator_commands(reader())


def commands() -> pd.DataFrame:
    return _commands(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _overrides(key: str) -> pd.DataFrame:
    return queries.setting_overrides(reader())


def overrides() -> pd.DataFrame:
    return _overrides(db_key())


def effective_risk_limits():  # type: ignore[no-untyped-def]
    """The risk limits in force (environment plus the operator's stored changes)."""
    return effective().risk


# --- broker (issue 14): the last sync and the shared transactions table ---------------------------------


@st.cache_data(ttl=LIVE, show_spinner=False)
def _broker_header(key: str) -> dict[str, Any]:
    from engine.queries import broker as q

    return q.header(reader(), settings())


def broker_header() -> dict[str, Any]:
    return _broker_header(db_key())


@st.cache_data(ttl=LIVE, show_spinner=False)
def _broker_overview(key: str) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    from engine.queries import broker as q

    return (q.broker_overview(reader(), settings()), q.positions_side_by_side(reader(), settings()),
            q.external_by_underlying(reader(), settings()))


def broker_overview() -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    return _broker_overview(db_key())


@st.cache_data(ttl=SLOW, show_spinner=False)
def _transactions(key: str, start: date | None, end: date | None, symbol: str, types: tuple[str, ...]
                  ) -> pd.DataFrame:
    from engine.queries import broker as q

    return q.transactions(reader(), start, end, symbol or None, list(types) or None)


def transactions(start: date | None, end: date | None, symbol: str, types: list[str]) -> pd.DataFrame:
    return _transactions(db_key(), start, end, symbol, tuple(types))


@st.cache_data(ttl=SLOW, show_spinner=False)
def _transaction_types(key: str) -> list[str]:
    from engine.queries import broker as q

    return q.transaction_types(reader())


def transaction_types() -> list[str]:
    return _transaction_types(db_key())
