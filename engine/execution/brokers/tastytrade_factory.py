"""Building the tastytrade broker from settings, with the environment rules of issue 14.

- Credentials are required (QM_TASTYTRADE__CLIENT_SECRET, QM_TASTYTRADE__REFRESH_TOKEN).
- The certification environment (``sandbox``, the default) needs nothing else.
- Production (``QM_TASTYTRADE__SANDBOX=false``) trades real money: it needs the live opt-in as well,
  ``QM_TRADING_MODE=live`` and ``QM_LIVE_TRADING_CONFIRMED=true`` (the latter is enforced by Settings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from engine.config import Settings, SettingsError, TradingMode


def check_tastytrade_settings(settings: Settings) -> None:
    tt = settings.tastytrade
    missing = [name for name, value in (("QM_TASTYTRADE__CLIENT_SECRET", tt.client_secret),
                                        ("QM_TASTYTRADE__REFRESH_TOKEN", tt.refresh_token))
               if value is None or not value.get_secret_value()]
    if missing:
        raise SettingsError("invalid settings:\n  broker (QM_BROKER) = 'tastytrade' needs " + " and ".join(missing)
                            + " (from the broker's OAuth application and a personal grant)")
    if not tt.sandbox and settings.trading_mode is not TradingMode.live:
        raise SettingsError("invalid settings:\n  tastytrade.sandbox (QM_TASTYTRADE__SANDBOX) = False: production "
                            "trades real money and needs QM_TRADING_MODE=live and QM_LIVE_TRADING_CONFIRMED=true")


def order_times_from(db: Engine) -> Callable[[str], Any]:
    """The adapter's persisted memory of an order, read from the engine's own rows (no schema change):
    when the order was created and when it last moved to "submitting" (committed before the broker call)."""
    from sqlmodel import Session, select

    from engine.execution.brokers.tastytrade import OrderTimes
    from engine.models import Order, OrderEvent

    def lookup(client_order_id: str) -> OrderTimes | None:
        with Session(db) as s:
            created = s.exec(select(Order.created_at).where(Order.client_order_id == client_order_id)).first()
            if created is None:
                return None
            sent = s.exec(select(OrderEvent.at).where(OrderEvent.client_order_id == client_order_id,
                                                      OrderEvent.to_status == "submitting")
                          .order_by(OrderEvent.at.desc())).first()
        return OrderTimes(created, sent)

    return lookup


def build_tastytrade(settings: Settings, **kwargs: Any) -> Any:
    from engine.db import get_engine
    from engine.execution.brokers.tastytrade import TastytradeBroker

    check_tastytrade_settings(settings)
    kwargs.setdefault("order_times", order_times_from(get_engine(settings.db_url)))
    return TastytradeBroker(settings.tastytrade, **kwargs)
