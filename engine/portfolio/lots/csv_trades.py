"""``lots import-trades``: a generic trades CSV into the transactions table (broker ``csv``).

Header ``date,symbol,side,quantity,price,fees``: ISO date, a ticker or an OCC option symbol, buy|sell,
a positive quantity, the price per share or per option share, the row's total fees. Each row's key is
its 1-based row number plus a hash of its content, so re-importing the same file adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.models import Transaction
from engine.portfolio.lots.sources import instrument_for_symbol

HEADER = ["date", "symbol", "side", "quantity", "price", "fees"]


class CsvTradeError(ValueError):
    pass


def _dec(row: int, name: str, text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise CsvTradeError(f"row {row}: {name}={text!r} is not a number") from None


def read_trades_csv(path: Path, account: str) -> list[Transaction]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header != HEADER:
            raise CsvTradeError(f"{path}: header must be {','.join(HEADER)}, got {','.join(header)!r}")
        out = []
        for n, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(HEADER):
                raise CsvTradeError(f"row {n}: expected {len(HEADER)} fields, got {len(cells)}")
            d, symbol, side, qty, price, fees = (c.strip() for c in cells)
            try:
                day = date.fromisoformat(d)
            except ValueError:
                raise CsvTradeError(f"row {n}: date={d!r} is not an ISO date (YYYY-MM-DD)") from None
            if side.lower() not in ("buy", "sell"):
                raise CsvTradeError(f"row {n}: side={side!r} must be buy or sell")
            quantity = _dec(n, "quantity", qty)
            if quantity <= 0:
                raise CsvTradeError(f"row {n}: quantity={qty!r} must be positive")
            if not symbol:
                raise CsvTradeError(f"row {n}: symbol is empty")
            inst = instrument_for_symbol(symbol)
            signed = quantity if side.lower() == "buy" else -quantity
            digest = hashlib.sha256(",".join(cells).encode()).hexdigest()[:16]
            # Rows of one day keep their file order: row n at 16:00 UTC + n microseconds.
            at = datetime.combine(day, time(16, 0), tzinfo=UTC).replace(microsecond=min(n, 999_999))
            out.append(Transaction(
                broker="csv", account=account[:32], broker_txn_id=f"row{n}:{digest}", type="trade",
                symbol=inst.symbol, underlying=inst.base, quantity=signed, price=_dec(n, "price", price),
                amount=-signed * _dec(n, "price", price) * inst.multiplier, fees=_dec(n, "fees", fees or "0"),
                executed_at=at, raw={"row": n, "file": path.name, "multiplier": str(inst.multiplier)}))
        return out


def import_trades_csv(db: Engine, path: Path, account: str) -> dict[str, int]:
    rows = read_trades_csv(path, account)
    with Session(db) as session:
        have = set(session.exec(select(Transaction.broker_txn_id).where(
            Transaction.broker == "csv", Transaction.account == account[:32])))
        new = [r for r in rows if r.broker_txn_id not in have]
        session.add_all(new)
        session.commit()
    return {"read": len(rows), "new": len(new)}
