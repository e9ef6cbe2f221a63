"""IB order building and IB message codes, kept apart from the connection logic of ``ibkr.py``.

Prices: our convention is the net debit per unit (+ pay, - receive; see engine.execution.ports). IB's:
a single-leg order has an action and a positive limit; a combo (BAG) is bought at its net price, positive
for a debit and negative for a credit, which is our convention exactly.

IB's combo pricing rules: per-leg prices (``orderComboLegs``) are accepted only on 2-leg non-guaranteed
combos; every other combo carries one overall limit (``lmtPrice``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ib_async import Bag, ComboLeg, Contract, LimitOrder, Option, Order, OrderComboLeg, Stock, TagValue

from engine.execution.ports import AssetType, Leg, Side

# Message codes that are information, not a verdict on the order: they must never mark a live order
# cancelled. 10349 "Order TIF was set to DAY based on order preset" is the classic trap (ib_async treats it as
# an error and flags the order Cancelled while it works at the exchange). 399 is an order message (e.g. "will
# not be placed at the exchange until..."), 404 a short-sale locate hold, 2109 an outside-RTH notice, 10167 /
# 10197 market-data notices, 1102 a reconnect with data kept, 2100-2199 data-farm notices. Codes such as 110
# (price off the tick grid) and 321 (validation) are verdicts on a new order, not information.
INFORMATIONAL_CODES = frozenset({165, 399, 404, 1102, 2109, 10167, 10197, 10349})
CONNECTION_LOST = frozenset({1100, 2110})  # TWS <-> IB server connectivity broken
RECONNECTED = frozenset({1101, 1102})  # restored: 1101 data lost (resubscribe), 1102 data kept
FARM_CODES = frozenset({2103, 2104, 2105, 2106, 2107, 2108, 2157, 2158})  # farm broken / OK
RESYNC_CODES = frozenset({1101, 2103, 2105, 2157, 1100})


def is_informational(code: int) -> bool:
    return code in INFORMATIONAL_CODES or 2100 <= code < 2200


def contract_for_leg(leg: Leg, currency: str = "USD") -> Contract:
    if leg.asset is AssetType.stock:
        return Stock(leg.instrument.strip().upper(), "SMART", currency)
    if leg.expiry is None or leg.strike is None or leg.right is None:
        raise ValueError(f"option leg {leg.instrument!r} needs expiry, strike and right")
    return Option(leg.underlying or leg.instrument[:6].strip(), leg.expiry.strftime("%Y%m%d"), float(leg.strike),
                  leg.right, "SMART", multiplier=str(leg.multiplier), currency=currency)


def _action(side: Side) -> str:
    return "BUY" if side is Side.buy else "SELL"


def single_order(leg: Leg, quantity: int, limit: Decimal, client_order_id: str, account: str,
                 tif: str) -> Order:
    """One leg: the side is the leg's, the limit is the per-share price (positive)."""
    price = limit * leg.sign  # a sell at "limit -2.10" is a SELL LMT 2.10
    if price <= 0:
        raise ValueError(f"limit {limit} does not fit a {leg.side.value} of {leg.instrument}: the price must be "
                         "positive for IB single-leg orders")
    order = LimitOrder(_action(leg.side), quantity * leg.ratio, float(price))
    return _stamp(order, client_order_id, account, tif)


def combo_contract(underlying: str, legs: Sequence[Leg], con_ids: Sequence[int], currency: str = "USD",
                   non_guaranteed: bool = False) -> Bag:
    bag = Bag(symbol=underlying, exchange="SMART", currency=currency)
    bag.comboLegs = [ComboLeg(conId=cid, ratio=leg.ratio, action=_action(leg.side), exchange="SMART")
                     for leg, cid in zip(legs, con_ids, strict=True)]
    return bag


def combo_order(quantity: int, limit: Decimal, client_order_id: str, account: str, tif: str,
                n_legs: int, leg_prices: Sequence[Decimal] | None = None, non_guaranteed: bool = False) -> Order:
    """A BAG order bought at the net debit ``limit`` (negative = credit)."""
    order = LimitOrder("BUY", quantity, float(limit))
    if leg_prices is not None:
        if n_legs != 2 or not non_guaranteed:
            raise ValueError("per-leg prices are accepted by IB only on 2-leg non-guaranteed combos; "
                             f"this combo has {n_legs} legs{' and is guaranteed' if not non_guaranteed else ''}")
        if len(leg_prices) != 2:
            raise ValueError(f"2 per-leg prices needed, got {len(leg_prices)}")
        order.orderComboLegs = [OrderComboLeg(price=float(p)) for p in leg_prices]
        order.lmtPrice = 1.7976931348623157e308  # UNSET: the legs carry the prices
    if non_guaranteed:
        order.smartComboRoutingParams = [TagValue("NonGuaranteed", "1")]
    return _stamp(order, client_order_id, account, tif)


def _stamp(order: Order, client_order_id: str, account: str, tif: str) -> Order:
    order.orderRef = client_order_id  # our client order id travels with the order and its executions
    order.account = account
    order.tif = "GTC" if tif.lower() == "gtc" else "DAY"
    order.transmit = True
    return order
