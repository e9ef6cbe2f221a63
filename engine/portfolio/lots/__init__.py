"""The lot engine: tax lots per account and instrument from any broker's trades (DESIGN §9).

``compute_lots(events)`` matches closing executions to lots (FIFO, the broker's lots, or specific
identification), folds exercised and assigned options into the stock (IRS Pub 550), applies splits, then
wash sales across every account, then compares each closing execution with the broker's own figure.
Feeds: ``engine.portfolio.lots.sources`` (Transaction table, CSV, paper fills).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine.portfolio.lots.checks import check_against_broker
from engine.portfolio.lots.matching import LotMatcher
from engine.portfolio.lots.model import (
    Asset,
    BrokerFigure,
    CloseKind,
    Instrument,
    Lot,
    LotPick,
    LotResult,
    PnlDifference,
    RenameEvent,
    SplitEvent,
    TradeEvent,
    WashSale,
)
from engine.portfolio.lots.wash import apply_wash_sales

__all__ = ["Asset", "BrokerFigure", "CloseKind", "Instrument", "Lot", "LotPick", "LotResult", "PnlDifference",
           "RenameEvent", "SplitEvent", "TradeEvent", "WashSale", "compute_lots"]


def compute_lots(events: Iterable[TradeEvent | SplitEvent | RenameEvent | BrokerFigure],
                 expire_through: datetime | None = None) -> LotResult:
    events = list(events)
    result = LotMatcher().run(events, expire_through)
    apply_wash_sales(result)
    result.checks = check_against_broker(events, result)
    return result
