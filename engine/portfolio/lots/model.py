"""The lot engine's inputs and outputs: broker-neutral values, Decimal money, signed quantities.

Cash convention: every trade has a signed *net cash* (negative when we pay, fees included). A lot keeps
the net cash of its opening (``open_cash``) and, once closed, of its closing (``close_cash``); the realized
P&L is their sum. For a long lot the basis is ``-open_cash`` and the proceeds ``close_cash``; for a short lot
(a written option, a short sale) the proceeds are ``open_cash`` and the basis ``-close_cash``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from engine.portfolio.accounting import cents

CENT = Decimal("0.01")
ZERO = Decimal("0")
NEW_YORK = ZoneInfo("America/New_York")


def trade_day(at: datetime) -> date:
    """The exchange (New York) date of a moment: an 19:30 ET after-hours fill is still that day (and that tax
    year), though it is already tomorrow in UTC."""
    return at.astimezone(NEW_YORK).date() if at.tzinfo is not None else at.date()


class Asset(StrEnum):
    stock = "stock"
    option = "option"
    other = "other"  # futures, warrants, bonds, CFDs: lots and P&L, no wash-sale matching


class CloseKind(StrEnum):
    trade = "trade"
    expire = "expire"  # option expired worthless: a sale (or buy-to-close) at zero on the expiry date
    exercise = "exercise"  # we exercised a long option
    assign = "assign"  # our short option was assigned


@dataclass(frozen=True)
class Instrument:
    symbol: str  # ticker, or OCC option symbol as the broker spells it
    asset: Asset = Asset.stock
    underlying: str = ""  # the stock an option is on; the ticker itself for a stock
    multiplier: Decimal = Decimal(1)
    right: str | None = None  # C | P
    strike: Decimal | None = None
    expiry: date | None = None

    @property
    def base(self) -> str:
        return self.underlying or self.symbol


@dataclass(frozen=True)
class LotPick:
    """A broker-reported lot closed by a sale (IBKR ``Lot`` rows): which opening and how much."""

    opened: date
    quantity: Decimal  # units closed from that lot, positive


@dataclass(frozen=True)
class TradeEvent:
    account: str
    instrument: Instrument
    at: datetime
    quantity: Decimal  # signed: + buy, - sell (units: shares or contracts)
    price: Decimal  # per share / per option share
    fees: Decimal = ZERO  # commissions and fees for the whole row, positive = paid
    trade_id: str = ""
    currency: str = "USD"
    gross: Decimal | None = None  # signed cash before fees when the broker states it (bonds: % of par)
    kind: CloseKind = CloseKind.trade
    closes_only: bool = False  # the broker says this closes (IBKR openCloseIndicator C): never opens a lot
    side_from_position: bool = False  # an expiry/removal with no side: it closes whatever is open
    lot_ids: tuple[str, ...] = ()  # specific identification: opening trade ids, in the order to use them
    lot_picks: tuple[LotPick, ...] = ()  # the broker's own lot choice
    delivery: TradeEvent | None = None  # exercise/assignment: the stock bought or sold at the strike
    broker_pnl: Decimal | None = None  # the broker's realized P&L for this execution, when reported
    txn_id: int | None = None  # our Transaction row
    broker: str = ""  # ibkr | tastytrade | csv | paper: which feed the row came from

    @property
    def net_cash(self) -> Decimal:
        gross = self.gross if self.gross is not None else -self.quantity * self.price * self.instrument.multiplier
        return gross - self.fees


@dataclass(frozen=True)
class SplitEvent:
    symbol: str
    at: datetime
    ratio: Decimal | None  # new shares per old share (2 for a 2-for-1, 0.04 for a 1-for-25)
    account: str | None = None  # None: every account holding the symbol
    delta: Decimal | None = None  # when the ratio is not stated: shares added (+) or removed (-) in total


@dataclass(frozen=True)
class RenameEvent:
    """A symbol change that is not a disposal (CUSIP/ISIN change, 1-for-1 tender exchange): lots move to
    the new symbol with their basis and acquisition dates, ``ratio`` new shares per old share."""

    account: str
    old: str
    new: str
    at: datetime
    ratio: Decimal = Decimal(1)


@dataclass(frozen=True)
class BrokerFigure:
    """A row with a broker-reported realized P&L that changes no lot (a currency conversion, a cancelled
    execution, a corporate action not applied as a disposal): listed among the differences with its cause."""

    account: str
    trade_id: str
    symbol: str
    at: datetime
    broker_pnl: Decimal
    cause: str


@dataclass
class Lot:
    """One piece of an acquisition: open, or closed by one closing execution."""

    lot_id: str
    account: str
    instrument: Instrument
    quantity: Decimal  # signed at opening: + long, - short; current units (after splits)
    acquired_at: datetime
    open_cash: Decimal
    opening_trade_id: str
    currency: str = "USD"
    open_txn_id: int | None = None
    # The acquisition's identity within one run (its first lot id): trade ids repeat across accounts and
    # CSV files (row numbers), so "the same purchase" is decided by this, never by opening_trade_id.
    origin: str = ""
    holding_period_start: date | None = None  # tacked by a wash sale; else the acquisition date
    wash_sale_adjustment: Decimal = ZERO  # disallowed loss added to this lot's basis
    closed_at: datetime | None = None
    close_cash: Decimal | None = None
    closing_trade_id: str | None = None
    close_origin: str | None = None  # the closing execution's identity within one run (see ``origin``)
    close_kind: CloseKind | None = None
    wash_sale_disallowed: Decimal = ZERO  # of this lot's own loss
    replacement_used: Decimal = ZERO  # share-equivalents of this lot already used as a replacement
    fees: Decimal = ZERO  # commissions and fees inside open_cash and close_cash (for the broker comparison)
    broker: str = ""
    method: str = "FIFO"  # how the closing execution chose this lot: FIFO | broker | specific

    @property
    def acquired(self) -> date:
        return trade_day(self.acquired_at)

    @property
    def sold(self) -> date | None:
        return None if self.closed_at is None else trade_day(self.closed_at)

    @property
    def is_long(self) -> bool:
        return self.quantity > 0

    @property
    def share_equivalents(self) -> Decimal:
        return abs(self.quantity) * self.instrument.multiplier

    @property
    def basis(self) -> Decimal:
        if self.is_long:
            return -self.open_cash + self.wash_sale_adjustment
        return ZERO if self.close_cash is None else -self.close_cash

    @property
    def proceeds(self) -> Decimal | None:
        if self.is_long:
            return self.close_cash
        return self.open_cash

    @property
    def realized(self) -> Decimal | None:
        """Proceeds - basis, fees included, before any wash-sale disallowance."""
        if self.close_cash is None:
            return None
        return self.open_cash + self.close_cash - self.wash_sale_adjustment

    @property
    def term(self) -> str | None:
        if self.closed_at is None:
            return None
        if not self.is_long:
            return "short"  # written options and short sales: short-term (Pub 550)
        start = self.holding_period_start or self.acquired
        return "long" if trade_day(self.closed_at) > _anniversary(start) else "short"


def _anniversary(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


@dataclass(frozen=True)
class WashSale:
    loss_lot_id: str
    loss_account: str
    symbol: str
    sold: date
    closing_trade_id: str
    quantity: Decimal  # share-equivalents of the loss sale replaced
    disallowed: Decimal
    replacement_lot_id: str
    replacement_account: str
    replacement_symbol: str
    replacement_acquired: date
    replacement_trade_id: str


@dataclass(frozen=True)
class PnlDifference:
    account: str
    closing_trade_id: str
    symbol: str
    day: date
    broker_pnl: Decimal
    our_pnl: Decimal
    cause: str

    @property
    def difference(self) -> Decimal:
        return self.our_pnl - self.broker_pnl


@dataclass
class LotResult:
    lots: list[Lot] = field(default_factory=list)
    wash_sales: list[WashSale] = field(default_factory=list)
    checks: list[PnlDifference] = field(default_factory=list)  # every closing execution with a broker figure
    unmatched: list[tuple[TradeEvent, Decimal]] = field(default_factory=list)  # closes with no lot to close
    notes: list[str] = field(default_factory=list)

    @property
    def open_lots(self) -> list[Lot]:
        return [lot for lot in self.lots if lot.closed_at is None]

    @property
    def closed_lots(self) -> list[Lot]:
        return [lot for lot in self.lots if lot.closed_at is not None]

    @property
    def differences(self) -> list[PnlDifference]:
        return [c for c in self.checks if cents(c.difference) != ZERO or c.cause]

    @property
    def matches(self) -> list[PnlDifference]:
        return [c for c in self.checks if cents(c.difference) == ZERO and not c.cause]
