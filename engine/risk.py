"""Position sizing and the one pre-trade risk gate (DESIGN §6).

``evaluate`` decides for every order, automatic, operator-approved or overridden, and names each rule
with its limit, its current use and its use after the order. Only ``evaluate`` can issue a ``GatePass``,
and brokers accept nothing else, so an order cannot reach a broker without passing here.

Measures (all in dollars, against account equity):
- risk of an order: the structure's max loss x quantity (premium for long options, width - credit for
  credit spreads, entry - stop for stock), plus opening commissions and fees;
- heat: the sum of the open positions' current risk;
- sector exposure: delta dollars (|delta| x multiplier x underlying price x quantity), because premium
  or max loss (about 1% per trade) would never reach a 30% sector cap and so would cap nothing.
Orders that only reduce a position (exits, scale-outs) pass the entry limits but must still be a real
reduction; the kill switch and the daily loss limit stop new entries only.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.config import RiskSettings
from engine.execution.ports import BrokerPreview, Leg, Side
from engine.portfolio.accounting import deliverable_problem

_GATE_KEY = object()  # only this module holds it: GatePass cannot be built elsewhere
_ISSUED: weakref.WeakSet[GatePass] = weakref.WeakSet()  # every pass evaluate() issued and is still alive


class Intent(StrEnum):
    open = "open"
    close = "close"  # reduces or closes an existing position


@dataclass(frozen=True)
class ProposedOrder:
    client_order_id: str
    underlying: str
    sector: str
    intent: Intent
    legs: tuple[Leg, ...]
    quantity: int  # units of the structure
    limit_price: Decimal  # net debit per unit (+ pay, - receive)
    max_loss_per_unit: Decimal  # dollars per unit of the structure (already x multiplier)
    buying_power_per_unit: Decimal  # dollars the broker will hold per unit (debit paid, or margin)
    delta_dollars_per_unit: float = 0.0  # |delta| x multiplier x underlying price, per unit
    fees_per_unit: Decimal = Decimal("0")  # opening commissions and fees per unit
    position_quantity: int | None = None  # for close intents: the quantity held now
    time_in_force: str = "day"


@dataclass(frozen=True)
class PortfolioRisk:
    """What is at risk now, from the engine's positions and the broker's account."""

    equity: Decimal
    buying_power: Decimal
    day_start_equity: Decimal
    open_positions: int  # symbols held or with a working entry order
    heat: Decimal  # total current risk of open positions
    risk_by_symbol: dict[str, Decimal] = field(default_factory=dict)  # positions + working entries
    delta_dollars_by_sector: dict[str, float] = field(default_factory=dict)
    pending_risk: Decimal = Decimal("0")  # approved/working entry orders not yet filled
    kill_switch: bool = False

    @property
    def day_pnl(self) -> Decimal:
        return self.equity - self.day_start_equity


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    passed: bool
    limit: float
    current: float
    after: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "limit": self.limit, "current": self.current,
                "after": self.after, "message": self.message}


@dataclass(frozen=True)
class RiskDecision:
    approved: bool
    checks: tuple[RuleCheck, ...]
    order_risk: Decimal
    gate_pass: GatePass | None = None

    @property
    def failures(self) -> list[RuleCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.approved:
            return "passed all risk rules"
        return "; ".join(c.message for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"approved": self.approved, "order_risk": str(self.order_risk),
                "checks": [c.to_dict() for c in self.checks]}


class GatePass:
    """Proof that one exact order (id, legs, quantity, limit) passed the gate. Brokers take only this."""

    __slots__ = ("__weakref__", "client_order_id", "intent", "issued_at", "legs", "limit_price", "quantity",
                 "time_in_force", "underlying")

    def __init__(self, key: object, order: ProposedOrder, issued_at: datetime) -> None:
        if key is not _GATE_KEY:
            raise PermissionError("a GatePass can only be issued by engine.risk.evaluate")
        self.client_order_id = order.client_order_id
        self.underlying = order.underlying
        self.intent = order.intent
        self.legs = order.legs
        self.quantity = order.quantity
        self.limit_price = order.limit_price
        self.time_in_force = order.time_in_force
        self.issued_at = issued_at

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "issued_at"):
            raise AttributeError("a GatePass is immutable")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"GatePass({self.client_order_id}, qty={self.quantity}, limit={self.limit_price})"


def is_gate_pass(obj: object) -> bool:
    """True only for a pass that evaluate() issued (a copy made with __new__ is not in the registry)."""
    return type(obj) is GatePass and obj in _ISSUED


def _pct(value: Decimal | float, equity: Decimal) -> float:
    return 100.0 * float(value) / float(equity) if equity > 0 else math.inf


def order_risk(order: ProposedOrder) -> Decimal:
    return (order.max_loss_per_unit + order.fees_per_unit) * order.quantity


def evaluate(order: ProposedOrder, portfolio: PortfolioRisk, limits: RiskSettings,
             now: datetime | None = None, preview: BrokerPreview | None = None) -> RiskDecision:
    """The one gate. Every rule is checked (not just the first failure) so the operator sees them all.
    With a broker ``preview`` (a real broker's dry run), its fees and buying power replace the model's."""
    if preview is not None:
        order = with_broker_fees(order, preview)
    checks = _close_checks(order) if order.intent is Intent.close else _open_checks(order, portfolio, limits)
    if preview is not None:
        checks = broker_preview_checks(order, preview, portfolio, checks)
    risk = Decimal("0") if order.intent is Intent.close else order_risk(order)
    approved = all(c.passed for c in checks)
    gate_pass = GatePass(_GATE_KEY, order, now or datetime.now(UTC)) if approved else None
    if gate_pass is not None:
        _ISSUED.add(gate_pass)
    return RiskDecision(approved, tuple(checks), risk, gate_pass)


def _basic_checks(order: ProposedOrder) -> list[RuleCheck]:
    qty_ok, price_ok = order.quantity >= 1, order.limit_price.is_finite()
    # one structure, one deliverable: its payoff, margin and books assume its option legs hedge share for share
    mixed = deliverable_problem(order.legs)
    legs_ok = len(order.legs) >= 1 and mixed is None
    why = ", an order needs at least one leg" if not order.legs else f", {mixed} (Leg.deliverable)" if mixed else ""
    return [
        RuleCheck("quantity", qty_ok, 1, 0, order.quantity,
                  f"quantity: {order.quantity}" + ("" if qty_ok else ", must be at least 1")),
        RuleCheck("legs", legs_ok, 1, 0, len(order.legs), f"legs: {len(order.legs)}{why}"),
        RuleCheck("limit_price", price_ok, 0, 0, 0,
                  f"limit_price: {order.limit_price}" + ("" if price_ok else " is not a number")),
    ]


def _close_checks(order: ProposedOrder) -> list[RuleCheck]:
    held = order.position_quantity or 0
    checks = _basic_checks(order)
    checks.append(RuleCheck(
        "reduce_only", 0 < order.quantity <= held, held, held, held - order.quantity,
        f"reduce_only: closing {order.quantity} of a position of {held}"
        if not 0 < order.quantity <= held else "reduces the position",
    ))
    return checks


def _open_checks(order: ProposedOrder, p: PortfolioRisk, limits: RiskSettings) -> list[RuleCheck]:
    eq = p.equity
    risk = order_risk(order)
    checks = _basic_checks(order)

    def add(rule: str, limit: float, current: float, after: float, unit: str = "%", what: str = "") -> None:
        ok = after <= limit + 1e-9
        fmt = (lambda v: f"{v:.2f}%") if unit == "%" else (lambda v: f"{v:,.0f}")
        verdict = "within" if ok else "exceeds"
        checks.append(RuleCheck(rule, ok, limit, current, after,
                                f"{rule}{what}: {fmt(after)} after the order {verdict} the limit {fmt(limit)} "
                                f"(now {fmt(current)})"))

    checks.append(RuleCheck("kill_switch", not p.kill_switch, 0, float(p.kill_switch), float(p.kill_switch),
                            "kill_switch: on, no new entries" if p.kill_switch else "kill_switch: off"))
    loss_pct = max(0.0, -_pct(p.day_pnl, p.day_start_equity))
    loss_ok = loss_pct < limits.daily_loss_limit_pct
    checks.append(RuleCheck("daily_loss", loss_ok, limits.daily_loss_limit_pct, loss_pct, loss_pct,
                            f"daily_loss: down {loss_pct:.2f}% today, limit {limits.daily_loss_limit_pct:.2f}%"
                            + ("" if loss_ok else ", no new entries")))
    checks.append(RuleCheck("equity", eq > 0, 0, float(eq), float(eq), f"equity: {eq}"))
    add("risk_per_trade", limits.risk_per_trade_pct, 0.0, _pct(risk, eq))
    sym_now = p.risk_by_symbol.get(order.underlying, Decimal("0"))
    add("symbol_risk", limits.max_symbol_risk_pct, _pct(sym_now, eq), _pct(sym_now + risk, eq),
        what=f" ({order.underlying})")
    heat_now = p.heat + p.pending_risk
    add("heat", limits.max_heat_pct, _pct(heat_now, eq), _pct(heat_now + risk, eq))
    adds_position = 0 if order.underlying in p.risk_by_symbol else 1
    add("open_positions", limits.max_open_positions, p.open_positions, p.open_positions + adds_position, unit="n")
    sector_now = p.delta_dollars_by_sector.get(order.sector, 0.0)
    sector_after = sector_now + order.delta_dollars_per_unit * order.quantity
    add("sector_exposure", limits.max_sector_exposure_pct, _pct(sector_now, eq), _pct(sector_after, eq),
        what=f" ({order.sector or 'no sector'}, delta dollars)")
    need = order.buying_power_per_unit * order.quantity + order.fees_per_unit * order.quantity
    bp_ok = need <= p.buying_power
    checks.append(RuleCheck("buying_power", bp_ok, float(p.buying_power), 0.0, float(need),
                            f"buying_power: order needs ${need:,.2f}, available ${p.buying_power:,.2f}"))
    return checks


NEW_SYMBOL = "(a new symbol)"


def limit_checks(portfolio: PortfolioRisk, limits: RiskSettings, underlying: str = NEW_SYMBOL,
                 sector: str = "") -> tuple[RuleCheck, ...]:
    """The gate's own rule checks on the smallest possible new entry (one unit risking one cent, in
    ``underlying``, a new symbol by default): what the Risk page shows, so a rule the page calls fine is one
    the gate would pass. With 10 of 10 positions open, ``open_positions`` fails here as it does in the gate."""
    probe = ProposedOrder(client_order_id="limit-probe", underlying=underlying, sector=sector, intent=Intent.open,
                          legs=(Leg(underlying, Side.buy, 1),), quantity=1, limit_price=Decimal("0.01"),
                          max_loss_per_unit=Decimal("0.01"), buying_power_per_unit=Decimal("0.01"))
    return tuple(c for c in _open_checks(probe, portfolio, limits)
                 if c.rule not in ("quantity", "legs", "limit_price"))


def with_broker_fees(order: ProposedOrder, preview: BrokerPreview) -> ProposedOrder:
    """The broker's fees are the fees the gate counts (risk per trade, heat, buying power)."""
    from dataclasses import replace

    if order.quantity < 1 or order.intent is Intent.close:
        return order
    return replace(order, fees_per_unit=max(preview.fees, Decimal("0")) / order.quantity)


