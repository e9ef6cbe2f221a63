"""Settings: environment variables (prefix ``QM_``), a ``.env`` file, ``.streamlit/secrets.toml``, defaults.

Every value is validated when the process starts; a bad value stops it with a message that names the
setting and the value, so a typo never turns into a silently different risk limit.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
SECRETS_TOML = ROOT / ".streamlit" / "secrets.toml"


class TradingMode(StrEnum):
    paper = "paper"
    live = "live"


class ApprovalMode(StrEnum):
    manual = "manual"  # every order waits for the operator
    semi = "semi"  # automatic within a size limit, approval above it
    auto = "auto"  # every order that passes the risk gate goes out


class DataSource(StrEnum):
    sim = "sim"
    massive = "massive"
    csv = "csv"


class BrokerName(StrEnum):
    paper = "paper"
    tastytrade = "tastytrade"
    ibkr = "ibkr"


class RiskSettings(BaseModel):
    """DESIGN §6 defaults. Percentages are of account equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_per_trade_pct: float = Field(1.0, gt=0, le=10)
    max_symbol_risk_pct: float = Field(5.0, gt=0, le=100)
    max_heat_pct: float = Field(10.0, gt=0, le=100)
    max_open_positions: int = Field(10, ge=1, le=500)
    max_sector_exposure_pct: float = Field(30.0, gt=0, le=100)
    daily_loss_limit_pct: float = Field(3.0, gt=0, le=100)
    semi_auto_max_risk_usd: float = Field(500.0, ge=0)  # semi mode: orders risking more wait for approval


class StrategySettings(BaseModel):
    """DESIGN §4 defaults for the ATR Matrix scan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atr_period: int = Field(14, ge=2, le=100)
    entry_min_atr_distance: float = 0.0
    entry_max_atr_distance: float = 4.0
    min_atr_pct: float = Field(3.0, ge=0)
    min_range_pos_20: float = Field(50.0, ge=0, le=100)
    min_close: float = Field(10.0, ge=0)
    min_dollar_volume_20: float = Field(20_000_000.0, ge=0)
    min_history_bars: int = Field(200, ge=200)
    top_n: int = Field(10, ge=1, le=500)

    @model_validator(mode="after")
    def _zone_is_ordered(self) -> StrategySettings:
        if self.entry_min_atr_distance > self.entry_max_atr_distance:
            raise ValueError(
                f"entry_min_atr_distance ({self.entry_min_atr_distance}) must not exceed "
                f"entry_max_atr_distance ({self.entry_max_atr_distance})"
            )
        return self


class OptionSettings(BaseModel):
    """DESIGN §5 contract filters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_dte: int = Field(21, ge=1)
    max_dte: int = Field(60, ge=1)
    target_dte_low: int = Field(30, ge=1)
    target_dte_high: int = Field(45, ge=1)
    long_delta_min: float = Field(0.55, gt=0, lt=1)
    long_delta_max: float = Field(0.70, gt=0, lt=1)
    long_delta_target: float = Field(0.60, gt=0, lt=1)
    short_delta_min: float = Field(0.20, gt=0, lt=1)
    short_delta_max: float = Field(0.35, gt=0, lt=1)
    min_open_interest: int = Field(500, ge=0)
    min_volume: int = Field(50, ge=0)
    max_spread_pct_of_mid: float = Field(10.0, gt=0, le=100)
    debit_spread_iv_rank: float = Field(50.0, ge=0, le=100)
    credit_spread_iv_rank: float = Field(70.0, ge=0, le=100)
    premium_stop_pct: float = Field(50.0, gt=0, le=100)
    close_at_dte: int = Field(7, ge=0)

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> OptionSettings:
        if self.min_dte > self.max_dte:
            raise ValueError(f"min_dte ({self.min_dte}) must not exceed max_dte ({self.max_dte})")
        if not self.long_delta_min <= self.long_delta_target <= self.long_delta_max:
            raise ValueError(
                f"long_delta_target ({self.long_delta_target}) must lie in "
                f"[{self.long_delta_min}, {self.long_delta_max}]"
            )
        return self


