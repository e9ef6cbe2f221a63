"""Translation between the engine's orders and tastytrade's: legs, actions, price effect, status, fills.

Sign conventions (the most reported bug of this SDK and of LEAN's adapter is a flipped one):
- the engine's limit is the *net debit per unit*: positive = we pay, negative = we receive;
- the SDK's ``price`` is signed the other way (negative = Debit, positive = Credit) and is split into
  ``price`` + ``price-effect`` when serialised.
The price effect is also *derived from the structure* (its expiry payoff): a structure whose payoff can
never be negative (a long call, a call debit spread, a covered call bought) costs money, one whose payoff
can never be positive (a credit spread or an iron condor sold, any of the above closed) pays money. A
limit whose sign contradicts the structure is refused before it reaches the broker: "pay 1.20 to sell a
put spread" fills at once and loses for certain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import model_validator
from tastytrade.order import (
    FillInfo,
    InstrumentType,
    LimitOrder,
    OrderAction,
    OrderTimeInForce,
    PlacedOrder,
)
from tastytrade.order import Leg as TTLeg
from tastytrade.order import OrderStatus as TTStatus
from tastytrade.utils import PriceEffect

from engine.execution.ports import (
    AssetType,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerPreview,
    Leg,
    Side,
)
from engine.options.occ import parse_occ
from engine.portfolio.accounting import cents, structure_multiplier

__all__ = ["PriceEffectMismatch", "build_order", "derive_price_effect", "fills_of", "preview_of", "to_broker_order"]

_TIF = {"day": OrderTimeInForce.DAY, "gtc": OrderTimeInForce.GTC}
WORKING = {TTStatus.RECEIVED, TTStatus.ROUTED, TTStatus.IN_FLIGHT, TTStatus.LIVE, TTStatus.CONTINGENT,
            TTStatus.CANCEL_REQUESTED, TTStatus.REPLACE_REQUESTED}
_FINAL = {TTStatus.FILLED: BrokerOrderStatus.filled, TTStatus.CANCELLED: BrokerOrderStatus.cancelled,
          TTStatus.REJECTED: BrokerOrderStatus.rejected, TTStatus.EXPIRED: BrokerOrderStatus.expired,
          TTStatus.REMOVED: BrokerOrderStatus.cancelled, TTStatus.PARTIALLY_REMOVED: BrokerOrderStatus.cancelled}


class LenientPlacedOrder(PlacedOrder):
    """The SDK's order model, reading the documented bodies too: the API documents ``user-id`` as a number
    (the SDK wants a string) and omits ``underlying-instrument-type`` on some answers."""

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("user-id", "cancel-user-id"):
                if isinstance(data.get(key), int):
                    data[key] = str(data[key])
            if "underlying-instrument-type" not in data:
                legs = data.get("legs") or []
                equity_only = legs and all(leg.get("instrument-type") == "Equity" for leg in legs)
                data["underlying-instrument-type"] = "Equity" if equity_only or legs else "Unknown"
        return data


class PriceEffectMismatch(ValueError):
    """The limit's sign contradicts what the structure must cost: refused before any broker call."""


@dataclass(frozen=True)
class _Payoff:
    right: str  # "S" stock, "C", "P"
    strike: Decimal
    shares: int  # signed shares per unit of the structure (options: ratio x 100)
    expiry: date | None


def _payoff_legs(legs: Sequence[Leg]) -> list[_Payoff]:
    out = []
    for leg in legs:
        if leg.asset is AssetType.stock:
            out.append(_Payoff("S", Decimal(0), leg.sign * leg.ratio, None))
            continue
        right, strike, expiry = leg.right, leg.strike, leg.expiry
        if right is None or strike is None or expiry is None:
            occ = parse_occ(leg.instrument)
            right, strike, expiry = occ.right, occ.strike, occ.expiry
        out.append(_Payoff(right, strike, leg.sign * leg.ratio * leg.multiplier, expiry))
    return out


def derive_price_effect(legs: Sequence[Leg]) -> PriceEffect | None:
    """Debit when the structure's expiry payoff is never negative (and somewhere positive), Credit when it
    is never positive, None when it can be both (risk reversals) or legs expire on different days
    (calendars), where only the limit's sign says which it is.

    The payoff is piecewise linear in the underlying price S, so its sign is decided at S = 0, at every
    strike, and by its slope above the highest strike."""
    parts = _payoff_legs(legs)
    expiries = {p.expiry for p in parts if p.right != "S"}
    if len(expiries) > 1:
        return None
    kinks = sorted({Decimal(0), *(p.strike for p in parts if p.right != "S")})

    def value(s: Decimal) -> Decimal:
        total = Decimal(0)
        for p in parts:
            if p.right == "S":
                total += p.shares * s
            elif p.right == "C":
                total += p.shares * max(s - p.strike, Decimal(0))
            else:
                total += p.shares * max(p.strike - s, Decimal(0))
        return total

    values = [value(s) for s in kinks]
    slope = sum(p.shares for p in parts if p.right in ("S", "C"))
    values.append(values[-1] + slope)  # one dollar beyond the last kink carries the slope's sign
    if all(v >= 0 for v in values) and any(v > 0 for v in values):
        return PriceEffect.DEBIT
    if all(v <= 0 for v in values) and any(v < 0 for v in values):
        return PriceEffect.CREDIT
    return None


