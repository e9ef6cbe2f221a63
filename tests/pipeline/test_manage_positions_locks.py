"""manage_positions fetches quotes and chains with no write transaction open (issue 12 #2, for this step)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pandas as pd

from engine import pipeline
from engine.clock import ReplayClock
from engine.context import EngineContext
from engine.execution.ports import Side
from tests.execution.test_settlement import C100, Books, books, leg, trade  # noqa: F401


class ProbingMarket:
    """Answers like a market data source; on every call checks that another writer could commit now
    (a console write such as the kill switch), with a 0.2 s busy timeout instead of SQLite's 30 s."""

    name = "probe"

    def __init__(self, db_file: str) -> None:
        self.db_file = db_file
        self.blocked: list[str] = []
        self.calls = 0

    def _probe(self, what: str) -> None:
        self.calls += 1
        conn = sqlite3.connect(self.db_file, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            self.blocked.append(what)
        finally:
            conn.close()

    def quotes(self, symbols: list[str], at: datetime) -> pd.DataFrame:
        self._probe("quotes")
        return pd.DataFrame({"symbol": symbols, "last": [105.0] * len(symbols), "bid": [104.98] * len(symbols),
                             "ask": [105.02] * len(symbols)})

    def option_chain(self, underlying: str, at: datetime) -> pd.DataFrame:
        self._probe("option_chain")
        return pd.DataFrame([{"occ_symbol": C100, "bid": 5.0, "ask": 5.2, "delta": 0.6, "gamma": 0.0,
                              "theta": 0.0, "vega": 0.0, "underlying_price": 105.0}])


def test_no_write_lock_is_held_while_the_market_is_asked(books: Books) -> None:  # noqa: F811
    trade(books, "lc", (leg(C100, Side.buy),), 1, "5.20")
    market = ProbingMarket(str(books.db.url.database))
    ctx = EngineContext(books.settings, books.db, market, books.broker, ReplayClock(books.clock.now))  # type: ignore[arg-type]
    pipeline.manage_positions(ctx)
    assert market.calls >= 2  # the chain (marks, exit prices) and the underlying's quote
    assert market.blocked == []
