"""The run-day JSON line: stuck exits, settled expiries, structures, engine vs broker equity."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlmodel import SQLModel

from engine.config import load_settings
from engine.context import EngineContext
from engine.db import make_engine, session_scope
from engine.execution.ports import BrokerAccount
from engine.models import AccountSnapshot, Order, Position, Transaction
from engine.replay import books_summary

NOW = datetime(2026, 7, 20, 20, 0, tzinfo=UTC)


class Broker:
    name = "paper"

    def account(self) -> BrokerAccount:
        return BrokerAccount(Decimal("100000"), Decimal("100000"), Decimal("100000"))


def _order(key: str, attempt: int, intent: str = "close") -> Order:
    return Order(client_order_id=f"{key}-{attempt}", decision_key=key, strategy="t", symbol="X", structure="s",
                 intent=intent, legs=[], quantity=1, attempt=attempt, broker="paper", status="expired",
                 created_at=NOW, updated_at=NOW)


def test_summary_counts_exits_tried_more_than_three_times(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    SQLModel.metadata.create_all(db)
    with session_scope(db) as s:
        for n in range(1, 5):
            s.add(_order("position:1:all", n))  # 4 attempts: stuck
        for n in range(1, 4):
            s.add(_order("position:2:all", n))  # 3 attempts: not (yet) stuck
        for n in range(1, 6):
            s.add(_order(f"signal:{n}", n, intent="open"))  # entries do not count
        s.add(Transaction(broker="paper", account="paper", broker_txn_id="e1", type="expired", symbol="X C",
                          executed_at=NOW))
        s.add(Position(strategy="t", symbol="X", structure="long_call", status="closed", opened_at=NOW))
        s.add(Position(strategy="t", symbol="Y", structure="call_debit_spread", status="closed", opened_at=NOW))
        s.add(AccountSnapshot(at=NOW, trade_date=date(2026, 7, 20), equity=Decimal("100000.01"),
                              detail={"broker_equity": "100000.00"}))
    settings = load_settings(data_dir=tmp_path / "var")
    out = books_summary(EngineContext(settings, db, None, Broker(), None))  # type: ignore[arg-type]
    assert out["stuck_exits"] == 1
    assert out["expiries_settled"] == 1
    assert out["structures"] == {"call_debit_spread": 1, "long_call": 1}
    assert out["open_positions"] == 0
    assert (out["equity_engine"], out["equity_broker"], out["difference"]) == (100000.01, 100000.0, 0.01)
