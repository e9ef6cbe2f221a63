"""Every feed of the lot engine: the transactions table (IBKR Flex, tastytrade, CSV imports) and the paper
broker's fills. All accounts go through one run so wash sales are found across accounts."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.models import Fill, Transaction
from engine.options.occ import parse_occ
from engine.portfolio.lots.model import Asset, CloseKind, Instrument, RenameEvent, SplitEvent, TradeEvent

TRADE_TYPES = frozenset({"trade", "receive deliver", "receive_deliver"})
REMOVALS = frozenset({"expiration", "expire", "expired"})  # an option removed at zero on its expiry


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


def _side(raw: dict) -> int:
    """+1 buy, -1 sell from a broker's action text (tastytrade "Buy to Open", "Sell to Close"), 0 unknown."""
    action = str(raw.get("action") or "").lower()
    return 1 if action.startswith("buy") else -1 if action.startswith("sell") else 0


def generic_events(rows: Iterable[Transaction]) -> list[TradeEvent]:
    """Trades of brokers that store plain rows (tastytrade, CSV): quantity signed or with a buy/sell action,
    price per share; an expiration row closes whatever is open at zero."""
    out = []
    for txn in rows:
        raw = txn.raw if isinstance(txn.raw, dict) else {}
        if txn.type.lower() not in TRADE_TYPES or not txn.symbol or txn.quantity == 0:
            continue
        mult = raw.get("multiplier")
        inst = instrument_for_symbol(txn.symbol, Decimal(str(mult)) if mult else None)
        trade_id = str(raw.get("row")) if txn.broker == "csv" and raw.get("row") else txn.broker_txn_id
        sub = str(raw.get("transaction_sub_type") or raw.get("sub_type") or "").lower()
        side = _side(raw)
        quantity = Decimal(txn.quantity) if side == 0 else side * abs(Decimal(txn.quantity))
        removal = sub in REMOVALS and side == 0
        out.append(TradeEvent(account=txn.account, instrument=inst, at=txn.executed_at, quantity=quantity,
                              price=Decimal(txn.price), fees=Decimal(txn.fees), trade_id=trade_id,
                              currency=txn.currency, txn_id=txn.id, side_from_position=removal, broker=txn.broker,
                              kind=CloseKind.expire if sub in REMOVALS else CloseKind.trade))
    return out


def paper_events(fills: Iterable[Fill], account: str = "paper") -> list[TradeEvent]:
    out = []
    for f in fills:
        inst = instrument_for_symbol(f.instrument, Decimal(f.multiplier))
        qty = Decimal(f.quantity) * (1 if f.side == "buy" else -1)
        out.append(TradeEvent(account=account, instrument=inst, at=f.filled_at, quantity=qty,
                              price=Decimal(f.price), fees=Decimal(f.commission) + Decimal(f.fees),
                              trade_id=f.broker_fill_id, broker="paper"))
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
