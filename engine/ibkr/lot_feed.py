"""IBKR transactions (stored Flex records) -> lot engine events.

What the statement needs before the lot engine can use it:
- cancellations (``buySell="BUY (Ca.)"``) remove the execution they cancel, and themselves;
- exercise and assignment: the option's closing row (``notes`` A / Ex, or ``transactionType`` Assignment /
  Exercise, or a price-0 book trade with a stock book trade at the strike on the same day) is paired with
  the stock bought or sold at the strike, so the premium folds into the stock (Pub 550);
- ``Lot`` rows name the lots IBKR closed (its own lot choice);
- splits come from corporate actions whose description says ``SPLIT a FOR b``; a cash merger (type TC)
  is a sale at its proceeds;
- only execution-level rows count (``levelOfDetail`` ORDER / CLOSED_LOT rows repeat them); forex
  conversions (asset CASH) are currency, not lots.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time
from decimal import Decimal

from engine.ibkr.flex_parse import parse_flex_date, parse_flex_datetime, to_decimal
from engine.models import Transaction
from engine.options.occ import parse_occ
from engine.portfolio.lots.model import (
    NEW_YORK,
    Asset,
    BrokerFigure,
    CloseKind,
    Instrument,
    LotPick,
    RenameEvent,
    SplitEvent,
    TradeEvent,
    trade_day,
)

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"SPLIT\s+(\d+(?:\.\d+)?)\s+FOR\s+(\d+(?:\.\d+)?)", re.I)
SKIP_ASSETS = frozenset({"CASH"})
EXECUTION_LEVELS = frozenset({"", "EXECUTION"})
# Causes of the broker figures on rows that change no lot (listed among the differences).
FOREX = "currency conversion (asset CASH): IBKR's FX P&L, not a security lot"
CANCELLED = "cancelled by a (Ca.) row: neither the execution nor its cancellation changes a lot"
DELISTING = ("delisting (DW) is not applied as a disposal: the shares still exist; a worthless-security loss "
             "is claimed when they become worthless (Pub 550)")


def _d(raw: dict, name: str) -> Decimal | None:
    try:
        return to_decimal(raw.get(name), name)
    except ValueError:
        return None


def instrument_of(raw: dict, symbol: str) -> Instrument:
    category = raw.get("assetCategory", "STK")
    multiplier = _d(raw, "multiplier") or Decimal(1)
    if category == "OPT":
        expiry = parse_flex_date(raw.get("expiry")) if raw.get("expiry") else None
        underlying = raw.get("underlyingSymbol") or (symbol[:-15].strip() if len(symbol) > 15 else symbol)
        right, strike = raw.get("putCall") or None, _d(raw, "strike")
        if expiry is None or right is None or strike is None:
            # Minimal statements carry only the OCC symbol: the contract terms are in it.
            try:
                occ = parse_occ(symbol)
            except ValueError:
                pass
            else:
                expiry, right, strike = expiry or occ.expiry, right or occ.right, strike or occ.strike
                underlying = raw.get("underlyingSymbol") or occ.root
        return Instrument(symbol, Asset.option, underlying, multiplier, right, strike, expiry)
    if category == "STK":
        return Instrument(symbol, Asset.stock, symbol, multiplier)
    return Instrument(symbol, Asset.other, raw.get("underlyingSymbol") or symbol, multiplier)


def _notes(raw: dict) -> set[str]:
    return {n.strip() for n in re.split(r"[;,]", raw.get("notes") or "") if n.strip()}


def _trade_id(txn: Transaction) -> str:
    raw = txn.raw
    for name in ("tradeID", "transactionID"):
        value = (raw.get(name) or "").strip()
        if value and value != "0":
            return value
    return txn.broker_txn_id


def _event(txn: Transaction, picks: dict[tuple[str, str], list[LotPick]]) -> TradeEvent:
    raw = txn.raw
    inst = instrument_of(raw, txn.symbol or "")
    notes = _notes(raw)
    ttype = (raw.get("transactionType") or "").lower()
    kind = CloseKind.trade
    if "Ep" in notes or ttype == "expiration":
        kind = CloseKind.expire
    trade_id = _trade_id(txn)
    return TradeEvent(
        account=txn.account, instrument=inst, at=txn.executed_at, quantity=Decimal(txn.quantity),
        price=Decimal(txn.price), fees=Decimal(txn.fees), trade_id=trade_id, currency=txn.currency,
        gross=Decimal(txn.amount) if raw.get("proceeds") not in (None, "") else None, kind=kind,
        closes_only=(raw.get("openCloseIndicator") or "").strip() == "C",
        lot_picks=tuple(picks.get((txn.account, raw.get("tradeID") or ""), ())),
        broker_pnl=_d(raw, "fifoPnlRealized"), txn_id=txn.id, broker="ibkr",
    )


def _figure(txn: Transaction, cause: str) -> BrokerFigure | None:
    """The broker's realized figure of a row that changes no lot, when it reports one for a close."""
    pnl = _d(txn.raw, "fifoPnlRealized")
    if pnl is None or (pnl == 0 and "C" not in (txn.raw.get("openCloseIndicator") or "")):
        return None
    return BrokerFigure(txn.account, _trade_id(txn), txn.symbol or "", txn.executed_at, pnl, cause)