def broker_preview_checks(order: ProposedOrder, preview: BrokerPreview, portfolio: PortfolioRisk,
                          checks: list[RuleCheck]) -> list[RuleCheck]:
    """DESIGN §6 with a real broker: the broker's dry run decides buying power, and any error it reports
    refuses the order (the broker would refuse it anyway). The model's ``buying_power`` rule gives way to
    the broker's number, taken as the broker states it (tastytrade's change in buying power includes the
    order's fees)."""
    errors = "; ".join(preview.errors)
    out = [c for c in checks if c.rule != "buying_power" or order.intent is Intent.close]
    out.append(RuleCheck("broker_preview", not preview.errors, 0, 0, float(len(preview.errors)),
                         f"broker_preview: the broker's dry run reports errors: {errors}" if preview.errors
                         else "broker_preview: the broker's dry run accepts the order"))
    if order.intent is Intent.open:
        need = preview.buying_power_effect
        ok = need <= portfolio.buying_power
        out.append(RuleCheck("broker_buying_power", ok, float(portfolio.buying_power), 0.0, float(need),
                             f"broker_buying_power: the broker's dry run uses ${need:,.2f} of buying power, "
                             f"available ${portfolio.buying_power:,.2f}"
                             + ("" if ok else ", exceeds what is allowed")))
    return out


def risk_rooms(portfolio: PortfolioRisk, limits: RiskSettings, underlying: str) -> dict[str, Decimal]:
    """Dollars of new risk each sizing rule still allows."""
    eq = portfolio.equity
    return {
        "risk_per_trade": eq * Decimal(str(limits.risk_per_trade_pct)) / 100,
        "symbol_risk": eq * Decimal(str(limits.max_symbol_risk_pct)) / 100
        - portfolio.risk_by_symbol.get(underlying, Decimal(0)),
        "heat": eq * Decimal(str(limits.max_heat_pct)) / 100 - portfolio.heat - portfolio.pending_risk,
    }


def size_for_risk(max_loss_per_unit: Decimal, fees_per_unit: Decimal, portfolio: PortfolioRisk,
                  limits: RiskSettings, underlying: str) -> int:
    """The largest quantity whose risk fits the per-trade, per-symbol and heat room left (may be 0)."""
    unit = max_loss_per_unit + fees_per_unit
    if unit <= 0 or portfolio.equity <= 0:
        return 0
    room = min(risk_rooms(portfolio, limits, underlying).values())
    return max(0, int(room // unit))
