"""Tax lots page reads: open lots with unrealized P&L, closed lots, realized by year and term, wash sales
with their replacement lots, and the differences from the broker's own figures. Rows come from the tables
the lot engine rebuilds (``lots report``, ``sync``)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.models import BrokerPositionSnapshot, LotPnlCheck, TaxLot, WashSaleRecord

OPEN_COLUMNS = ["account", "symbol", "quantity", "acquired", "holding_period_start", "basis",
                "wash_sale_adjustment", "mark", "unrealized"]
CLOSED_COLUMNS = ["account", "symbol", "quantity", "acquired", "sold", "basis", "proceeds", "realized",
                  "wash_sale_disallowed", "term", "closing_trade_id", "currency"]
WASH_COLUMNS = ["loss_account", "symbol", "sold", "closing_trade_id", "quantity", "disallowed",
                "replacement_account", "replacement_symbol", "replacement_acquired", "replacement_trade_id"]
DIFF_COLUMNS = ["account", "closing_trade_id", "symbol", "trade_date", "broker_pnl", "our_pnl", "difference",
                "cause"]


def _f(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


def _marks(session: Session) -> dict[tuple[str, str], Decimal]:
    """The newest statement mark per account and symbol."""
    marks: dict[tuple[str, str], tuple[object, Decimal]] = {}
    for snap in session.exec(select(BrokerPositionSnapshot)):
        if snap.mark is None:
            continue
        key = (snap.account, snap.symbol)
        if key not in marks or (snap.report_date or 0) >= marks[key][0]:  # type: ignore[operator]
            marks[key] = (snap.report_date or 0, snap.mark)
    return {k: v[1] for k, v in marks.items()}


def open_lots(db: Engine) -> pd.DataFrame:
    with Session(db) as session:
        lots = session.exec(select(TaxLot).where(TaxLot.close_date.is_(None))  # type: ignore[union-attr]
                            .order_by(TaxLot.open_date, TaxLot.id)).all()
        marks = _marks(session)
    rows = []
    for lot in lots:
        mark = marks.get((lot.account, lot.symbol))
        # quantity is signed (short lots negative) and a short's basis is minus its credit: one formula for both.
        value = None if mark is None else mark * lot.quantity * lot.multiplier
        rows.append({"account": lot.account, "symbol": lot.symbol, "quantity": float(lot.quantity),
                     "acquired": lot.open_date, "holding_period_start": lot.holding_period_start or lot.open_date,
                     "basis": float(lot.cost_basis), "wash_sale_adjustment": float(lot.wash_sale_adjustment),
                     "mark": _f(mark), "unrealized": None if value is None else float(value - lot.cost_basis)})
    return pd.DataFrame(rows, columns=OPEN_COLUMNS)


def closed_lots(db: Engine, year: int | None = None) -> pd.DataFrame:
    with Session(db) as session:
        lots = session.exec(select(TaxLot).where(TaxLot.close_date.is_not(None))  # type: ignore[union-attr]
                            .order_by(TaxLot.close_date, TaxLot.id)).all()
    rows = [{"account": lot.account, "symbol": lot.symbol, "quantity": float(lot.quantity),
             "acquired": lot.open_date, "sold": lot.close_date, "basis": float(lot.cost_basis),
             "proceeds": _f(lot.proceeds), "realized": _f(lot.realized_pnl),
             "wash_sale_disallowed": float(lot.wash_sale_disallowed), "term": lot.holding_period,
             "closing_trade_id": lot.closing_trade_id, "currency": lot.currency}
            for lot in lots if year is None or (lot.close_date is not None and lot.close_date.year == year)]
    return pd.DataFrame(rows, columns=CLOSED_COLUMNS)


def realized_by_year_and_term(db: Engine) -> pd.DataFrame:
    """Realized P&L per tax year and term; ``allowed`` is after wash-sale disallowance."""
    closed = closed_lots(db)
    if closed.empty:
        return pd.DataFrame(columns=["year", "term", "realized", "disallowed", "allowed"])
    closed["year"] = [d.year for d in closed["sold"]]
    g = closed.groupby(["year", "term"], as_index=False).agg(realized=("realized", "sum"),
                                                             disallowed=("wash_sale_disallowed", "sum"))
    g["allowed"] = g["realized"] + g["disallowed"]
    return g


def wash_sales(db: Engine) -> pd.DataFrame:
    with Session(db) as session:
        rows = session.exec(select(WashSaleRecord).order_by(WashSaleRecord.sold, WashSaleRecord.id)).all()
    return pd.DataFrame([{c: (float(getattr(r, c)) if isinstance(getattr(r, c), Decimal) else getattr(r, c))
                          for c in WASH_COLUMNS} for r in rows], columns=WASH_COLUMNS)


def broker_differences(db: Engine) -> pd.DataFrame:
    with Session(db) as session:
        rows = session.exec(select(LotPnlCheck).order_by(LotPnlCheck.trade_date, LotPnlCheck.id)).all()
    return pd.DataFrame([{c: (float(getattr(r, c)) if isinstance(getattr(r, c), Decimal) else getattr(r, c))
                          for c in DIFF_COLUMNS} for r in rows if r.cause], columns=DIFF_COLUMNS)


def broker_check_counts(db: Engine) -> dict[str, int]:
    with Session(db) as session:
        rows = session.exec(select(LotPnlCheck)).all()
    return {"checked": len(rows), "matched": sum(1 for r in rows if not r.cause),
            "different": sum(1 for r in rows if r.cause)}
