"""Rebuild the tax lots from every stored transaction, persist them, and shape the ``lots report``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.models import LotPnlCheck, TaxLot, WashSaleRecord
from engine.portfolio.accounting import cents
from engine.portfolio.lots import compute_lots
from engine.portfolio.lots.model import Lot, LotResult
from engine.portfolio.lots.sources import load_events


def rebuild_lots(db: Engine, as_of: datetime | None = None, persist: bool = True) -> LotResult:
    """Run the lot engine over every account; options left open past expiry expire at zero (as of now)."""
    result = compute_lots(load_events(db), expire_through=as_of or datetime.now(UTC))
    if persist:
        save_lots(db, result)
    return result


def save_lots(db: Engine, result: LotResult) -> None:
    with Session(db) as session:
        session.exec(delete(TaxLot))  # type: ignore[call-overload]
        session.exec(delete(WashSaleRecord))  # type: ignore[call-overload]
        session.exec(delete(LotPnlCheck))  # type: ignore[call-overload]
        checks = {(c.account, c.closing_trade_id): c.broker_pnl for c in result.checks}
        brokers = {lot.account: lot.broker for lot in result.lots if lot.broker}
        for lot in result.lots:
            # Quantity signed (short lots negative) so mark x quantity x multiplier - basis is the unrealized
            # P&L of long and short lots alike (a short's open basis is minus the credit received).
            session.add(TaxLot(
                broker=lot.broker or "other", account=lot.account[:32], symbol=lot.instrument.symbol[:32],
                method=lot.method, open_txn_id=lot.open_txn_id, open_date=lot.acquired, quantity=lot.quantity,
                cost_basis=_open_basis(lot), close_date=lot.sold, proceeds=lot.proceeds, realized_pnl=lot.realized,
                holding_period=lot.term, wash_sale=bool(lot.wash_sale_disallowed or lot.wash_sale_adjustment),
                broker_reported_pnl=checks.get((lot.account, lot.closing_trade_id or "")),
                lot_key=lot.lot_id[:96], asset=lot.instrument.asset.value,
                underlying=lot.instrument.base[:32], multiplier=lot.instrument.multiplier, currency=lot.currency,
                opening_trade_id=lot.opening_trade_id[:96], closing_trade_id=(lot.closing_trade_id or None),
                close_kind=None if lot.close_kind is None else lot.close_kind.value,
                holding_period_start=lot.holding_period_start, wash_sale_disallowed=lot.wash_sale_disallowed,
                wash_sale_adjustment=lot.wash_sale_adjustment))
        for w in result.wash_sales:
            session.add(WashSaleRecord(
                loss_account=w.loss_account, symbol=w.symbol[:32], sold=w.sold, closing_trade_id=w.closing_trade_id,
                quantity=w.quantity, disallowed=w.disallowed, replacement_account=w.replacement_account,
                replacement_symbol=w.replacement_symbol[:32], replacement_acquired=w.replacement_acquired,
                replacement_trade_id=w.replacement_trade_id[:96], replacement_lot_key=w.replacement_lot_id[:96]))
        for c in result.checks:
            session.add(LotPnlCheck(
                broker=brokers.get(c.account, "other"), account=c.account, closing_trade_id=c.closing_trade_id[:96],
                symbol=c.symbol[:32], trade_date=c.day, broker_pnl=c.broker_pnl, our_pnl=c.our_pnl,
                difference=c.difference, cause=c.cause))
        session.commit()


def _open_basis(lot: Lot) -> Decimal:
    """Basis as shown: for a short lot still open, minus the credit received (so mark value - basis is the
    unrealized P&L for long and short alike)."""
    return lot.basis if lot.is_long or lot.closed_at is not None else -lot.open_cash


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(cents(value))


def _qty(value: Decimal) -> str:
    text = format(abs(value).normalize(), "f")
    return text


def closed_row(lot: Lot) -> dict[str, Any]:
    return {"symbol": lot.instrument.symbol, "quantity": _qty(lot.quantity), "acquired": lot.acquired.isoformat(),
            "sold": lot.sold.isoformat() if lot.sold else None, "basis": _money(lot.basis),
            "proceeds": _money(lot.proceeds), "realized": _money(lot.realized),
            "wash_sale_disallowed": _money(lot.wash_sale_disallowed), "term": lot.term,
            "closing_trade_id": lot.closing_trade_id, "currency": lot.currency}


def open_row(lot: Lot) -> dict[str, Any]:
    start = lot.holding_period_start or lot.acquired
    return {"symbol": lot.instrument.symbol, "quantity": _qty(lot.quantity) if lot.is_long
            else "-" + _qty(lot.quantity), "acquired": lot.acquired.isoformat(),
            "holding_period_start": start.isoformat(), "basis": _money(_open_basis(lot)),
            "wash_sale_adjustment": _money(lot.wash_sale_adjustment)}


def report(result: LotResult, account: str | None = None, year: int | None = None) -> dict[str, list[dict]]:
    closed = [lot for lot in result.closed_lots if (account is None or lot.account == account)
              and (year is None or (lot.sold is not None and lot.sold.year == year))]
    closed.sort(key=lambda lot: (lot.closed_at, lot.lot_id))
    open_ = [lot for lot in result.open_lots if account is None or lot.account == account]
    open_.sort(key=lambda lot: (lot.acquired_at, lot.lot_id))
    return {"closed": [closed_row(lot) for lot in closed], "open": [open_row(lot) for lot in open_]}