def _drop_cancelled(trades: list[Transaction]) -> list[Transaction]:
    keep = list(trades)
    for txn in trades:
        if "(Ca.)" not in (txn.raw.get("buySell") or ""):
            continue
        keep.remove(txn)
        for orig in keep:
            if (orig.account == txn.account and orig.symbol == txn.symbol and orig.quantity == -txn.quantity
                    and orig.price == txn.price and "(Ca.)" not in (orig.raw.get("buySell") or "")):
                keep.remove(orig)
                break
    return keep


def _exercise_code(txn: Transaction) -> CloseKind | None:
    notes = _notes(txn.raw)
    ttype = (txn.raw.get("transactionType") or "").lower()
    if "A" in notes or ttype == "assignment":
        return CloseKind.assign
    if "Ex" in notes or ttype == "exercise":
        return CloseKind.exercise
    return None


def _pair_deliveries(events: list[TradeEvent], txns: dict[str, Transaction]) -> list[TradeEvent]:
    """Attach each exercise/assignment's stock leg to its option row (and drop it from the list)."""
    stock_by_day: dict[tuple[str, str, object], list[TradeEvent]] = defaultdict(list)
    for e in events:
        if e.instrument.asset is Asset.stock:
            stock_by_day[(e.account, e.instrument.symbol, trade_day(e.at))].append(e)
    used: set[int] = set()
    out: list[TradeEvent] = []
    paired: dict[int, TradeEvent] = {}
    for e in events:
        inst = e.instrument
        if inst.asset is not Asset.option or e.price != 0 or inst.strike is None:
            continue
        txn = txns[e.trade_id]
        code = _exercise_code(txn)
        book = (txn.raw.get("transactionType") or "") in ("BookTrade", "Assignment", "Exercise")
        if code is None and not book:
            continue
        units = abs(e.quantity) * inst.multiplier
        # Long call exercised / short put assigned: stock bought; long put exercised / short call assigned: sold.
        closing_long = e.quantity < 0
        buys_stock = (inst.right == "C") == closing_long
        for s in stock_by_day.get((e.account, inst.base, trade_day(e.at)), []):
            if id(s) in used or s.price != inst.strike or abs(s.quantity) != units:
                continue
            if (s.quantity > 0) != buys_stock:
                continue
            used.add(id(s))
            kind = code or (CloseKind.exercise if closing_long else CloseKind.assign)
            paired[id(e)] = TradeEvent(**{**e.__dict__, "kind": kind, "delivery": s, "closes_only": True})
            break
    for e in events:
        if id(e) in used:
            continue
        e = paired.get(id(e), e)
        inst = e.instrument
        if (e.delivery is None and e.kind is CloseKind.trade and inst.asset is Asset.option and e.price == 0
                and inst.expiry is not None and trade_day(e.at) >= inst.expiry):
            e = TradeEvent(**{**e.__dict__, "kind": CloseKind.expire})  # worthless at expiry: a close at zero
        out.append(e)
    return out


_RATIO = re.compile(r"(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s+(?:Split|Reverse)", re.I)
_RENAME = re.compile(r"CUSIP/ISIN CHANGE|TENDERED TO|NAME CHANGE|SYMBOL CHANGE", re.I)
_DISPOSAL_TYPES = frozenset({"TC", "TO", "BM"})  # cash merger, tender for cash, bond maturity


def _detail_rows(rows: list[Transaction]) -> list[Transaction]:
    """IBKR repeats corporate actions as SUMMARY and DETAIL rows: use the details where they exist."""
    detailed = {(t.account, t.symbol, trade_day(t.executed_at)) for t in rows
                if (t.raw.get("levelOfDetail") or "").upper() == "DETAIL"}
    return [t for t in rows if (t.raw.get("levelOfDetail") or "").upper() != "SUMMARY"
            or (t.account, t.symbol, trade_day(t.executed_at)) not in detailed]


