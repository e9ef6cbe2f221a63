"""Phase 1: match closing executions to open lots, per account and instrument.

FIFO by default; the broker's own choice where it reports the lots closed (IBKR ``Lot`` rows); specific
identification when the sale names its lots. Exercise and assignment fold the option's premium into the
stock bought or sold (IRS Publication 550, "Puts and Calls"): a long call's cost is added to the stock's
basis, a long put's cost reduces the sale's proceeds, a short call's premium is added to the proceeds and a
short put's premium reduces the stock's basis. Splits scale quantity and keep basis and acquisition date.

Matching never looks at basis, so the wash-sale pass (phase 2) can adjust bases afterwards without
changing which lot closed which.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, time
from decimal import Decimal

from engine.portfolio.lots.model import (
    ZERO,
    Asset,
    BrokerFigure,
    CloseKind,
    Lot,
    LotResult,
    RenameEvent,
    SplitEvent,
    TradeEvent,
    trade_day,
)

Event = TradeEvent | SplitEvent | RenameEvent | BrokerFigure  # a BrokerFigure changes no lot (see checks)


def _sort_key(item: tuple[int, Event]) -> tuple[datetime, int, int]:
    seq, event = item
    # A split takes effect before the day's trades; otherwise statement order.
    return (event.at, 1 if isinstance(event, TradeEvent) else 0, seq)


class LotMatcher:
    def __init__(self) -> None:
        self.result = LotResult()
        self._open: dict[tuple[str, str], list[Lot]] = defaultdict(list)
        self._ids: dict[str, int] = defaultdict(int)
        self._closes = 0

    def run(self, events: Iterable[Event], expire_through: datetime | None = None) -> LotResult:
        for _seq, event in sorted(enumerate(events), key=_sort_key):
            if isinstance(event, SplitEvent):
                self._split(event)
            elif isinstance(event, RenameEvent):
                self._rename(event)
            elif isinstance(event, TradeEvent):
                self._trade(event)
        if expire_through is not None:
            self._expire_left_over(expire_through)
        return self.finish()

    # -- events --------------------------------------------------------------------------------

    def _split(self, event: SplitEvent) -> None:
        for (account, symbol), lots in self._open.items():
            if symbol != event.symbol or (event.account is not None and account != event.account):
                continue
            ratio = event.ratio
            if ratio is None:
                held = sum((lot.quantity for lot in lots), ZERO)
                if held == 0 or event.delta is None:
                    self.result.notes.append(f"split of {symbol} on {trade_day(event.at)} with no stated ratio and "
                                             "no lots held: not applied")
                    continue
                ratio = (held + event.delta) / held
            for lot in lots:
                lot.quantity *= ratio

    def _rename(self, event: RenameEvent) -> None:
        lots = self._open.pop((event.account, event.old), [])
        target = self._open[(event.account, event.new)]
        for lot in lots:
            inst = lot.instrument
            lot.instrument = type(inst)(event.new, inst.asset, event.new if inst.asset is Asset.stock
                                        else inst.underlying, inst.multiplier, inst.right, inst.strike, inst.expiry)
            lot.quantity *= event.ratio
            target.append(lot)

    def _trade(self, event: TradeEvent, extra_cash: Decimal = ZERO) -> None:
        if event.kind in (CloseKind.exercise, CloseKind.assign) and event.delivery is not None:
            folded = self._close(event, fold=True)
            # The option's own cash (premium paid < 0, received > 0) moves into the stock leg.
            self._trade(event.delivery, extra_cash=folded)
            return
        self._close(event, extra_cash=extra_cash)

    def _close(self, event: TradeEvent, fold: bool = False, extra_cash: Decimal = ZERO) -> Decimal:
        """Close opposite lots with this execution; open a lot with what is left. Returns the folded cash."""
        key = (event.account, event.instrument.symbol)
        lots = self._open[key]
        if event.side_from_position:
            held = sum((lot.quantity for lot in lots), ZERO)
            sign = -1 if held > 0 else 1
            event = TradeEvent(**{**event.__dict__, "quantity": sign * abs(event.quantity),
                                  "side_from_position": False, "closes_only": True})
        remaining = event.quantity
        total_cash = event.net_cash + extra_cash
        cash_left = total_cash
        folded = ZERO
        self._closes += 1
        close_origin = f"close#{self._closes}"
        for lot, cap in self._plan(lots, event):
            if remaining == 0 or lot.quantity == 0 or (lot.quantity > 0) == (remaining > 0):
                continue
            take = min(abs(lot.quantity), abs(remaining), cap)
            if take <= 0:
                continue
            piece = self._take(lot, take, lots)
            share = total_cash * take / abs(event.quantity)
            remaining += take if remaining < 0 else -take
            if remaining == 0:
                share = cash_left  # the last piece takes the rounding remainder: cash adds up exactly
            cash_left -= share
            piece.fees += event.fees * take / abs(event.quantity)
            if fold:
                folded += piece.open_cash + share
                piece.close_cash = -piece.open_cash  # realized zero here: the P&L lives in the stock lot
            else:
                piece.close_cash = share
            piece.closed_at = event.at
            piece.closing_trade_id = event.trade_id
            piece.close_origin = close_origin
            piece.close_kind = event.kind
            piece.method = "specific" if event.lot_ids else "broker" if event.lot_picks else "FIFO"
            self.result.lots.append(piece)
        lots[:] = [lot for lot in lots if lot.quantity != 0]
        if remaining != 0:
            if event.closes_only:
                self.result.unmatched.append((event, remaining))
            else:
                lot = self._new_lot(event, remaining, cash_left)
                lot.fees = event.fees * abs(remaining) / abs(event.quantity)
                lots.append(lot)
        return folded

    def _plan(self, lots: list[Lot], event: TradeEvent) -> list[tuple[Lot, Decimal]]:
        """Which lots to close and at most how much of each, in order; FIFO takes up whatever is left."""
        fifo = sorted(lots, key=lambda lot: lot.acquired_at)  # stable: statement order within one time
        unlimited = abs(event.quantity)
        plan: list[tuple[Lot, Decimal]] = []
        if event.lot_ids:  # specific identification: the named lots, in the order named
            rank = {tid: i for i, tid in enumerate(event.lot_ids)}
            named = sorted((lot for lot in fifo if lot.opening_trade_id in rank),
                           key=lambda lot: rank[lot.opening_trade_id])
            plan += [(lot, unlimited) for lot in named]
        for pick in event.lot_picks:  # the broker's lots: this many units from the lots opened that day
            left = pick.quantity
            for lot in fifo:
                if left <= 0:
                    break
                if lot.acquired == pick.opened:
                    used = sum((cap for planned, cap in plan if planned is lot), ZERO)
                    take = min(abs(lot.quantity) - used, left)
                    if take > 0:
                        plan.append((lot, take))
                        left -= take
        return plan + [(lot, unlimited) for lot in fifo]

    def _take(self, lot: Lot, units: Decimal, lots: list[Lot]) -> Lot:
        """Split ``units`` off an open lot (the whole lot when units cover it)."""
        if units == abs(lot.quantity):
            piece = Lot(**{**lot.__dict__})
            lot.quantity = ZERO
            return piece
        sign = 1 if lot.quantity > 0 else -1
        frac = units / abs(lot.quantity)
        cash, fees = lot.open_cash * frac, lot.fees * frac
        piece = Lot(**{**lot.__dict__, "lot_id": self._next_id(lot.opening_trade_id),
                       "quantity": sign * units, "open_cash": cash, "fees": fees})
        lot.quantity -= sign * units
        lot.open_cash -= cash
        lot.fees -= fees
        return piece

    def _new_lot(self, event: TradeEvent, quantity: Decimal, cash: Decimal) -> Lot:
        lot_id = self._next_id(event.trade_id)
        return Lot(lot_id=lot_id, account=event.account, instrument=event.instrument,
                   quantity=quantity, acquired_at=event.at, open_cash=cash, opening_trade_id=event.trade_id,
                   currency=event.currency, open_txn_id=event.txn_id, holding_period_start=trade_day(event.at),
                   broker=event.broker, origin=lot_id)

    def _next_id(self, trade_id: str) -> str:
        self._ids[trade_id] += 1
        return f"{trade_id}#{self._ids[trade_id]}"

    def _expire_left_over(self, through: datetime) -> None:
        """Options still open after their expiry with no closing record expire at zero on the expiry date."""
        for lots in self._open.values():
            for lot in list(lots):
                expiry = lot.instrument.expiry
                if lot.instrument.asset is not Asset.option or expiry is None:
                    continue
                at = datetime.combine(expiry, time(21, 0), tzinfo=UTC)
                if at > through:
                    continue
                lots.remove(lot)
                lot.closed_at, lot.close_cash = at, ZERO
                lot.closing_trade_id, lot.close_kind = f"expiry:{lot.instrument.symbol}", CloseKind.expire
                lot.close_origin = f"expiry:{lot.account}:{lot.instrument.symbol}"
                self.result.lots.append(lot)

    def finish(self) -> LotResult:
        for lots in self._open.values():
            self.result.lots.extend(lot for lot in lots if lot.quantity != 0)
        return self.result