def _action(leg: Leg, intent: str) -> OrderAction:
    opening = intent == "open"
    if leg.side is Side.buy:
        return OrderAction.BUY_TO_OPEN if opening else OrderAction.BUY_TO_CLOSE
    return OrderAction.SELL_TO_OPEN if opening else OrderAction.SELL_TO_CLOSE


def _instrument_type(leg: Leg) -> InstrumentType:
    return InstrumentType.EQUITY if leg.asset is AssetType.stock else InstrumentType.EQUITY_OPTION


def order_legs(legs: Sequence[Leg], quantity: int, intent: str) -> list[TTLeg]:
    return [TTLeg(instrument_type=_instrument_type(leg), symbol=leg.instrument, action=_action(leg, intent),
                  quantity=leg.ratio * quantity) for leg in legs]


def build_order(client_order_id: str, legs: Sequence[Leg], quantity: int, limit_price: Decimal, intent: str,
                time_in_force: str = "day") -> LimitOrder:
    """One limit order for the whole structure, its external identifier our client order id."""
    if quantity < 1:
        raise ValueError(f"quantity must be at least 1, got {quantity}")
    if not limit_price.is_finite():
        raise ValueError(f"limit_price must be a number, got {limit_price}")
    tif = _TIF.get(time_in_force.lower())
    if tif is None:
        raise ValueError(f"time_in_force must be one of {sorted(_TIF)}, got {time_in_force!r}")
    expected = derive_price_effect(legs)
    given = PriceEffect.DEBIT if limit_price > 0 else PriceEffect.CREDIT if limit_price < 0 else None
    if expected is not None and given is not None and given is not expected:
        shown = ", ".join(f"{leg.side.value} {leg.instrument.strip()}" for leg in legs)
        raise PriceEffectMismatch(
            f"limit_price {limit_price} is a {given.value.lower()} but {intent} of [{shown}] must be a "
            f"{expected.value.lower()}: refusing to send a price with the wrong sign")
    # SDK sign: negative = Debit. The engine's +debit becomes -price here, and the SDK writes
    # price = |price| with price-effect = Debit when it serialises the order.
    return LimitOrder(time_in_force=tif, legs=order_legs(legs, quantity, intent), price=-limit_price,
                      external_identifier=client_order_id)


def wire_price(order: LimitOrder) -> tuple[str, str | None]:
    """The price and price-effect exactly as they go on the wire (for logs and tests)."""
    body = order.model_dump(mode="json", by_alias=True, exclude_none=True)
    return str(body["price"]), body.get("price-effect")


# --- answers -----------------------------------------------------------------------------------------


def _side(action: OrderAction) -> Side:
    return Side.sell if "Sell" in action.value else Side.buy


def legs_from_order(order: PlacedOrder) -> tuple[Leg, ...]:
    """The structure's legs as the engine writes them, from a broker order alone (after a restart): each
    leg's ratio is its quantity over the greatest common divisor of all the legs' quantities."""
    unit = math.gcd(*[int(leg.quantity or 0) for leg in order.legs]) or 1
    out = []
    for tl in order.legs:
        asset = AssetType.stock if tl.instrument_type is InstrumentType.EQUITY else AssetType.option
        out.append(Leg(tl.symbol, _side(tl.action), int(tl.quantity or 0) // unit or 1, asset,
                       order.underlying_symbol))
    return tuple(out)


def time_in_force_of(order: PlacedOrder) -> str:
    """The engine's name of a broker order's time in force (only the two the engine sends)."""
    for name, tif in _TIF.items():
        if order.time_in_force is tif:
            return name
    raise ValueError(f"time_in_force {order.time_in_force.value!r} of order {order.id} is not one the engine uses")


def units(order: PlacedOrder, legs: Sequence[Leg]) -> tuple[int, int]:
    """(ordered, filled) units of the structure, from the first leg's quantities and its ratio."""
    first = order.legs[0]
    ratio = next(leg.ratio for leg in legs if leg.instrument == first.symbol)
    ordered = int(first.quantity or 0) // ratio
    filled_contracts = sum((f.quantity for f in first.fills or []), Decimal(0))
    return ordered, int(filled_contracts) // ratio


def avg_fill_price(order: PlacedOrder, legs: Sequence[Leg]) -> Decimal | None:
    """Net debit per unit in the engine's convention, from the legs' fills (None before any fill)."""
    _, filled = units(order, legs)
    if filled <= 0:
        return None
    by_symbol = {leg.instrument: leg for leg in legs}
    dollars = Decimal(0)
    for tl in order.legs:
        sign = -1 if _side(tl.action) is Side.sell else 1
        mult = by_symbol[tl.symbol].multiplier
        dollars += sum((sign * f.fill_price * f.quantity * mult for f in tl.fills or []), Decimal(0))
    return dollars / (structure_multiplier(list(legs)) * filled)


