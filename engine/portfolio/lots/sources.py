"""Every feed of the lot engine: the transactions table (IBKR Flex, tastytrade, CSV imports) and the paper
broker's fills. All accounts go through one run so wash sales are found across accounts."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.models import Fill, Transaction
from engine.options.occ import parse_occ
from engine.portfolio.lots.model import (
    Asset,
    BrokerFigure,
    CloseKind,
    Instrument,
    RenameEvent,
    SplitEvent,
    TradeEvent,
    trade_day,
)

# "dividend_reinvest": shares bought with a dividend (tastytrade's Receive Deliver / Dividend) are a purchase.
TRADE_TYPES = frozenset({"trade", "receive deliver", "receive_deliver", "dividend_reinvest"})
REMOVALS = frozenset({"expiration", "expire", "expired"})  # an option removed at zero on its expiry
# tastytrade's sync stores Receive Deliver rows under these types (engine.execution.brokers.tastytrade).
DELIVERIES = {"assignment": CloseKind.assign, "exercise": CloseKind.exercise}


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


def _field(raw: dict, name: str) -> str:
    """A raw attribute in either spelling: the API's dasherized keys (``transaction-sub-type``, as the
    tastytrade sync stores them) or snake_case."""
    return str(raw.get(name) or raw.get(name.replace("_", "-")) or "")


def _side(raw: dict) -> int:
    """+1 buy, -1 sell from a broker's action text (tastytrade "Buy to Open", "Sell to Close"), 0 unknown."""
    action = _field(raw, "action").lower()
    return 1 if action.startswith("buy") else -1 if action.startswith("sell") else 0


def _kind(txn_type: str, sub: str) -> CloseKind | None:
    """What a row is to the lot engine; None for rows that are not position changes (cash, dividends)."""
    if txn_type in REMOVALS or sub in REMOVALS:
        return CloseKind.expire
    if txn_type in DELIVERIES:
        return DELIVERIES[txn_type]
    if txn_type in TRADE_TYPES:
        return DELIVERIES.get(sub, CloseKind.trade)
    return None


def generic_events(rows: Iterable[Transaction]) -> list[TradeEvent]:
    """Trades of brokers that store plain rows (tastytrade, CSV): quantity signed or with a buy/sell action,
    price per share. An expiration row closes whatever is open at zero; an exercise or assignment row of an
    option is paired with the stock row delivered the same day, so the premium folds into the stock."""
    out: list[TradeEvent] = []
    for txn in rows:
        raw = txn.raw if isinstance(txn.raw, dict) else {}
        kind = _kind(txn.type.lower(), _field(raw, "transaction_sub_type").lower())
        if kind is None or not txn.symbol or txn.quantity == 0:
            continue
        mult = raw.get("multiplier")
        inst = instrument_for_symbol(txn.symbol, Decimal(str(mult)) if mult else None)
        trade_id = str(raw.get("row")) if txn.broker == "csv" and raw.get("row") else txn.broker_txn_id
        side = _side(raw)
        quantity = Decimal(txn.quantity) if side == 0 else side * abs(Decimal(txn.quantity))
        removal = kind is CloseKind.expire
        out.append(TradeEvent(account=txn.account, instrument=inst, at=txn.executed_at, quantity=quantity,
                              price=Decimal(txn.price), fees=Decimal(txn.fees), trade_id=trade_id,
                              currency=txn.currency, txn_id=txn.id, side_from_position=removal and side == 0,
                              closes_only=removal, broker=txn.broker, kind=kind))
    return _pair_deliveries(out)


def _pair_deliveries(events: list[TradeEvent]) -> list[TradeEvent]:
    """Attach each exercised/assigned option's stock row (same account, underlying, day and kind, 100 shares
    a contract, bought for a long call or short put, sold otherwise) as its delivery at the strike."""
    used: set[int] = set()
    paired: dict[int, TradeEvent] = {}
    for e in events:
        inst = e.instrument
        if e.kind not in DELIVERIES.values() or inst.asset is not Asset.option or inst.strike is None:
            continue
        buys_stock = (inst.right == "C") == (e.quantity < 0)  # closing a long call / a short put: stock bought
        units = abs(e.quantity) * inst.multiplier
        for s in events:
            if (id(s) in used or s.instrument.asset is not Asset.stock or s.kind is not e.kind
                    or s.account != e.account or s.instrument.symbol != inst.base
                    or trade_day(s.at) != trade_day(e.at) or abs(s.quantity) != units
                    or (s.quantity > 0) != buys_stock):
                continue
            used.add(id(s))
            stock = TradeEvent(**{**s.__dict__, "price": inst.strike, "kind": CloseKind.trade})
            paired[id(e)] = TradeEvent(**{**e.__dict__, "price": Decimal(0), "delivery": stock,
                                          "closes_only": True})
            break
    out = []
    for e in events:
        if id(e) in used:
            continue
        e = paired.get(id(e), e)
        if e.delivery is None and e.kind in DELIVERIES.values():
            # No stock row found (yet): the option still closes, never opens a lot; the stock row, when
            # alone, is an ordinary purchase or sale at its price.
            e = TradeEvent(**{**e.__dict__, "closes_only": e.instrument.asset is Asset.option,
                              "kind": e.kind if e.instrument.asset is Asset.option else CloseKind.trade})
        out.append(e)
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


def load_events(db: Engine, include_paper: bool = True) -> list[TradeEvent | SplitEvent | RenameEvent | BrokerFigure]:
    from engine.ibkr.lot_feed import ibkr_events

    with Session(db) as session:
        rows = list(session.exec(select(Transaction).order_by(Transaction.executed_at, Transaction.id)))
        fills = list(session.exec(select(Fill).order_by(Fill.filled_at, Fill.id))) if include_paper else []
    events: list[TradeEvent | SplitEvent | RenameEvent | BrokerFigure] = []
    events.extend(ibkr_events(r for r in rows if r.broker == "ibkr"))
    events.extend(generic_events(r for r in rows if r.broker != "ibkr"))
    events.extend(paper_events(fills))
    return events
