"""Flex records -> the transactions table (and position snapshots), incrementally and idempotently.

Each record's key (IBKR's transactionID/tradeID, else a content hash; see ``flex_parse``) is its
``broker_txn_id``: re-importing the same or an overlapping statement inserts nothing twice. Every
attribute is kept in ``raw`` (the broker's ``fifoPnlRealized`` among them, so ours can be set beside it).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.ibkr.flex_parse import FlexRecord, FlexStatementData, cash_content_key, parse_flex_date
from engine.models import BrokerPositionSnapshot, Transaction

BROKER = "ibkr"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEY_MAX = 64  # Transaction.broker_txn_id

CASH_TYPES = {  # IBKR CashTransaction.type -> our transaction type
    "dividends": "dividend", "payment in lieu of dividends": "dividend", "withholding tax": "withholding",
    "broker interest received": "interest", "broker interest paid": "interest", "bond interest received":
    "interest", "bond interest paid": "interest", "other fees": "fee", "commission adjustments": "fee",
    "deposits/withdrawals": "transfer", "deposits & withdrawals": "transfer", "advisor fees": "fee",
    "price adjustments": "adjustment", "bond interest": "interest",
}
TYPE_BY_KIND = {"Trade": "trade", "Lot": "lot", "CorporateAction": "corporate_action", "OptionEAE": "option_eae"}


def _key(record: FlexRecord) -> str:
    if len(record.key) <= KEY_MAX:
        return record.key
    return record.kind + ":k:" + hashlib.sha256(record.key.encode()).hexdigest()[:40]


def _zero(value: Decimal | None) -> Decimal:
    return Decimal("0") if value is None else value


def _underlying(record: FlexRecord) -> str | None:
    if record.get("underlyingSymbol"):
        return record.get("underlyingSymbol")
    symbol = record.get("symbol")
    if record.get("assetCategory") in ("OPT", "FOP") and len(symbol) > 15:
        return symbol[:-15].strip() or None
    return symbol or None


def record_to_transaction(record: FlexRecord) -> Transaction:
    if record.kind == "CashTransaction":
        kind = CASH_TYPES.get(record.get("type").strip().lower(), "cash")
        quantity, price = Decimal("0"), Decimal("0")
        amount, fees = _zero(record.dec("amount")), Decimal("0")
    else:
        kind = TYPE_BY_KIND[record.kind]
        quantity = _zero(record.dec("quantity"))
        price = _zero(record.dec("tradePrice"))
        amount = _zero(record.dec("proceeds") if record.attrs.get("proceeds") else record.dec("amount"))
        # IBKR reports commissions and taxes as negative numbers when paid; fees here are positive costs.
        fees = -_zero(record.dec("ibCommission")) - _zero(record.dec("taxes"))
    return Transaction(
        broker=BROKER, account=record.account[:32], broker_txn_id=_key(record), type=kind,
        symbol=record.get("symbol") or None, underlying=_underlying(record), quantity=quantity, price=price,
        amount=amount, fees=fees, currency=record.get("currency", "USD") or "USD",
        executed_at=record.when or EPOCH, raw={"record": record.kind, **record.attrs},
    )


def record_to_snapshot(record: FlexRecord) -> BrokerPositionSnapshot:
    return BrokerPositionSnapshot(
        broker=BROKER, account=record.account[:32], snapshot_key=record.key[:96],
        report_date=parse_flex_date(record.attrs.get("reportDate")), symbol=record.get("symbol")[:32],
        asset=record.get("assetCategory"), quantity=_zero(record.dec("position")), mark=record.dec("markPrice"),
        cost_basis=record.dec("costBasisMoney"), currency=record.get("currency", "USD") or "USD",
        raw={"record": record.kind, **record.attrs},
    )


def _legacy_cash_keys(session: Session, accounts: set[str]) -> set[tuple[str, str]]:
    """Cash rows stored before they were keyed by content (actionID + a per-statement counter), under the
    key they have now, so upgrading does not import every stored dividend a second time."""
    rows = session.exec(select(Transaction).where(
        Transaction.broker == BROKER, Transaction.account.in_(accounts),  # type: ignore[attr-defined]
        Transaction.broker_txn_id.startswith("CashTransaction:"),  # type: ignore[attr-defined]
        ~Transaction.broker_txn_id.startswith("CashTransaction:c:"))  # type: ignore[attr-defined]
        .order_by(Transaction.id)).all()
    seen: Counter[str] = Counter()
    keys: set[tuple[str, str]] = set()
    for txn in rows:
        attrs = {k: v for k, v in (txn.raw or {}).items() if k != "record"}
        base = cash_content_key(txn.account, attrs)
        seen[base] += 1
        keys.add((txn.account, base if seen[base] == 1 else f"{base}#{seen[base]}"))
    return keys


def import_statement(db: Engine, data: FlexStatementData) -> dict[str, dict[str, int]]:
    """Insert the records not stored yet. Returns {record type: {"read": n, "new": m}}."""
    read: Counter[str] = Counter(r.kind for r in data.records)
    new: Counter[str] = Counter()
    with Session(db) as session:
        accounts = {r.account[:32] for r in data.records}
        have_txn = {(a, k) for a, k in session.exec(
            select(Transaction.account, Transaction.broker_txn_id)
            .where(Transaction.broker == BROKER, Transaction.account.in_(accounts)))}  # type: ignore[attr-defined]
        have_txn |= _legacy_cash_keys(session, accounts)
        have_snap = {(a, k) for a, k in session.exec(
            select(BrokerPositionSnapshot.account, BrokerPositionSnapshot.snapshot_key)
            .where(BrokerPositionSnapshot.broker == BROKER,
                   BrokerPositionSnapshot.account.in_(accounts)))}  # type: ignore[attr-defined]
        for record in data.records:
            if record.kind == "OpenPosition":
                snap = record_to_snapshot(record)
                if (snap.account, snap.snapshot_key) in have_snap:
                    continue
                have_snap.add((snap.account, snap.snapshot_key))
                session.add(snap)
            else:
                txn = record_to_transaction(record)
                if (txn.account, txn.broker_txn_id) in have_txn:
                    continue
                have_txn.add((txn.account, txn.broker_txn_id))
                session.add(txn)
            new[record.kind] += 1
        session.commit()
    return {kind: {"read": read[kind], "new": new[kind]} for kind in sorted(read)}
