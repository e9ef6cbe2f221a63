"""Our realized P&L per closing execution next to the broker's (IBKR ``fifoPnlRealized``), each difference
with its cause."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from engine.portfolio.accounting import cents
from engine.portfolio.lots.model import (
    ZERO,
    BrokerFigure,
    CloseKind,
    LotResult,
    PnlDifference,
    TradeEvent,
    trade_day,
)

UNMATCHED = "opening lot before the imported history ({units} units closed with no lot to close)"
FOLDED_OPTION = "premium folded into the stock lot (IRS Pub 550); the broker realizes it on the option"
FOLDED_STOCK = "includes the option premium folded in at exercise/assignment (IRS Pub 550)"
NO_FEES = "the broker's figure excludes commissions: ours includes {fees} of them"
WASH_BASIS = "basis includes a disallowed wash-sale loss carried from an earlier sale"


def check_against_broker(events: Iterable[object], result: LotResult) -> list[PnlDifference]:
    realized: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    fees: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    washed: set[tuple[str, str]] = set()
    for lot in result.closed_lots:
        key = (lot.account, lot.closing_trade_id or "")
        realized[key] += lot.realized or ZERO
        fees[key] += lot.fees
        if lot.wash_sale_adjustment:
            washed.add(key)
    unmatched = {(e.account, e.trade_id): units for e, units in result.unmatched}
    checks: list[PnlDifference] = []
    for event in events:
        if isinstance(event, BrokerFigure):
            # A broker figure on a row that changes no lot: nothing of ours to compare, always listed.
            checks.append(PnlDifference(event.account, event.trade_id, event.symbol, trade_day(event.at),
                                        event.broker_pnl, ZERO, event.cause))
            continue
        if not isinstance(event, TradeEvent):
            continue
        legs = [(event, None)]
        if event.delivery is not None:
            legs.append((event.delivery, event))
        for leg, parent in legs:
            key = (leg.account, leg.trade_id)
            if leg.broker_pnl is None or (key not in realized and key not in unmatched):
                continue  # an opening execution: nothing realized to compare
            ours = realized.get(key, ZERO)
            cause = ""
            if key in unmatched:
                # Listed even when the figures agree (a broker zero): a close that found no lot is a gap in
                # the imported history, never a match.
                cause = UNMATCHED.format(units=abs(unmatched[key]))
            elif cents(ours - leg.broker_pnl) != ZERO:
                if leg.kind in (CloseKind.exercise, CloseKind.assign) and leg.delivery is not None:
                    cause = FOLDED_OPTION
                elif parent is not None:
                    cause = FOLDED_STOCK
                elif key in washed:
                    cause = WASH_BASIS
                elif fees[key] and cents(ours + fees[key] - leg.broker_pnl) == ZERO:
                    cause = NO_FEES.format(fees=cents(fees[key]))
                else:
                    cause = "unexplained"
            day = trade_day(leg.at)
            checks.append(PnlDifference(leg.account, leg.trade_id, leg.instrument.symbol, day, leg.broker_pnl,
                                        ours, cause))
    return checks
