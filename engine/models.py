"""SQLModel tables: the state the console and the scheduler share.

Conventions: timestamps are timezone-aware UTC; trading dates are exchange dates (America/New_York).
Money at broker boundaries (orders, fills, cash, transactions, lots) is ``Decimal`` in NUMERIC(18, 6)
columns; analytics results (scores, indicator values) are floats. Free-form detail goes in JSON columns.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Numeric, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware (UTC) on every database.

    SQLite has no time zone type: without this, an aware New York time would be stored as its wall-clock
    digits and read back as if it were UTC. Naive values are taken to be UTC already."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    """A timezone-aware timestamp column (UTC in the database)."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


def _ts_opt(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


def _money(**kw: Any) -> Any:
    return Field(default=Decimal("0"), sa_type=Numeric(18, 6, asdecimal=True), **kw)


def _money_opt(**kw: Any) -> Any:
    return Field(default=None, sa_type=Numeric(18, 6, asdecimal=True), **kw)


def _json(default: Any = None) -> Any:
    factory = (lambda: {}) if default is None else (lambda: default.copy())
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=False))


# --- reference and market data -------------------------------------------------------------------


class Instrument(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    symbol: str = Field(index=True, unique=True, max_length=32)
    name: str = ""
    sector: str = ""
    type: str = Field(default="CS", max_length=16)  # CS, ETF, WARRANT, RIGHT, UNIT, PFD, OTC...
    exchange: str = ""
    currency: str = "USD"
    active: bool = True
    tradable: bool = True  # False for types the strategy must not trade
    list_date: date | None = None
    source: str = "sim"
    updated_at: datetime = _ts()
    sic_code: str = Field(default="", max_length=8)  # Massive ticker details; sector is mapped from it
    details_at: datetime | None = _ts_opt()  # when ticker details were last fetched (None: never)
    retired_at: datetime | None = _ts_opt()  # when a nightly universe refresh found it delisted


class BarDay(SQLModel, table=True):
    """Bars metadata: one row per stored (source, trading day) partition of the bar store."""

    __table_args__ = (UniqueConstraint("source", "trade_date"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    trade_date: date = Field(index=True)
    symbols: int = 0
    stored_at: datetime = _ts()  # when the provider delivered these bars (a cached day keeps its fetch time)
    final: bool = True  # False: fetched before the provider settled the session (re-fetched once settled)


class IvHistory(SQLModel, table=True):
    """Daily at-the-money implied volatility per symbol, for IV rank and percentile."""

    __table_args__ = (UniqueConstraint("symbol", "trade_date", "source"),)
    id: int | None = Field(default=None, primary_key=True)
    symbol: str = Field(index=True, max_length=32)
    trade_date: date
    atm_iv: float
    source: str = "sim"


class DataRun(SQLModel, table=True):
    """One data job (backfill, update, scan load): requests made and cache use, for `data status`."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    source: str = Field(max_length=16)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    requests: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    days_stored: int = 0
    outcome: str = "running"
    detail: dict = _json()


# --- scans, signals, candidates ------------------------------------------------------------------


class ScanRun(SQLModel, table=True):
    __table_args__ = (Index("ix_scanrun_key", "strategy", "data_date", "params_hash", "data_source"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy: str = Field(max_length=32)
    data_source: str = Field(max_length=16)
    data_date: date
    params_hash: str = Field(max_length=64)
    params: dict = _json()
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    load_seconds: float = 0.0
    compute_seconds: float = 0.0
    store_seconds: float = 0.0
    n_scanned: int = 0
    n_excluded: int = 0
    n_signals: int = 0
    excluded_by_reason: dict = _json()
    breadth: dict = _json()  # share above SMA50, in entry zone, extended...
    cache_hits: int = 0
    cache_misses: int = 0
    status: str = "running"


class ScanResult(SQLModel, table=True):
    __table_args__ = (Index("ix_scanresult_run_rank", "scan_run_id", "rank"),)
    id: int | None = Field(default=None, primary_key=True)
    scan_run_id: int = Field(foreign_key="scanrun.id")
    rank: int
    symbol: str = Field(max_length=32, index=True)
    sector: str = ""
    close: float | None = None
    atr: float | None = None
    sma20: float | None = None
    sma50: float | None = None
    sma100: float | None = None
    sma200: float | None = None
    ema10: float | None = None
    atr_distance: float | None = None
    atr_pct: float | None = None
    ma_aligned: bool | None = None
    range_pos_20: float | None = None
    dollar_volume_20: float | None = None
    zone: str | None = None
    score: float | None = None
    signal: bool = False
    stop: float | None = None
    target_1: float | None = None
    target_2: float | None = None
    target_3: float | None = None
    target_4: float | None = None
    excluded_reason: str | None = None


class Signal(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("strategy", "symbol", "data_date", "direction"),)
    id: int | None = Field(default=None, primary_key=True)
    scan_run_id: int | None = Field(default=None, foreign_key="scanrun.id")
    strategy: str = Field(max_length=32)
    symbol: str = Field(max_length=32, index=True)
    data_date: date
    direction: str = "long"
    kind: str = "entry"  # entry | exit
    score: float = 0.0
    zone: str = ""
    entry_price: float = 0.0
    atr: float = 0.0
    stop: float = 0.0
    targets: list = _json([])
    values: dict = _json()  # every value that produced the signal, for the console and Discord
    status: str = "new"  # new | candidates_built | ordered | skipped
    created_at: datetime = _ts()


class OptionCandidate(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = Field(foreign_key="signal.id", index=True)
    symbol: str = Field(max_length=32)
    structure: str = Field(max_length=32)
    chosen: bool = False
    legs: list = _json([])
    net_mid: float = 0.0  # + debit, - credit, per share
    net_natural: float = 0.0
    max_loss: float = 0.0  # per contract, dollars
    max_profit: float | None = None
    breakevens: list = _json([])
    greeks: dict = _json()
    iv_rank: float | None = None
    contracts: int = 0
    reasons: dict = _json()
    rejected: list = _json([])  # [{"occ_symbol":..., "reason":...}]
    created_at: datetime = _ts()


# --- orders, fills, positions, accounts ----------------------------------------------------------


class Order(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(unique=True, index=True, max_length=64)
    decision_key: str = Field(default="", max_length=96, index=True)  # the decision; attempts share it
    strategy: str = Field(max_length=32)
    signal_id: int | None = Field(default=None, foreign_key="signal.id")
    candidate_id: int | None = Field(default=None, foreign_key="optioncandidate.id")
    position_id: int | None = None
    symbol: str = Field(max_length=32, index=True)  # underlying
    structure: str = Field(max_length=32)
    intent: str = Field(default="open", max_length=16)  # open | close | scale_out | roll
    legs: list = _json([])  # [{"symbol","right","strike","expiry","ratio","side"}]
    quantity: int
    limit_price: Decimal | None = _money_opt()  # per unit of the structure: + debit, - credit
    order_type: str = "limit"
    time_in_force: str = "day"
    status: str = Field(default="proposed", max_length=24, index=True)
    attempt: int = 1
    broker: str = "paper"
    broker_order_id: str | None = None
    filled_quantity: int = 0
    avg_fill_price: Decimal | None = _money_opt()
    max_loss: Decimal = _money()
    risk_per_unit: Decimal = _money()  # max loss + opening fees per unit: pending risk while unfilled
    # Per-unit economics the risk gate needs, fixed when the order is built (and by an override):
    # max_loss_per_unit, buying_power_per_unit, fees_per_unit, delta_dollars_per_unit, sector, multiplier.
    economics: dict = _json()
    reason: str = ""
    risk_decision: dict = _json()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class OrderEvent(SQLModel, table=True):
    """Append-only order lifecycle: one row per transition."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", index=True)
    client_order_id: str = Field(max_length=64)
    from_status: str | None = None
    to_status: str
    reason: str = ""
    actor: str = "engine"
    data: dict = _json()
    at: datetime = _ts()


class Fill(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    broker_fill_id: str = Field(unique=True, max_length=64)
    order_id: int = Field(foreign_key="order.id", index=True)
    client_order_id: str = Field(max_length=64)
    instrument: str = Field(max_length=32)  # stock symbol or OCC option symbol
    side: str  # buy | sell
    quantity: int
    multiplier: int = 100  # 100 for options, 1 for stock
    price: Decimal = _money()
    commission: Decimal = _money()
    fees: Decimal = _money()
    filled_at: datetime = _ts()


class Position(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    strategy: str = Field(max_length=32)
    signal_id: int | None = Field(default=None, foreign_key="signal.id")
    symbol: str = Field(max_length=32, index=True)  # underlying
    sector: str = ""
    structure: str = Field(max_length=32)
    legs: list = _json([])
    quantity: int = 0  # structures (contracts of the structure, or shares for stock)
    initial_quantity: int = 0
    entry_price: Decimal = _money()  # per unit of the structure
    underlying_entry: float = 0.0
    entry_atr: float = 0.0
    stop: float = 0.0
    targets: list = _json([])
    targets_hit: int = 0
    highest_close: float = 0.0
    max_loss: Decimal = _money()  # dollars at risk now
    initial_risk: Decimal = _money()  # dollars at risk when opened: 1R, for R multiples
    mark: Decimal | None = _money_opt()
    realized_pnl: Decimal = _money()
    unrealized_pnl: Decimal = _money()
    greeks: dict = _json()
    delta_dollars: float = 0.0  # |net delta| x underlying price, for sector exposure (set by marks)
    status: str = Field(default="open", max_length=16, index=True)
    opened_at: datetime = _ts()
    closed_at: datetime | None = _ts_opt()
    exit_reason: str | None = None


class AccountSnapshot(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    trade_date: date = Field(index=True)
    source: str = "engine"  # engine | broker
    cash: Decimal = _money()
    positions_value: Decimal = _money()
    equity: Decimal = _money()
    buying_power: Decimal = _money()
    realized_pnl_day: Decimal = _money()
    unrealized_pnl: Decimal = _money()
    open_risk: Decimal = _money()
    detail: dict = _json()


class ReconciliationRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    broker: str = "paper"
    orders_checked: int = 0
    events_applied: int = 0
    differences: list = _json([])
    ok: bool = True


# --- broker history, tax lots --------------------------------------------------------------------


class Transaction(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("broker", "account", "broker_txn_id"),)
    id: int | None = Field(default=None, primary_key=True)
    broker: str = Field(max_length=16)
    account: str = Field(max_length=32)
    broker_txn_id: str = Field(max_length=64)
    type: str = Field(max_length=32)  # trade, dividend, fee, interest, transfer, corporate_action...
    symbol: str | None = None
    underlying: str | None = None
    quantity: Decimal = _money()
    price: Decimal = _money()
    amount: Decimal = _money()
    fees: Decimal = _money()
    currency: str = "USD"
    executed_at: datetime = _ts()
    raw: dict = _json()


class TaxLot(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    broker: str = Field(max_length=16)
    account: str = Field(max_length=32)
    symbol: str = Field(max_length=32, index=True)
    method: str = "FIFO"
    open_txn_id: int | None = Field(default=None, foreign_key="transaction.id")
    open_date: date
    quantity: Decimal = _money()
    cost_basis: Decimal = _money()
    close_date: date | None = None
    proceeds: Decimal | None = _money_opt()
    realized_pnl: Decimal | None = _money_opt()
    holding_period: str | None = None  # short | long
    wash_sale: bool = False
    broker_reported_pnl: Decimal | None = _money_opt()
    # Added by revision 0008 (lot engine, DESIGN §9). A rebuild replaces every row.
    lot_key: str = Field(default="", max_length=96)
    asset: str = Field(default="stock", max_length=16)
    underlying: str | None = Field(default=None, max_length=32)
    multiplier: Decimal = Field(default=Decimal("1"), sa_type=Numeric(18, 6, asdecimal=True))
    currency: str = Field(default="USD", max_length=8)
    opening_trade_id: str | None = Field(default=None, max_length=96)
    closing_trade_id: str | None = Field(default=None, max_length=96)
    close_kind: str | None = Field(default=None, max_length=16)  # trade | expire | exercise | assign
    holding_period_start: date | None = None
    wash_sale_disallowed: Decimal = _money()
    wash_sale_adjustment: Decimal = _money()


# --- operations ----------------------------------------------------------------------------------


class JobRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=64, index=True)
    trigger: str = "schedule"  # schedule | operator | replay | startup
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    outcome: str = "running"  # running | ok | error | skipped | abandoned (its process stopped or lost the lease)
    error: str | None = None
    detail: dict = _json()


class Heartbeat(SQLModel, table=True):
    component: str = Field(primary_key=True, max_length=32)  # scheduler | console
    instance_id: str = Field(max_length=64)
    at: datetime = _ts()
    info: dict = _json()


class Lease(SQLModel, table=True):
    """A named lease (e.g. the one scheduler allowed per database); expires if its holder stops renewing."""

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=64)
    acquired_at: datetime = _ts()
    expires_at: datetime = _ts()


class NotificationOutbox(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=128)
    channel: str = Field(max_length=32, index=True)
    kind: str = Field(default="", max_length=32)
    payload: dict = _json()
    status: str = Field(default="pending", max_length=16, index=True)  # pending|sent|failed|not_configured
    attempts: int = 0
    next_attempt_at: datetime = _ts()
    last_error: str | None = None
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts_opt()


class OperatorCommand(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # approve, reject, override, kill_switch, pause_job, run_job, set_mode...
    payload: dict = _json()
    created_by: str = "operator"
    reason: str = ""
    created_at: datetime = _ts()
    status: str = Field(default="pending", max_length=16, index=True)  # pending | applied | failed
    applied_at: datetime | None = _ts_opt()
    applied_by: str | None = None
    result: str | None = None


class SettingOverride(SQLModel, table=True):
    """Operator changes to settings made from the console; validated before they are written."""

    key: str = Field(primary_key=True, max_length=64)
    value: dict = _json()  # {"value": ...}
    updated_by: str = "operator"
    updated_at: datetime = _ts()


class BacktestRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    strategy: str = Field(max_length=32)
    params: dict = _json()
    start: date
    end: date
    status: str = "running"
    metrics: dict = _json()
    created_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    # revision 0009: what the run was run on, so a result can be reproduced and compared
    mode: str = Field(default="stock", max_length=16)
    data_source: str = Field(default="sim", max_length=16)
    data_start: date | None = None  # first and last session actually in the data
    data_end: date | None = None
    n_symbols: int = 0
    code_version: str = Field(default="", max_length=64)  # git rev (+ "-dirty")
    seconds: float = 0.0
    equity: dict = _json()  # {"dates": [...], "equity": [...]}: the curve for the console
    error: str | None = None


class OperatorAuth(SQLModel, table=True):
    """The console's operator password (scrypt hash only) and its failed-login lock-out state."""

    id: int = Field(default=1, primary_key=True)
    password_hash: str | None = None
    failed_attempts: int = 0
    locked_until: datetime | None = _ts_opt()
    updated_at: datetime = _ts()


class BrokerSyncState(SQLModel, table=True):
    """One row per broker account: where the transactions sync stopped and what the last sync saw.

    ``positions`` is the broker's position list at ``last_sync_at`` (the source of external positions for
    the risk gate between syncs); ``differences`` the broker-vs-engine comparison made then."""

    __table_args__ = (UniqueConstraint("broker", "account"),)
    id: int | None = Field(default=None, primary_key=True)
    broker: str = Field(max_length=16)
    account: str = Field(max_length=32)
    environment: str = Field(default="", max_length=16)
    last_txn_id: str | None = None
    last_txn_at: datetime | None = _ts_opt()
    last_sync_at: datetime | None = _ts_opt()
    transactions_total: int = 0
    balances: dict = _json()
    positions: list = _json([])
    differences: list = _json([])


# --- lot engine and Flex history (revision 0008) ------------------------------------------------


class WashSaleRecord(SQLModel, table=True):
    """One loss sale matched to one replacement lot; rebuilt with the tax lots."""

    id: int | None = Field(default=None, primary_key=True)
    loss_account: str = Field(max_length=32)
    symbol: str = Field(max_length=32, index=True)
    sold: date
    closing_trade_id: str = Field(max_length=96)
    quantity: Decimal = _money()  # share-equivalents replaced
    disallowed: Decimal = _money()
    replacement_account: str = Field(max_length=32)
    replacement_symbol: str = Field(max_length=32)
    replacement_acquired: date
    replacement_trade_id: str = Field(max_length=96)
    replacement_lot_key: str = Field(max_length=96)


class LotPnlCheck(SQLModel, table=True):
    """Our realized P&L per closing execution next to the broker's figure; cause says why they differ."""

    id: int | None = Field(default=None, primary_key=True)
    broker: str = Field(max_length=16)
    account: str = Field(max_length=32)
    closing_trade_id: str = Field(max_length=96)
    symbol: str = Field(max_length=32)
    trade_date: date
    broker_pnl: Decimal = _money()
    our_pnl: Decimal = _money()
    difference: Decimal = _money()
    cause: str = ""


class BrokerPositionSnapshot(SQLModel, table=True):
    """A position as a broker statement reported it (IBKR Flex OpenPositions), per report date."""

    __table_args__ = (UniqueConstraint("broker", "account", "snapshot_key"),)
    id: int | None = Field(default=None, primary_key=True)
    broker: str = Field(max_length=16)
    account: str = Field(max_length=32)
    snapshot_key: str = Field(max_length=96)
    report_date: date | None = None
    symbol: str = Field(max_length=32)
    asset: str = Field(max_length=16)
    quantity: Decimal = _money()
    mark: Decimal | None = _money_opt()
    cost_basis: Decimal | None = _money_opt()
    currency: str = "USD"
    raw: dict = _json()


class BacktestTrade(SQLModel, table=True):
    """One trade of a stored backtest run (revision 0009)."""

    __table_args__ = (Index("ix_backtesttrade_run_symbol", "run_id", "symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="backtestrun.id", index=True)
    symbol: str = Field(max_length=32)
    entry_date: date
    entry_price: float
    exit_date: date | None = None
    exit_price: float | None = None
    quantity: float
    exit_reason: str = Field(max_length=32)
    entry_reason: str = Field(default="signal", max_length=64)
    stop: float | None = None
    pnl: float = 0.0
    fill_source: str = Field(default="bars", max_length=16)  # bars | eod_chain | sim_surface
    detail: dict = _json()


class LoginThrottle(SQLModel, table=True):
    """Failed console logins per client (issue 12): repeated failures slow that client down; nobody else."""

    client: str = Field(primary_key=True, max_length=128)  # the client's address as the console sees it
    failures: int = 0
    next_allowed_at: datetime | None = _ts_opt()
    updated_at: datetime = _ts()
