"""Everything a pipeline step needs, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from engine.clock import Clock, SystemClock
from engine.config import BrokerName, Settings, SettingsError
from engine.data.ports import MarketData
from engine.execution.ports import Broker


@dataclass
class EngineContext:
    settings: Settings
    db: Engine
    market: MarketData
    broker: Broker
    clock: Clock

    @property
    def now(self):  # type: ignore[no-untyped-def]
        return self.clock.now()


def build_context(settings: Settings, clock: Clock | None = None, paper_db: Path | None = None) -> EngineContext:
    from engine.data.sources import get_market_data
    from engine.db import get_engine

    clock = clock or SystemClock()
    market = get_market_data(settings)
    ctx = EngineContext(settings, get_engine(settings.db_url), market, _broker(settings, market, clock, paper_db),
                        clock)
    if hasattr(ctx.broker, "config_source"):
        # The scheduler swaps ctx.settings when the operator changes settings: the venue follows them.
        ctx.broker.config_source = lambda: paper_config(ctx.settings)
    return ctx


def paper_config(settings: Settings) -> Any:
    """The paper venue's charges and fill model from the settings (cached per distinct fee settings)."""
    return _paper_config(settings.fees, Decimal(str(settings.starting_cash)))


@lru_cache(maxsize=16)
def _paper_config(fees: Any, starting_cash: Decimal) -> Any:
    from engine.execution.brokers.paper import PaperConfig

    return PaperConfig(
        starting_cash=starting_cash,
        slippage_frac_of_half_spread=Decimal(str(fees.slippage_frac_of_half_spread)),
        option_commission_open=fees.commission_open_per_contract,
        option_commission_close=fees.commission_close_per_contract,
        option_commission_cap_per_leg=fees.commission_cap_per_leg,
        option_fee_per_contract=fees.fee_per_contract,
    )


def _broker(settings: Settings, market: MarketData, clock: Clock, paper_db: Path | None) -> Broker:
    if settings.broker is BrokerName.paper:
        from engine.execution.brokers.paper import PaperBroker
        from engine.execution.brokers.quotes import SimQuoteSource

        path = paper_db or settings.data_dir / "paper_broker.db"
        return PaperBroker(path, SimQuoteSource(market), clock.now, paper_config(settings))
    if settings.broker is BrokerName.tastytrade:
        from engine.execution.brokers.tastytrade_factory import build_tastytrade

        return build_tastytrade(settings)
    if settings.broker is BrokerName.ibkr:
        from engine.execution.brokers.ibkr import IBKRBroker

        return IBKRBroker.connect(settings.ibkr)
    raise SettingsError(f"invalid settings:\n  broker (QM_BROKER) = {settings.broker.value!r}: no adapter for this "
                        "broker in this build yet; only 'paper' can trade")
