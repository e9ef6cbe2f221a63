from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ApprovalMode, Settings, SettingsError, TradingMode, load_settings


def test_defaults_are_paper_auto_sim_with_design_risk_limits() -> None:
    s = load_settings()
    assert s.trading_mode is TradingMode.paper
    assert s.approval_mode is ApprovalMode.auto
    assert s.data_source.value == "sim"
    # DESIGN §6
    assert (s.risk.risk_per_trade_pct, s.risk.max_symbol_risk_pct, s.risk.max_heat_pct) == (1.0, 5.0, 10.0)
    assert (s.risk.max_open_positions, s.risk.max_sector_exposure_pct, s.risk.daily_loss_limit_pct) == (10, 30.0, 3.0)
    # DESIGN §4 / §5
    assert (s.strategy.min_atr_pct, s.strategy.min_close, s.strategy.min_dollar_volume) == (3.0, 10.0, 20e6)
    assert (s.strategy.entry_min_distance, s.strategy.entry_max_distance, s.strategy.atr_period) == (0.0, 4.0, 14)
    opts = s.options
    assert (opts.dte_min, opts.dte_max, opts.min_open_interest, opts.max_spread_pct) == (21, 60, 500, 10.0)
    assert (s.options.long_delta_min, s.options.long_delta_target, s.options.long_delta_max) == (0.55, 0.60, 0.70)
    assert (s.exits.premium_stop_pct, s.exits.close_at_dte) == (50.0, 7)
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("quantmatrix.db")


def test_env_prefix_and_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QM_APPROVAL_MODE", "manual")
    monkeypatch.setenv("QM_RISK__MAX_OPEN_POSITIONS", "4")
    s = load_settings()
    assert s.approval_mode is ApprovalMode.manual
    assert s.risk.max_open_positions == 4


@pytest.mark.parametrize(
    ("env", "value", "names"),
    [
        ("QM_TRADING_MODE", "yolo", ["trading_mode", "QM_TRADING_MODE", "'yolo'"]),
        ("QM_RISK__RISK_PER_TRADE_PCT", "-1", ["risk.risk_per_trade_pct", "QM_RISK__RISK_PER_TRADE_PCT", "'-1'"]),
        ("QM_RISK__MAX_OPEN_POSITIONS", "ten", ["risk.max_open_positions", "'ten'"]),
        ("QM_SIM_SYMBOLS", "5", ["sim_symbols", "'5'"]),
        ("QM_DATABASE_URL", "mysql://x/y", ["database_url", "'mysql'"]),
    ],
)
def test_invalid_values_fail_naming_the_setting_and_value(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, names: list[str]
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    for name in names:
        assert name in str(info.value)


def test_live_trading_needs_explicit_opt_in_and_a_real_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QM_TRADING_MODE", "live")
    with pytest.raises(SettingsError, match="QM_LIVE_TRADING_CONFIRMED"):
        load_settings()
    monkeypatch.setenv("QM_LIVE_TRADING_CONFIRMED", "true")
    with pytest.raises(SettingsError, match="real broker"):
        load_settings()
    monkeypatch.setenv("QM_BROKER", "tastytrade")
    assert load_settings().trading_mode is TradingMode.live


def test_inconsistent_option_filters_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QM_OPTIONS__DTE_MIN", "90")
    with pytest.raises(SettingsError, match="options"):
        load_settings()


def test_inconsistent_strategy_zone_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QM_STRATEGY__ENTRY_MIN_DISTANCE", "5")
    with pytest.raises(SettingsError, match="strategy"):
        load_settings()


def test_secrets_are_masked_and_never_shown_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QM_MASSIVE_API_KEY", "sk-very-secret-123")
    s = load_settings()
    assert "sk-very-secret-123" not in repr(s) and "sk-very-secret-123" not in str(s.model_dump())
    assert s.massive_api_key is not None and s.massive_api_key.get_secret_value() == "sk-very-secret-123"
    # A bad value next to a secret: the error names the bad setting but never prints the secret.
    monkeypatch.setenv("QM_MASSIVE_REQUESTS_PER_MINUTE", "0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "massive_requests_per_minute" in str(info.value)
    assert "sk-very-secret-123" not in str(info.value)


def test_database_url_from_plain_database_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/db")
    assert load_settings().db_url == "postgresql+psycopg://u@h:5432/db"


def test_secrets_toml_is_read_below_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import engine.config as config

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('operator_password = "from-toml-123"\napproval_mode = "semi"\n')
    monkeypatch.setattr(config, "SECRETS_TOML", secrets)
    s = Settings()
    assert s.operator_password is not None and s.operator_password.get_secret_value() == "from-toml-123"
    assert s.approval_mode is ApprovalMode.semi
    monkeypatch.setenv("QM_APPROVAL_MODE", "manual")
    assert Settings().approval_mode is ApprovalMode.manual


def test_tastytrade_settings_are_nested_with_exact_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import TastytradeSettings

    assert load_settings().tastytrade == TastytradeSettings()  # nothing needed for paper
    assert TastytradeSettings().sandbox is True
    monkeypatch.setenv("QM_TASTYTRADE__CLIENT_SECRET", "cs-value")
    monkeypatch.setenv("QM_TASTYTRADE__REFRESH_TOKEN", "rt-value")
    monkeypatch.setenv("QM_TASTYTRADE__ACCOUNT_NUMBER", "5WX00042")
    monkeypatch.setenv("QM_TASTYTRADE__SANDBOX", "false")
    monkeypatch.setenv("QM_TASTYTRADE__API_URL", "http://127.0.0.1:8099/")
    tt = load_settings().tastytrade
    assert tt.client_secret is not None and tt.client_secret.get_secret_value() == "cs-value"
    assert tt.refresh_token is not None and tt.refresh_token.get_secret_value() == "rt-value"
    assert tt.account_number == "5WX00042" and tt.sandbox is False and tt.api_url == "http://127.0.0.1:8099"
    assert "cs-value" not in repr(tt) and "rt-value" not in repr(tt)
    monkeypatch.setenv("QM_TASTYTRADE__API_URL", "ftp://x")
    with pytest.raises(SettingsError, match=r"tastytrade.api_url \(QM_TASTYTRADE__API_URL\)"):
        load_settings()


def test_tastytrade_production_needs_the_live_opt_in_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.execution.brokers.tastytrade_factory import check_tastytrade_settings

    with pytest.raises(SettingsError, match="QM_TASTYTRADE__CLIENT_SECRET and QM_TASTYTRADE__REFRESH_TOKEN"):
        check_tastytrade_settings(load_settings(broker="tastytrade"))
    creds = {"client_secret": "c", "refresh_token": "r"}
    check_tastytrade_settings(load_settings(broker="tastytrade", tastytrade=creds))  # sandbox: fine in paper mode
    with pytest.raises(SettingsError, match="QM_TRADING_MODE=live"):
        check_tastytrade_settings(load_settings(broker="tastytrade", tastytrade={**creds, "sandbox": False}))
    live = load_settings(broker="tastytrade", tastytrade={**creds, "sandbox": False}, trading_mode="live",
                         live_trading_confirmed=True)
    check_tastytrade_settings(live)