def to_broker_order(client_order_id: str, order: PlacedOrder, legs: Sequence[Leg] | None = None) -> BrokerOrder:
    known = {leg.instrument for leg in legs or ()}
    if not legs or any(tl.symbol not in known for tl in order.legs):
        legs = legs_from_order(order)
    ordered, filled = units(order, legs)
    if order.status in WORKING:
        status = BrokerOrderStatus.working
    else:
        status = _FINAL.get(order.status, BrokerOrderStatus.working)
    reason = order.reject_reason or ""
    if not reason and status is not BrokerOrderStatus.working:
        reason = f"tastytrade: {order.status.value}, filled {filled}/{ordered}"
    return BrokerOrder(client_order_id, str(order.id), status, ordered, filled, avg_fill_price(order, legs), reason)


def _fill(client_order_id: str, leg: TTLeg, fill: FillInfo) -> BrokerFill:
    # Fees are not on order fills: tastytrade books them on the trade transactions (see the sync).
    return BrokerFill(fill_id=f"tastytrade:{fill.fill_id}", client_order_id=client_order_id,
                      instrument=leg.symbol, side=_side(leg.action), quantity=int(fill.quantity),
                      price=fill.fill_price, commission=Decimal(0), fees=Decimal(0), at=fill.filled_at)


def fills_of(client_order_id: str, order: PlacedOrder) -> list[BrokerFill]:
    return [_fill(client_order_id, leg, f) for leg in order.legs for f in leg.fills or []]


def _charges(t: Any) -> tuple[Decimal, Decimal]:
    """(commission, other fees) of a trade transaction as positive costs (the SDK signs debits negative)."""
    commission = -(t.commission or Decimal(0))
    others = (t.clearing_fees, t.regulatory_fees, t.proprietary_index_option_fees, t.other_charge)
    return commission, -sum((x for x in others if x is not None), Decimal(0))


def fills_with_fees(client_order_id: str, order: PlacedOrder, trades: Sequence[Any], now: datetime,
                    grace: timedelta) -> list[BrokerFill]:
    """The order's fills with the charges of their trade transactions: matched by execution id, else
    shared pro rata by quantity among the leg's fills (to the cent, the rounding rest on the last one)."""
    out: list[BrokerFill] = []
    for leg in order.legs:
        booked = [t for t in trades if t.order_id == order.id and t.symbol == leg.symbol]
        by_exec = {t.ext_exec_id: t for t in booked if t.ext_exec_id}
        unmatched = [f for f in leg.fills or [] if not (f.ext_exec_id and f.ext_exec_id in by_exec)]
        pool = [t for t in booked if not (t.ext_exec_id and any(f.ext_exec_id == t.ext_exec_id
                                                                for f in leg.fills or []))]
        pool_commission = sum((_charges(t)[0] for t in pool), Decimal(0))
        pool_fees = sum((_charges(t)[1] for t in pool), Decimal(0))
        pool_qty = sum((f.quantity for f in unmatched), Decimal(0))
        left_c, left_f = pool_commission, pool_fees
        for f in leg.fills or []:
            base = _fill(client_order_id, leg, f)
            if f.ext_exec_id and f.ext_exec_id in by_exec:
                c, x = _charges(by_exec[f.ext_exec_id])
            elif pool:
                if f is unmatched[-1]:
                    c, x = left_c, left_f
                else:
                    c = cents(pool_commission * f.quantity / pool_qty)
                    x = cents(pool_fees * f.quantity / pool_qty)
                left_c, left_f = left_c - c, left_f - x
            elif now - f.filled_at < grace:
                continue  # not booked yet: reported with its fees at the next poll
            else:
                c, x = Decimal(0), Decimal(0)
            out.append(replace(base, commission=c, fees=x))
    return out


def preview_of(data: dict[str, Any]) -> BrokerPreview:
    """The dry run's answer: buying power it uses (+) or frees (-) and the total fees, both positive dollars
    when they are debits. Parsed from the effect pairs directly so partial order bodies still read."""
    from tastytrade.order import BuyingPowerEffect, FeeCalculation, Message

    bpe = BuyingPowerEffect(**data["buying-power-effect"])
    fees = Decimal(0)
    if data.get("fee-calculation"):
        fees = -FeeCalculation(**data["fee-calculation"]).total_fees  # the SDK signs debits negative
    errors = tuple(str(Message(**m)) for m in data.get("errors") or [])
    warnings = tuple(str(Message(**m)) for m in data.get("warnings") or [])
    return BrokerPreview(buying_power_effect=-bpe.change_in_buying_power, fees=fees, errors=errors,
                         warnings=warnings, raw=data)