class _SecretsTomlSource(PydanticBaseSettingsSource):
    """Reads ``.streamlit/secrets.toml`` (flat keys or a ``[quantmatrix]`` table) below env and .env."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path.is_file():
            raw = tomllib.loads(path.read_text())
            table = raw.get("quantmatrix", raw)
            self._data = {k.lower().removeprefix("qm_"): v for k, v in table.items() if not isinstance(v, dict)}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QM_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = ROOT / "var"
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: a SQLite file in data_dir. Also read from DATABASE_URL."
    )
    trading_mode: TradingMode = TradingMode.paper
    approval_mode: ApprovalMode = ApprovalMode.auto
    live_trading_confirmed: bool = Field(False, description="explicit opt-in required for trading_mode=live")
    broker: BrokerName = BrokerName.paper
    data_source: DataSource = DataSource.sim
    sim_seed: int = 7
    sim_symbols: int = Field(3000, ge=10, le=40_000)
    csv_bars_path: Path | None = None
    starting_cash: float = Field(100_000.0, gt=0)

    risk: RiskSettings = RiskSettings()
    strategy: StrategySettings = StrategySettings()
    options: OptionSettings = OptionSettings()

    # Secrets: never logged, stored or shown; pydantic masks them in repr.
    massive_api_key: SecretStr | None = None
    massive_base_url: str = "https://api.massive.com"
    massive_requests_per_minute: int = Field(5, ge=1, le=100_000)
    tastytrade_client_secret: SecretStr | None = None
    tastytrade_refresh_token: SecretStr | None = None
    tastytrade_account: str | None = None
    tastytrade_sandbox: bool = True
    ibkr_host: str = "127.0.0.1"
    ibkr_port: int = Field(7497, ge=1, le=65535)
    ibkr_client_id: int = 17
    ibkr_flex_token: SecretStr | None = None
    ibkr_flex_query_id: str | None = None
    ibkr_history_start: str = "2024-05-09"
    operator_password: SecretStr | None = None
    discord_webhook_signals: SecretStr | None = None
    discord_webhook_portfolio: SecretStr | None = None
    discord_webhook_morning_brew: SecretStr | None = None
    discord_webhook_playground: SecretStr | None = None
    discord_webhook_system_status: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _SecretsTomlSource(settings_cls, SECRETS_TOML),
            file_secret_settings,
        )

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url_from_env(cls, value: str | None) -> str | None:
        import os

        value = value or os.environ.get("DATABASE_URL") or None
        if value is None:
            return None
        if value.startswith("postgres://") or value.startswith("postgresql://"):
            # SQLAlchemy would pick psycopg2, which we do not ship; psycopg 3 is the driver.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite") or value.startswith("postgresql+psycopg")):
            raise ValueError(f"must be a sqlite:/// or postgresql+psycopg:// URL, got scheme {value.split(':')[0]!r}")
        return value

    @model_validator(mode="after")
    def _live_needs_opt_in(self) -> Settings:
        if self.trading_mode is TradingMode.live:
            if not self.live_trading_confirmed:
                raise ValueError(
                    "trading_mode=live needs QM_LIVE_TRADING_CONFIRMED=true: live trading is an explicit opt-in"
                )
            if self.broker is BrokerName.paper:
                raise ValueError("trading_mode=live needs a real broker (QM_BROKER=tastytrade or ibkr)")
        if self.data_source is DataSource.csv and self.csv_bars_path is None:
            raise ValueError("data_source=csv needs QM_CSV_BARS_PATH")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'quantmatrix.db'}"

    @property
    def bar_store_dir(self) -> Path:
        return self.data_dir / "bars"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def webhook(self, channel: str) -> SecretStr | None:
        return getattr(self, f"discord_webhook_{channel}")


class SettingsError(RuntimeError):
    """Raised at start-up with one line per invalid setting, each naming the setting and its value."""


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        env = "QM_" + "__".join(str(p) for p in err["loc"]).upper() if err["loc"] else "QM_*"
        value = err.get("input")
        shown = "<secret>" if "webhook" in name or "key" in name or "token" in name or "secret" in name else value
        lines.append(f"{name} ({env}) = {shown!r}: {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings; raise SettingsError with a readable message on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
