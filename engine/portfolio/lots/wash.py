"""Phase 2: wash sales (IRC §1091, IRS Publication 550 "Wash Sales"), across every imported account.

A loss on a sale of stock is disallowed when substantially identical stock, or a contract or option to buy
it, is acquired within 30 days before or after the sale. The disallowed loss is added to the replacement's
basis and the sold lot's holding period is tacked onto the replacement's. When fewer shares are acquired
than were sold, only that share of the loss is disallowed (Pub 550: 100 shares sold at a $1,000 loss, 75
bought back: $750 disallowed). Replacements are taken in the order acquired, and a replacement share
replaces only once. A loss on an option is matched against acquisitions of the same option contract.

Sales are processed in date order so a replacement lot's adjusted basis is in place before it is sold; a
piece split off a sold replacement joins the queue, so a loss carried into it is washed again when that
piece's own sale has a replacement (chained wash sales).
Losses on closing short positions are not matched here (no acquisition of the short property).
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from decimal import Decimal

from engine.portfolio.accounting import cents
from engine.portfolio.lots.model import ZERO, Asset, CloseKind, Lot, LotResult, WashSale

WINDOW = timedelta(days=30)


def _identical(loss: Lot, candidate: Lot) -> bool:
    if not candidate.is_long:
        return False
    li, ci = loss.instrument, candidate.instrument
    if li.asset is Asset.stock:
        if ci.asset is Asset.stock:
            return ci.symbol == li.symbol
        # An option to buy substantially identical stock: a long call on it.
        return ci.asset is Asset.option and ci.right == "C" and ci.base == li.symbol
    if li.asset is Asset.option:
        return ci.symbol == li.symbol
    return False


def _is_sale(lot: Lot) -> bool:
    """A disposal of a long position that can have a washed loss (an exercise's P&L lives in the stock)."""
    return (lot.is_long and lot.closed_at is not None and lot.close_kind is not CloseKind.exercise
            and lot.instrument.asset is not Asset.other)


class _Sales:
    """The sales still to check, in date order. A queue rather than a list made once: splitting a sold
    replacement lot creates a piece that carries a disallowed loss, and that piece's own sale must be
    checked for a wash sale in its turn (chained wash sales)."""

    def __init__(self, lots: list[Lot]) -> None:
        self._heap: list[tuple[datetime, str, int, Lot]] = []
        self._seq = 0
        self.done: set[int] = set()
        for lot in lots:
            self.push(lot)

    def push(self, lot: Lot) -> None:
        if _is_sale(lot):
            assert lot.closed_at is not None
            self._seq += 1
            heapq.heappush(self._heap, (lot.closed_at, lot.lot_id, self._seq, lot))

    def pop(self) -> Lot | None:
        if not self._heap:
            return None
        lot = heapq.heappop(self._heap)[3]
        self.done.add(id(lot))
        return lot


def apply_wash_sales(result: LotResult) -> None:
    lots = result.lots
    # Acquisitions: every long lot piece, grouped by its opening trade (an acquisition may be split in pieces).
    candidates = sorted((lot for lot in lots if lot.is_long), key=lambda lot: (lot.acquired_at, lot.lot_id))
    ids = {lot.lot_id for lot in lots}
    sales = _Sales(lots)
    while (sale := sales.pop()) is not None:
        loss = sale.realized
        if loss is None or loss >= 0:
            continue
        assert sale.closed_at is not None and sale.sold is not None
        need = sale.share_equivalents
        disallowed_total = ZERO
        lo, hi = sale.sold - WINDOW, sale.sold + WINDOW  # exchange dates, 30 calendar days each side
        for cand in candidates:
            if need <= 0:
                break
            if cand.acquired < lo or cand.acquired > hi:
                continue
            # Same purchase: the run's own acquisition identity, as trade ids (CSV row numbers) repeat
            # across accounts and files.
            if cand.origin == sale.origin or not _identical(sale, cand):
                continue
            if cand.close_origin is not None and cand.close_origin == sale.close_origin:
                continue  # shares disposed of in the same sale are not its replacement
            free = cand.share_equivalents - cand.replacement_used
            if free <= 0:
                continue
            used = min(free, need)
            if cand.instrument.asset is not Asset.option and used < cand.share_equivalents:
                # Partial replacement of a stock lot: split it so only the replacing shares carry the loss.
                cand = _split(result, candidates, ids, sales, cand, used)
            portion = (-loss) * used / sale.share_equivalents
            need -= used
            # The last replacement takes the remainder, so the parts add up to the loss exactly.
            portion = -loss - disallowed_total if need == 0 else cents(portion)
            disallowed_total += portion
            cand.replacement_used += used
            cand.wash_sale_adjustment += portion
            held = sale.sold - (sale.holding_period_start or sale.acquired)
            start = cand.acquired - held
            cand.holding_period_start = min(cand.holding_period_start or cand.acquired, start)
            result.wash_sales.append(WashSale(
                loss_lot_id=sale.lot_id, loss_account=sale.account, symbol=sale.instrument.symbol,
                sold=sale.sold, closing_trade_id=sale.closing_trade_id or "", quantity=used,
                disallowed=portion, replacement_lot_id=cand.lot_id, replacement_account=cand.account,
                replacement_symbol=cand.instrument.symbol, replacement_acquired=cand.acquired,
                replacement_trade_id=cand.opening_trade_id))
        sale.wash_sale_disallowed = disallowed_total


# Per-lot amounts that belong to its shares, so a split divides them pro rata and the halves add up.
_PRO_RATA = ("quantity", "open_cash", "fees", "wash_sale_adjustment", "wash_sale_disallowed", "replacement_used")


def _split(result: LotResult, candidates: list[Lot], ids: set[str], sales: _Sales, lot: Lot,
           units: Decimal) -> Lot:
    """Split ``units`` share-equivalents off a (stock) lot, open or closed, pro rata in cash and fees."""
    frac = units / lot.share_equivalents
    n = 1
    while f"{lot.lot_id}w{n}" in ids:  # a lot split twice must not give two pieces one id
        n += 1
    piece = Lot(**{**lot.__dict__, "lot_id": f"{lot.lot_id}w{n}"})
    ids.add(piece.lot_id)
    for name in _PRO_RATA:
        part = getattr(lot, name) * frac
        setattr(piece, name, part)
        setattr(lot, name, getattr(lot, name) - part)  # the remainder: the two add up exactly
    if lot.close_cash is not None:
        piece.close_cash = lot.close_cash * frac
        lot.close_cash -= piece.close_cash
    result.lots.insert(result.lots.index(lot), piece)
    candidates.insert(candidates.index(lot), piece)
    if id(lot) not in sales.done:
        # The lot's sale is still to be checked: its new piece (which will carry a disallowed loss) must be
        # checked too. A sale already checked keeps its result, shared pro rata by the two pieces.
        sales.push(piece)
    else:
        sales.done.add(id(piece))
    return piece