def _day_start(txn: Transaction) -> datetime:
    # A corporate action applies to the lots held at the start of its day.
    return datetime.combine(trade_day(txn.executed_at), time(0, 0), tzinfo=NEW_YORK)


def _corporate_actions(rows: list[Transaction]) -> list[TradeEvent | SplitEvent | RenameEvent | BrokerFigure]:
    """Splits, symbol changes and cash disposals; the rest (spinoffs, rights, stock dividends) is logged."""
    rows = _detail_rows(rows)
    out: list[TradeEvent | SplitEvent | RenameEvent | BrokerFigure] = []
    seen: set[tuple[object, ...]] = set()
    used: set[int] = set()
    for txn in rows:
        raw, desc = txn.raw, txn.raw.get("description") or ""
        code = (raw.get("type") or "").upper()
        m = _SPLIT.search(desc) or _RATIO.search(desc)
        if m is not None or code in ("FS", "RS"):
            base = (txn.symbol or "").removesuffix(".OLD")
            ratio = Decimal(m[1]) / Decimal(m[2]) if m is not None else None
            key = ("split", txn.account, base, trade_day(txn.executed_at), ratio)
            if key not in seen:
                seen.add(key)
                delta = None if ratio is not None else Decimal(txn.quantity)
                out.append(SplitEvent(base, _day_start(txn), ratio, txn.account, delta))
            continue
        if _RENAME.search(desc) or code == "IC":
            if id(txn) in used or txn.quantity >= 0:
                continue
            for other in rows:
                if (id(other) not in used and other is not txn and other.account == txn.account
                        and other.executed_at == txn.executed_at and other.quantity > 0
                        and other.symbol != txn.symbol):
                    used |= {id(txn), id(other)}
                    ratio = Decimal(other.quantity) / -Decimal(txn.quantity)
                    out.append(RenameEvent(txn.account, txn.symbol or "", other.symbol or "", _day_start(txn), ratio))
                    break
            continue
        proceeds = _d(raw, "proceeds") or Decimal(0)
        if txn.quantity < 0 and proceeds > 0 and (code in _DISPOSAL_TYPES or "MERGED" in desc.upper()):
            key = ("sale", txn.account, txn.symbol, trade_day(txn.executed_at), txn.quantity)
            if key in seen:
                continue
            seen.add(key)
            out.append(TradeEvent(
                account=txn.account, instrument=instrument_of(raw, txn.symbol or ""), at=txn.executed_at,
                quantity=Decimal(txn.quantity), price=proceeds / -Decimal(txn.quantity), trade_id=_trade_id(txn),
                currency=txn.currency, gross=proceeds, closes_only=True, broker_pnl=_d(raw, "fifoPnlRealized"),
                txn_id=txn.id, broker="ibkr"))
            continue
        log.info("corporate action %s %s (%s) on %s is not applied to lots", code or "?", txn.symbol,
                 desc[:60], trade_day(txn.executed_at))
        figure = _figure(txn, DELISTING if code == "DW" else
                         f"corporate action {code or '?'} ({desc[:60]}) is not applied to lots")
        if figure is not None:
            out.append(figure)
    return out


def ibkr_events(rows: Iterable[Transaction]) -> list[TradeEvent | SplitEvent | RenameEvent | BrokerFigure]:
    rows = list(rows)
    executions = [t for t in rows if t.type == "trade" and (t.raw.get("levelOfDetail") or "").upper()
                  in EXECUTION_LEVELS]
    trades = [t for t in executions if t.raw.get("assetCategory") not in SKIP_ASSETS]
    figures = [f for t in executions if t.raw.get("assetCategory") in SKIP_ASSETS
               if (f := _figure(t, FOREX)) is not None]
    picks: dict[tuple[str, str], list[LotPick]] = defaultdict(list)
    for t in rows:
        if t.type == "lot" and t.raw.get("tradeID"):
            opened = parse_flex_datetime(t.raw.get("openDateTime") or t.raw.get("tradeDate"))
            if opened is not None:
                picks[(t.account, t.raw["tradeID"])].append(LotPick(trade_day(opened), abs(Decimal(t.quantity))))
    ordered = sorted(trades, key=lambda t: (t.executed_at, t.id or 0))
    trades = _drop_cancelled(ordered)
    kept = {id(t) for t in trades}
    figures += [f for t in ordered if id(t) not in kept if (f := _figure(t, CANCELLED)) is not None]
    txns = {_trade_id(t): t for t in trades}
    events = _pair_deliveries([_event(t, picks) for t in trades], txns)
    corp = [t for t in rows if t.type == "corporate_action"]
    return [*_corporate_actions(corp), *events, *figures]
