"""Every feed of the lot engine: the transactions table (IBKR Flex, tastytrade, CSV imports) and the paper
broker's fills. All accounts go through one run so wash sales are found across accounts."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.models import Fill, Transaction
from engine.options.occ import parse_occ
from engine.portfolio.lots.model import Asset, Instrument, RenameEvent, SplitEvent, TradeEvent

TRADE_TYPES = frozenset({"trade"})


def instrument_for_symbol(symbol: str, multiplier: Decimal | None = None) -> Instrument:
    """A ticker, or an OCC option symbol (either spelling): options default to 100 shares a contract."""
    text = symbol.strip()
    if len(text) >= 16:
        try:
            occ = parse_occ(text)
        except ValueError:
            pass
        else:
            return Instrument(text, Asset.option, occ.root, multiplier or Decimal(100), occ.right, occ.strike,
                              occ.expiry)
    return Instrument(text.upper(), Asset.stock, text.upper(), multiplier or Decimal(1))


def generic_events(rows: Iterable[Transaction]) -> list[TradeEvent]:
    """Trades of brokers that store plain rows (tastytrade, CSV): signed quantity, price per share."""
    out = []
    for txn in rows:
        if txn.type not in TRADE_TYPES or not txn.symbol or txn.quantity == 0:
            continue
        mult = txn.raw.get("multiplier") if isinstance(txn.raw, dict) else None
        inst = instrument_for_symbol(txn.symbol, Decimal(str(mult)) if mult else None)
        trade_id = str(txn.raw.get("row")) if txn.broker == "csv" and txn.raw.get("row") else txn.broker_txn_id
        out.append(TradeEvent(account=txn.account, instrument=inst, at=txn.executed_at,
                              quantity=Decimal(txn.quantity), price=Decimal(txn.price), fees=Decimal(txn.fees),
                              trade_id=trade_id, currency=txn.currency, txn_id=txn.id))
    return out


def paper_events(fills: Iterable[Fill], account: str = "paper") -> list[TradeEvent]:
    out = []
    for f in fills:
        inst = instrument_for_symbol(f.instrument, Decimal(f.multiplier))
        qty = Decimal(f.quantity) * (1 if f.side == "buy" else -1)
        out.append(TradeEvent(account=account, instrument=inst, at=f.filled_at, quantity=qty,
                              price=Decimal(f.price), fees=Decimal(f.commission) + Decimal(f.fees),
                              trade_id=f.broker_fill_id))
    return out


def load_events(db: Engine, include_paper: bool = True) -> list[TradeEvent | SplitEvent | RenameEvent]:
    from engine.ibkr.lot_feed import ibkr_events

    with Session(db) as session:
        rows = list(session.exec(select(Transaction).order_by(Transaction.executed_at, Transaction.id)))
        fills = list(session.exec(select(Fill).order_by(Fill.filled_at, Fill.id))) if include_paper else []
    events: list[TradeEvent | SplitEvent | RenameEvent] = []
    events.extend(ibkr_events(r for r in rows if r.broker == "ibkr"))
    events.extend(generic_events(r for r in rows if r.broker != "ibkr"))
    events.extend(paper_events(fills))
    return events
