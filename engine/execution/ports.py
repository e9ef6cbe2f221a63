"""The Broker port and the values that cross it.

Price convention for every order, whatever its legs: the *net debit per unit* of the structure, in
dollars per share (option premiums as quoted). Positive = we pay, negative = we receive a credit.
A limit price is the most we are willing to pay per unit: an order fills only at a net price <= limit.
So "buy a call, limit 2.40" pays at most 2.40; "sell that call, limit -2.10" receives at least 2.10.

A broker only ever receives a ``GatePass``: the risk gate is the only code that can create one
(see engine.risk), so no order can reach a broker without having passed the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.risk import GatePass, ProposedOrder

OPTION_MULTIPLIER = 100  # dollars per point of premium and of strike, for every listed equity option
STANDARD_DELIVERABLE = 100  # shares one standard contract delivers; an OCC-adjusted contract delivers another


class Side(StrEnum):
    buy = "buy"
    sell = "sell"


class AssetType(StrEnum):
    stock = "stock"
    option = "option"


@dataclass(frozen=True)
class Leg:
    """One leg of a structure: ``ratio`` units of ``instrument`` per unit of the structure."""

    instrument: str  # stock symbol, or OCC option symbol (padded form, e.g. "AAPL  261218C00150000")
    side: Side
    ratio: int = 1
    asset: AssetType = AssetType.option
    underlying: str = ""
    right: str | None = None  # "C" | "P" for options
    strike: Decimal | None = None
    expiry: date | None = None
    # Shares one contract delivers at exercise or assignment (Massive ``shares_per_contract``). After a
    # non-whole split the OCC keeps the contract's strike and its multiplier (premium and strike are still
    # x 100) and changes only what it delivers, e.g. 150 shares after 3:2; see ``accounting.delivery``.
    deliverable: int = STANDARD_DELIVERABLE

    @property
    def multiplier(self) -> int:
        """Dollars per point of this leg's quoted price: 100 for an option (adjusted ones too), 1 for stock."""
        return OPTION_MULTIPLIER if self.asset is AssetType.option else 1

    @property
    def sign(self) -> int:
        return 1 if self.side is Side.buy else -1

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "instrument": self.instrument,
            "side": self.side.value,
            "ratio": self.ratio,
            "asset": self.asset.value,
            "underlying": self.underlying,
            "right": self.right,
            "strike": None if self.strike is None else str(self.strike),
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
        }
        if self.asset is AssetType.option:  # shares only options deliver (stock legs: the ratio says it)
            out["deliverable"] = self.deliverable
        return out

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Leg:
        return cls(
            instrument=str(d["instrument"]),
            side=Side(str(d["side"])),
            ratio=int(d.get("ratio", 1)),  # type: ignore[arg-type]
            asset=AssetType(str(d.get("asset", "option"))),
            underlying=str(d.get("underlying") or ""),
            right=d.get("right"),  # type: ignore[arg-type]
            strike=None if d.get("strike") is None else Decimal(str(d["strike"])),
            expiry=None if d.get("expiry") is None else date.fromisoformat(str(d["expiry"])),
            deliverable=int(d.get("deliverable") or STANDARD_DELIVERABLE),  # type: ignore[call-overload]
        )

    def reversed(self) -> Leg:
        """The leg that closes this one."""
        other = Side.sell if self.side is Side.buy else Side.buy
        return Leg(self.instrument, other, self.ratio, self.asset, self.underlying, self.right, self.strike,
                   self.expiry, self.deliverable)


class BrokerOrderStatus(StrEnum):
    working = "working"  # accepted, nothing or part filled, still live
    filled = "filled"
    cancelled = "cancelled"
    rejected = "rejected"
    expired = "expired"


@dataclass(frozen=True)
class BrokerOrder:
    """What the broker knows about one order, looked up by our client order id."""

    client_order_id: str
    broker_order_id: str
    status: BrokerOrderStatus
    quantity: int
    filled_quantity: int
    avg_fill_price: Decimal | None  # net per unit, our sign convention
    reason: str = ""


@dataclass(frozen=True)
class BrokerFill:
    fill_id: str  # unique at the broker; the engine applies each fill once by this id
    client_order_id: str
    instrument: str
    side: Side
    quantity: int  # units of this instrument (contracts or shares)
    price: Decimal  # per share / per option share, positive
    commission: Decimal
    fees: Decimal
    at: datetime


@dataclass(frozen=True)
class BrokerPosition:
    instrument: str
    quantity: int  # signed: + long, - short
    avg_price: Decimal
    asset: AssetType
    underlying: str
    deliverable: int = STANDARD_DELIVERABLE  # shares per contract (options); an adjusted contract's differ


@dataclass(frozen=True)
class BrokerAccount:
    cash: Decimal
    buying_power: Decimal
    equity: Decimal  # cash + positions at the broker's marks


@dataclass(frozen=True)
class BrokerEvent:
    """Non-order activity that changes positions or cash: expiry, exercise, assignment."""

    event_id: str
    kind: str  # expired | exercised | assigned
    instrument: str
    quantity: int  # signed change to the option position (closes it)
    cash: Decimal  # signed cash change
    stock_instrument: str | None = None
    stock_quantity: int = 0  # signed shares delivered (+) or taken (-)
    stock_price: Decimal = Decimal("0")
    at: datetime | None = None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerPreview:
    """The broker's own dry run of an order (tastytrade's dry-run, IBKR's whatIfOrder): the gate checks it."""

    buying_power_effect: Decimal  # dollars of buying power the order would use (+) or free (-)
    fees: Decimal  # commissions and regulatory fees for the whole order, dollars, positive
    errors: tuple[str, ...] = ()  # any error means the broker would refuse: the gate refuses too
    warnings: tuple[str, ...] = ()
    raw: dict[str, object] = field(default_factory=dict)  # the broker's answer as received, for the audit trail


class BrokerRejected(Exception):
    """A definite refusal: the order was not accepted and never will be. Rejects the order."""


class BrokerUnavailable(Exception):
    """Timeout, connection loss, unknown outcome: the order's fate is learnt by reconciliation."""


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, gate_pass: GatePass) -> BrokerOrder:
        """Send the order the pass authorises. Idempotent by client order id: a client order id the
        broker has already seen returns that order instead of creating another."""
        ...

    def cancel(self, client_order_id: str) -> BrokerOrder: ...

    def order(self, client_order_id: str) -> BrokerOrder | None:
        """The broker's view of an order, or None when the broker never received it."""
        ...

    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]: ...

    def events(self) -> list[BrokerEvent]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def account(self) -> BrokerAccount: ...


@runtime_checkable
class PreviewingBroker(Protocol):
    """A broker that can dry-run an order before it is sent (real brokers; the paper broker need not)."""

    def preview(self, order: ProposedOrder) -> BrokerPreview: ...
