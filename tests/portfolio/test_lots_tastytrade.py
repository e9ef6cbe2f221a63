"""tastytrade's transactions, as the sync stores them, through the lot engine: expirations, exercises and
assignments (Receive Deliver rows) fold or close like the IBKR ones (IRS Pub 550 "Puts and Calls")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal as D

import pytest
from sqlmodel import Session

from engine.execution.brokers.tastytrade import TastytradeBroker
from engine.portfolio.lots import CloseKind, LotResult, compute_lots
from engine.portfolio.lots.sources import load_events
from engine.portfolio.sync import store_transactions
from tests.execution.tastytrade_fake import FakeTastytrade
from tests.execution.test_tastytrade_adapter import NOW, make

PUT_560 = "SPY   261218P00560000"
CALL_600 = "SPY   261218C00600000"


@pytest.fixture
def fake() -> FakeTastytrade:
    return FakeTastytrade(clock=lambda: NOW)


@pytest.fixture
def broker(fake: FakeTastytrade) -> Iterator[TastytradeBroker]:
    b = make(fake)
    yield b
    b.close()


def _row(fake: FakeTastytrade, tid: int, symbol: str, ttype: str, sub: str, action: str, qty: str, price: str,
         day: str, commission: str = "0.0") -> None:
    """A transaction in the API's shape (tests/execution/tastytrade_fake.py, the recorded listing)."""
    option = len(symbol) > 6
    value = D(qty) * D(price) * (100 if option else 1)
    credit = action.startswith("Sell")
    fake.transactions.append({
        "id": tid, "account-number": fake.account_number, "symbol": symbol,
        "instrument-type": "Equity Option" if option else "Equity", "underlying-symbol": symbol.split()[0],
        "transaction-type": ttype, "transaction-sub-type": sub, "description": f"{sub} {qty} {symbol}",
        "action": action, "quantity": qty, "price": price, "executed-at": f"{day}T20:00:00.000+00:00",
        "transaction-date": day, "value": str(value), "value-effect": "Credit" if credit else "Debit",
        "net-value": str(value - D(commission)), "net-value-effect": "Credit" if credit else "Debit",
        "commission": commission, "commission-effect": "Debit", "clearing-fees": "0.0",
        "regulatory-fees": "0.0", "is-estimated-fee": False})


def _lots(migrated_sqlite, broker: TastytradeBroker) -> LotResult:  # type: ignore[no-untyped-def]
    with Session(migrated_sqlite) as session:
        store_transactions(session, broker.transactions())
        session.commit()
    return compute_lots(load_events(migrated_sqlite, include_paper=False))


def test_assigned_short_put_folds_its_premium_into_the_stock(migrated_sqlite, fake: FakeTastytrade,
                                                               broker: TastytradeBroker) -> None:
    # Sold 1 SPY 560 put for 3.00 (commission 1.00): 299 received. Assigned: 100 SPY bought at 560 =
    # 56,000. Pub 550: the stock's basis is 56,000 - 299 = 55,701, acquired on the assignment day.
    _row(fake, 1, PUT_560, "Trade", "Sell to Open", "Sell to Open", "1", "3.0", "2026-11-02", "1.0")
    _row(fake, 2, PUT_560, "Receive Deliver", "Assignment", "Buy to Close", "1", "0.0", "2026-11-30")
    _row(fake, 3, "SPY", "Receive Deliver", "Assignment", "Buy to Open", "100", "560.0", "2026-11-30")
    r = _lots(migrated_sqlite, broker)
    (stock,) = r.open_lots  # no phantom option lot, no stock lot opened twice
    assert (stock.instrument.symbol, stock.quantity, stock.basis) == ("SPY", D(100), D("55701"))
    assert stock.acquired == date(2026, 11, 30)
    (option,) = r.closed_lots
    assert (option.close_kind, option.realized) == (CloseKind.assign, D(0))


def test_exercised_long_call_adds_its_cost_to_the_stock(migrated_sqlite, fake: FakeTastytrade,
                                                         broker: TastytradeBroker) -> None:
    # Bought 1 SPY 600 call for 4.15 + 1.00 commission = 416; exercised: 100 SPY at 600. Basis 60,416.
    _row(fake, 1, CALL_600, "Trade", "Buy to Open", "Buy to Open", "1", "4.15", "2026-11-02", "1.0")
    _row(fake, 2, CALL_600, "Receive Deliver", "Exercise", "Sell to Close", "1", "0.0", "2026-11-30")
    _row(fake, 3, "SPY", "Receive Deliver", "Exercise", "Buy to Open", "100", "600.0", "2026-11-30")
    r = _lots(migrated_sqlite, broker)
    (stock,) = r.open_lots
    assert (stock.quantity, stock.basis) == (D(100), D("60416"))


def test_expired_long_put_is_a_sale_at_zero_on_the_expiry_date(migrated_sqlite, fake: FakeTastytrade,
                                                               broker: TastytradeBroker) -> None:
    # 2 puts bought for 1.50 + 2.00 commission = 302; expired worthless on 18 Dec: a loss of 302.
    _row(fake, 1, PUT_560, "Trade", "Buy to Open", "Buy to Open", "2", "1.5", "2026-11-02", "2.0")
    _row(fake, 2, PUT_560, "Receive Deliver", "Expiration", "Sell to Close", "2", "0.0", "2026-12-18")
    r = _lots(migrated_sqlite, broker)
    assert not r.open_lots
    (lot,) = r.closed_lots
    assert (lot.close_kind, lot.basis, lot.proceeds, lot.realized) == (CloseKind.expire, D(302), D(0), D(-302))
    assert lot.sold == date(2026, 12, 18)


def test_dividend_reinvestment_is_a_purchase(migrated_sqlite, fake: FakeTastytrade,  # type: ignore[no-untyped-def]
                                             broker: TastytradeBroker) -> None:
    # The recorded listing: 1.68074 KBWD received via dividend at 16.46, and 0.55928 PGX at 11.28.
    fake.seed_recorded_transactions()
    r = _lots(migrated_sqlite, broker)
    bases = {lot.instrument.symbol: (lot.quantity, lot.basis) for lot in r.open_lots}
    assert bases == {"KBWD": (D("1.68074"), D("1.68074") * D("16.46")),
                     "PGX": (D("0.55928"), D("0.55928") * D("11.28"))}
