"""Settings: environment variables (prefix ``QM_``), a ``.env`` file, ``.streamlit/secrets.toml``, defaults.

Every value is validated when the process starts; a bad value stops it with a message that names the
setting and the value, so a typo never turns into a silently different risk limit.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
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

from engine.options.selection import OptionParams
from engine.strategies.atr_matrix import ATRMatrixParams

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


class ExitSettings(BaseModel):
    """DESIGN §5 premium rules for held options (the ATR rules are in the strategy parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    premium_stop_pct: float = Field(50.0, gt=0, le=100)
    close_at_dte: int = Field(7, ge=0, le=60)
    hold_to_expiry: bool = False  # no time exit: positions reach expiry and settle (run-day --hold-to-expiry)


class ReferenceDataSettings(BaseModel):
    """Nightly reference-data upkeep on request-metered sources (Massive), within the plan's budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # ticker-details requests a night for sectors (SIC codes); at 5/min, 600 take two of the night's hours
    sector_requests_per_night: int = Field(600, ge=0, le=100_000)
    sector_refresh_days: int = Field(180, ge=1, le=3650)  # a sector is fetched once, then refreshed this rarely
    repair_requests_per_night: int = Field(100, ge=0, le=100_000)  # list_aggs gap repairs a night
    repair_window_sessions: int = Field(60, ge=5, le=2520)  # how far back holes are looked for


class FeeSettings(BaseModel):
    """What the paper broker charges (and what sizing assumes): DESIGN §9 defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission_open_per_contract: Decimal = Field(Decimal("1.00"), ge=0)
    commission_close_per_contract: Decimal = Field(Decimal("0.00"), ge=0)
    commission_cap_per_leg: Decimal = Field(Decimal("10.00"), ge=0)
    fee_per_contract: Decimal = Field(Decimal("0.10"), ge=0)
    slippage_frac_of_half_spread: float = Field(0.25, ge=0, le=1)

    @property
    def open_cost_per_contract_leg(self) -> Decimal:
        """Upper bound per contract and leg used for sizing (ignores the per-leg cap)."""
        return self.commission_open_per_contract + self.fee_per_contract


class TastytradeSettings(BaseModel):
    """The tastytrade account (issue 14): OAuth application secret and the personal grant's refresh token.

    ``sandbox`` (default) is the certification environment; production needs ``sandbox=false`` plus the
    live opt-in (``QM_TRADING_MODE=live``, ``QM_LIVE_TRADING_CONFIRMED=true``), checked where the broker is built.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    account_number: str | None = Field(None, description="optional when the login has exactly one account")
    sandbox: bool = True
    api_url: str | None = Field(None, description="base-URL override (a proxy or a local test server)")

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else value

    @property
    def configured(self) -> bool:
        return bool(self.client_secret and self.client_secret.get_secret_value()
                    and self.refresh_token and self.refresh_token.get_secret_value())


class IBKRSettings(BaseModel):
    """Interactive Brokers: TWS/Gateway for live state, Flex Web Service for history (DESIGN §9)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(4002, ge=1, le=65535, description="4002 = IB Gateway paper; 4001 live, 7497/7496 TWS")
    client_id: int = Field(17, ge=0, le=2**31 - 1)
    account: str | None = None
    flex_token: SecretStr | None = None
    flex_query_id: str | None = None
    flex_url: str = Field(
        "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService",
        description="Flex Web Service base URL (SendRequest and GetStatement are appended)",
    )
    history_start: date = date(2024, 5, 9)


class ConsoleSettings(BaseModel):
    """The operator console's login session (issue 12)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A login survives a browser reload this long (signed cookie); 0 = log in again after every reload.
    session_hours: float = Field(12.0, ge=0, le=24 * 30)


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
    approve_exits: bool = Field(False, description="manual/semi: protective exits wait for approval too")
    live_trading_confirmed: bool = Field(False, description="explicit opt-in required for trading_mode=live")
    broker: BrokerName = BrokerName.paper
    data_source: DataSource = DataSource.sim
    sim_seed: int = 7
    sim_symbols: int = Field(3000, ge=10, le=40_000)
    starting_cash: float = Field(100_000.0, gt=0)

    risk: RiskSettings = RiskSettings()
    # DESIGN §4: every ATR Matrix threshold, e.g. QM_STRATEGY__MIN_ATR_PCT=2.5
    strategy: ATRMatrixParams = ATRMatrixParams()
    scan_top_n: int = Field(10, ge=1, le=500, description="signals turned into option candidates each day")
    # DESIGN §5 contract filters, e.g. QM_OPTIONS__MIN_OPEN_INTEREST=1000
    options: OptionParams = OptionParams()
    exits: ExitSettings = ExitSettings()
    fees: FeeSettings = FeeSettings()
    reference_data: ReferenceDataSettings = ReferenceDataSettings()
    risk_free_rate: float = Field(0.04, ge=-0.05, le=0.25, description="continuous rate for our own BSM numbers")
    console: ConsoleSettings = ConsoleSettings()  # e.g. QM_CONSOLE__SESSION_HOURS=8

    # Secrets: never logged, stored or shown; pydantic masks them in repr.
    massive_api_key: SecretStr | None = None
    massive_base_url: str = "https://api.massive.com"
    massive_requests_per_minute: int = Field(5, ge=1, le=100_000)
    # QM_TASTYTRADE__CLIENT_SECRET, __REFRESH_TOKEN, __ACCOUNT_NUMBER, __SANDBOX, __API_URL
    tastytrade: TastytradeSettings = TastytradeSettings()
    ibkr: IBKRSettings = IBKRSettings()  # QM_IBKR__HOST, QM_IBKR__PORT, QM_IBKR__FLEX_TOKEN, ...
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


def _secret_tree(model: type[BaseModel] = Settings) -> dict[str, Any]:
    """Where the SecretStr fields are, at any depth: ``{"operator_password": True, "tastytrade":
    {"client_secret": True, ...}, ...}`` (by type, not by name: a new secret is masked without a list)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if "SecretStr" in str(info.annotation):
            out[name] = True
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            nested = _secret_tree(info.annotation)
            if nested:
                out[name] = nested
    return out


def format_validation_error(exc: ValidationError) -> str:
    from engine.redact import MASK, redact, redact_value, secrets_in

    tree = _secret_tree()
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        env = "QM_" + "__".join(str(p) for p in err["loc"]).upper() if err["loc"] else "QM_*"
        value = err.get("input")
        # the secrets below this error's place in the settings (the whole tree for a whole-settings error)
        node: Any = tree
        for part in err["loc"]:
            node = node.get(str(part), {}) if isinstance(node, dict) else node
        # a secret field's value, the secrets inside a nested or whole-settings input, and URL passwords never
        # show; the plain values found are also masked wherever else they appear in the line
        shown = MASK if node is True else redact_value(value, node)
        line = f"{name} ({env}) = {shown!r}: {redact(str(err['msg']))}"
        lines.append(redact(line, secrets_in(value, node)))
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
