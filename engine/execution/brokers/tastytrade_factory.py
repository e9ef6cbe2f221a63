"""Building the tastytrade broker from settings, with the environment rules of issue 14.

- Credentials are required (QM_TASTYTRADE__CLIENT_SECRET, QM_TASTYTRADE__REFRESH_TOKEN).
- The certification environment (``sandbox``, the default) needs nothing else.
- Production (``QM_TASTYTRADE__SANDBOX=false``) trades real money: it needs the live opt-in as well,
  ``QM_TRADING_MODE=live`` and ``QM_LIVE_TRADING_CONFIRMED=true`` (the latter is enforced by Settings).
"""

from __future__ import annotations

from typing import Any

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


def build_tastytrade(settings: Settings, **kwargs: Any) -> Any:
    from engine.execution.brokers.tastytrade import TastytradeBroker

    check_tastytrade_settings(settings)
    return TastytradeBroker(settings.tastytrade, **kwargs)
