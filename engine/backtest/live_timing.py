"""The backtest on the live day's timing, for paper validation (``python -m engine validate``).

The scheduler's day differs from the fast backtest's: the pre-market job (08:30) turns the close of t-1
into orders that the first intraday cycle (09:35) sends and the paper broker fills at the simulated
quote of that moment; every intraday cycle then manages the open positions on the underlying's price
at that minute, with the previous session's close, SMA50 and ATR (``pipeline._daily_levels``), and the
exits it decides are sent in the same cycle. This run does the same with the same functions
(``manager.decide``, ``risk.evaluate``, the paper broker's pricing and fees) on the simulated market.

Entries are day orders, as at the paper broker: each attempt fills what the participation cap allows
(``PaperBroker._price`` with the contracts already filled today, cumulative per contract and session),
the rest keeps resting and is tried again at every later cycle's quotes until the close, when it
expires. The parts of one order make one position at their average price, with commissions capped per
leg of the order (``PaperBroker._leg_charges``).

Exits follow the same rule (``PaperBroker._try_fill``): an exit is sent in the cycle that decides it,
with the limit ``pipeline._propose_exit`` gives it (natural for a full exit, halfway from mid to natural
for a scale-out), fills what the participation cap allows at that moment's quotes (the same ``used``
counts, entries and exits of the contract that day), and the rest keeps working at the later cycles'
quotes, within its limit, until the close. While it works, the manager sends no second exit for the same
units; a full exit replaces working scale-outs, as ``pipeline._manage_one`` cancels them first. The
parts of one exit order are one fill at their average price, as the broker's order reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.backtest.options_mode import NY, _closing_legs, _Position, _quote_map, _Run
from engine.data import calendar
from engine.execution.orders import money
from engine.execution.ports import AssetType, Leg
from engine.portfolio.manager import MarketView, PositionView, decide

__all__ = ["LiveTimingRun", "cycle_times"]


def cycle_times(day: date, every_minutes: int) -> list[time]:
    """The intraday cycles of ``day`` as ``schedule.plan_day`` plans them: open + 5 min to close - 5 min."""
    times = calendar.session_times(day)
    if times is None:
        return []
    open_, close = times
    out, t = [], open_ + timedelta(minutes=5)
    while t <= close - timedelta(minutes=5):
        out.append(t.astimezone(NY).time())
        t += timedelta(minutes=every_minutes)
    return out


@dataclass
class _Resting:
    """The unfilled rest of an entry day order."""

    order: Any  # ProposedOrder, quantity = what is still unfilled
    args: tuple[Any, ...]  # _fill_open's (source, kind, signal, levels, day, sector)
    pos: _Position | None  # the position its earlier parts opened (None: nothing filled yet)
    charged: list[Decimal]  # commission charged so far per leg of the order


@dataclass
class _RestingExit:
    """An exit day order with units still unfilled."""

    pos: _Position
    full: bool  # a full exit (close_all) or a scale-out
    units: int  # still unfilled
    reason: str
    limit: Decimal  # set when sent, as pipeline._propose_exit sets it
    source: str
    charged: list[Decimal]  # commission charged so far per leg of the order
    record: dict[str, Any] | None = None  # its fill record once a part has filled


class LiveTimingRun(_Run):
    entry_time = time(8, 30)  # the pre-market job chooses, sizes and gates the entries on the 08:30 chain
    fill_time = time(9, 35)  # the first intraday cycle sends them; the paper broker fills at that quote

    def __init__(self, *args: Any, cycle_minutes: int = 5) -> None:
        super().__init__(*args)
        self.resting: list[_Resting] = []
        self.resting_exits: list[_RestingExit] = []
        # contracts filled today per option contract (entries and exits): the venue's cumulative cap
        self.used: dict[str, int] = {}
        if self.market is None or not hasattr(self.market, "intraday_price"):
            raise ValueError("timing='live' needs the simulated market (source sim): it reads intraday prices")
        self.cycle_minutes = cycle_minutes

    def _price(self, legs: tuple[Leg, ...], quotes: list[Any]) -> Any:
        return self._venue()._price(legs, quotes, self.used)

    def _took(self, legs: tuple[Leg, ...], units: int) -> None:
        for leg in legs:
            if leg.asset is AssetType.option:
                self.used[leg.instrument] = self.used.get(leg.instrument, 0) + leg.ratio * units

    def _enter(self, t: int, day: date, *rest: Any) -> Any:
        self.used = {}  # a new session: the participation cap counts from zero
        return super()._enter(t, day, *rest)

    def _fill_open(self, order: Any, quotes: Any, *rest: Any, into: _Position | None = None,
                   charged: list[Decimal] | None = None) -> int:
        """The 09:35 send: fills what it can now; the rest rests as a day order (``_try_resting``)."""
        charged = [Decimal(0)] * len(order.legs)
        units = super()._fill_open(order, quotes, *rest, charged=charged)
        if units < order.quantity:
            pos = self.open[-1] if units else None  # _fill_open appended the new position
            self.resting.append(_Resting(replace(order, quantity=order.quantity - units), rest, pos, charged))
        return units

    def _try_resting(self, day: date, at: time) -> None:
        """One attempt per resting order at this cycle's quotes, as ``PaperBroker.process`` does."""
        keep = []
        for r in self.resting:
            if r.pos is not None and r.pos not in self.open:
                continue  # its position was closed meanwhile: the rest would open a new trade, not this one
            symbol = r.args[2].symbol
            q, _ = self.chains.quotes(symbol, [leg.instrument for leg in r.order.legs], day, at)
            units = _Run._fill_open(self, r.order, _quote_map(q), *r.args, into=r.pos, charged=r.charged)
            if units and r.pos is None:
                r.pos = self.open[-1]
            if units < r.order.quantity:
                keep.append(replace(r, order=replace(r.order, quantity=r.order.quantity - units)))
        self.resting = keep

    def _manage_day(self, t: int, day: date) -> None:
        col = {s: j for j, s in enumerate(self.panel.symbols)}
        for at in cycle_times(day, self.cycle_minutes):
            if self.resting and at > self.fill_time:
                self._try_resting(day, at)
            if self.resting_exits:
                self._try_resting_exits(day, at)
            # the 09:35 cycle sends the entries first (``_Run.run`` filled them) and then manages every position
            for pos in list(self.open):
                self._manage_at(pos, t, col[pos.symbol], day, at)
        self.resting, self.resting_exits = [], []  # day orders expire at the close
        for pos in self.open:  # end of day: marks at the close, highest close for the trailing rules
            j = col[pos.symbol]
            close = float(self.c[t, j])
            quotes, _ = self._marks(pos, day, t, j)
            mark = self._mark_value(pos, quotes)
            if mark is not None:
                pos.mark = mark
            if math.isfinite(close):
                pos.highest_close = max(pos.highest_close, close)

    def _manage_at(self, pos: Any, t: int, j: int, day: date, at: time) -> None:
        moment = datetime.combine(day, at, NY)
        price = float(self.market.intraday_price(pos.symbol, moment))
        prev = t - 1  # live's daily levels: the last completed session
        close, sma50, atr = float(self.c[prev, j]), float(self.sma50[prev, j]), float(self.atr[prev, j])
        if not all(math.isfinite(x) for x in (price, close, sma50, atr)):
            return
        if self.stock:
            quotes, source = self._stock_quote(price), "bars"
        else:
            q, source = self.chains.quotes(pos.symbol, [leg.instrument for leg in pos.legs], day, at)
            quotes = _quote_map(q)
        mark = self._mark_value(pos, quotes)
        if mark is not None:
            pos.mark = mark
        view = PositionView(pos.quantity, pos.initial, pos.entry_price, pos.underlying_entry, pos.entry_atr,
                            pos.stop, pos.targets, pos.targets_hit, pos.highest_close, pos.expiry, pos.structure)
        mkt = MarketView(today=day, price=price, close=close, sma50=sma50, atr=atr, mark=mark)
        for a in decide(view, mkt, self.p, self.exits.premium_stop_pct, self.exits.close_at_dte):
            if a.kind == "move_stop" and a.new_stop is not None:
                pos.stop = a.new_stop
            if a.kind in ("close_all", "scale_out") and not self._send_exit(pos, a, quotes, day, source):
                return
            if a.targets_hit is not None:
                pos.targets_hit = max(pos.targets_hit, a.targets_hit)
            if pos.quantity == 0 or a.kind == "close_all":
                return

    def _send_exit(self, pos: _Position, action: Any, quotes: Any, day: date, source: str) -> bool:
        """Send the exit ``action`` decides (False: not sent). It fills what the venue allows now and the rest
        keeps working (``_try_resting_exits``)."""
        full = action.kind == "close_all"
        working = [r for r in self.resting_exits if r.pos is pos]
        if full:
            if any(r.full for r in working):
                return True  # already working for the whole position: nothing new to send
            self.resting_exits = [r for r in self.resting_exits if r.pos is not pos]  # scale-outs cancelled
            units = pos.quantity
        else:
            units = min(action.quantity, pos.quantity - sum(r.units for r in working))
        if units <= 0:
            return False
        legs = _closing_legs(pos)
        if not self.stock and any(leg.instrument not in quotes for leg in legs):
            return False  # cannot price it: the next cycle decides again
        priced = self._price(legs, self._leg_quotes(legs, quotes))
        limit = money(priced.natural if full else (priced.mid + priced.natural) / 2)  # pipeline._propose_exit's
        if not self._exit_approved(pos, legs, units, limit, day):
            return False
        r = _RestingExit(pos, full, units, action.reason, limit, source, [Decimal(0)] * len(legs))
        self._attempt_exit(r, priced, day)
        if r.units > 0 and pos in self.open:
            self.resting_exits.append(r)
        return True

    def _attempt_exit(self, r: _RestingExit, priced: Any, day: date) -> None:
        """One attempt at ``priced`` (this moment's quotes), as ``PaperBroker._try_fill`` makes it."""
        if priced.fill > r.limit or any(p <= 0 for p in priced.leg_prices):
            return  # not marketable now: it keeps working
        units = min(r.units, priced.max_units, r.pos.quantity)
        if units <= 0:
            return  # the contract's share of today's volume is used up: wait for more volume
        r.record = self._book_exit(r.pos, _closing_legs(r.pos), units, priced, r.reason, day, r.source,
                                   charged=r.charged, record=r.record)
        r.units -= units

    def _try_resting_exits(self, day: date, at: time) -> None:
        keep = []
        for r in self.resting_exits:
            if r.pos not in self.open:
                continue
            legs = _closing_legs(r.pos)
            if self.stock:
                quotes = self._stock_quote(float(self.market.intraday_price(r.pos.symbol, datetime.combine(day, at,
                                                                                                         NY))))
            else:
                q, _ = self.chains.quotes(r.pos.symbol, [leg.instrument for leg in legs], day, at)
                quotes = _quote_map(q)
            if self.stock or all(leg.instrument in quotes for leg in legs):
                self._attempt_exit(r, self._price(legs, self._leg_quotes(legs, quotes)), day)
            if r.units > 0 and r.pos in self.open:
                keep.append(r)
        self.resting_exits = keep
