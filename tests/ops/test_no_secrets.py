"""Issue 12 item 6: no secret in error messages, logs or the database."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.config import SettingsError, load_settings
from engine.db import get_engine, migrate
from engine.models import JobRun
from engine.redact import RedactingFilter
from engine.schedule import record_run

ROOT = Path(__file__).resolve().parents[2]
PG_WITH_PASSWORD = "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"


def _scheduler(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, str(ROOT / "scheduler.py"), "--replay", "2026-11-02..2026-11-02"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_bad_risk_value_next_to_a_database_password(tmp_path: Path) -> None:
    done = _scheduler({"DATABASE_URL": PG_WITH_PASSWORD, "QM_RISK__MAX_HEAT_PCT": "500"}, tmp_path)
    assert done.returncode == 2
    assert "risk.max_heat_pct (QM_RISK__MAX_HEAT_PCT) = '500'" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr


@pytest.mark.parametrize("env", [
    # a whole-settings error (live without the opt-in) used to print every input, secrets included
    {"QM_DATABASE_URL": PG_WITH_PASSWORD, "QM_OPERATOR_PASSWORD": "correct-horse-9", "QM_TRADING_MODE": "live"},
    # the bad value is itself a URL with a password
    {"DATABASE_URL": "mysql://u:hunter2@127.0.0.1/x", "QM_OPERATOR_PASSWORD": "correct-horse-9"},
    {"QM_DISCORD_WEBHOOK_SIGNALS": "https://discord.com/api/webhooks/1/hunter2", "QM_SIM_SYMBOLS": "5",
     "QM_OPERATOR_PASSWORD": "correct-horse-9", "QM_DATABASE_URL": PG_WITH_PASSWORD},
])
def test_settings_errors_name_the_bad_value_and_hide_every_secret(env: dict[str, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "hunter2" not in text and "correct-horse-9" not in text
    if "QM_TRADING_MODE" in env:
        assert "trading_mode=live needs QM_LIVE_TRADING_CONFIRMED=true" in text
    if env.get("DATABASE_URL", "").startswith("mysql"):
        assert "database_url" in text and "'mysql'" in text
    if "QM_SIM_SYMBOLS" in env:
        assert "sim_symbols (QM_SIM_SYMBOLS) = '5'" in text


def test_job_errors_are_stored_without_the_password(sqlite_url: str) -> None:
    migrate(sqlite_url)

    def job() -> None:
        raise RuntimeError(f"could not connect to {PG_WITH_PASSWORD}")

    run = record_run(get_engine(sqlite_url), "nightly", "test", job)
    with Session(get_engine(sqlite_url)) as s:
        row = s.exec(select(JobRun).where(JobRun.id == run.id)).one()
    assert row.outcome == "error" and "u:***@127.0.0.1" in (row.error or "")
    assert "hunter2" not in (row.error or "") + str(row.detail)


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("qm.test.redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise ValueError(f"bad url {PG_WITH_PASSWORD}")
    except ValueError:
        logger.exception("connecting to %s failed", PG_WITH_PASSWORD)
    assert "hunter2" not in caplog.text and "u:***@" in caplog.text


NESTED_SECRETS = {"QM_TASTYTRADE__CLIENT_SECRET": "tt-client-secret-123",
                  "QM_TASTYTRADE__REFRESH_TOKEN": "tt-refresh-456", "QM_IBKR__FLEX_TOKEN": "flex-token-789",
                  "QM_MASSIVE_API_KEY": "massive-key-321"}


def _run(command: list[str], env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", [[str(ROOT / "scheduler.py"), "--replay", "2026-11-02..2026-11-02"],
                                     ["-m", "engine", "scan"]], ids=["scheduler", "cli"])
@pytest.mark.parametrize("bad", [
    # a whole-settings error: its input is every setting, the nested tastytrade/ibkr tables included
    {"QM_TRADING_MODE": "live"},
    # a bad value inside the same nested table as the secrets
    {"QM_TASTYTRADE__API_URL": "ftp://x"},
], ids=["live-without-opt-in", "nested-bad-url"])
def test_nested_secrets_never_print(command: list[str], bad: dict[str, str], tmp_path: Path) -> None:
    done = _run(command, {**NESTED_SECRETS, "DATABASE_URL": PG_WITH_PASSWORD, **bad}, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "invalid settings" in out
    if "QM_TASTYTRADE__API_URL" in bad:
        assert "tastytrade.api_url (QM_TASTYTRADE__API_URL) = 'ftp://x'" in out
    else:
        assert "trading_mode=live needs QM_LIVE_TRADING_CONFIRMED=true" in out
    for secret in [*NESTED_SECRETS.values(), "hunter2"]:
        assert secret not in out


def test_cli_logs_mask_the_configured_secrets(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                              tmp_path: Path) -> None:
    """The CLI installs log redaction with the loaded settings: a secret value (not only a URL password)
    that ends up in a log line is masked."""
    from engine import cli
    from engine.config import get_settings

    monkeypatch.setenv("QM_DATA_DIR", str(tmp_path / "var"))
    for k, v in NESTED_SECRETS.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()

    def leaky(_args: object) -> int:
        logging.getLogger("qm.test.cli").error("broker said: bad token flex-token-789 / tt-refresh-456")
        return 0

    monkeypatch.setattr(cli, "_cmd_scan", leaky)
    caplog.set_level(logging.INFO)
    try:
        assert cli.main(["scan"]) == 0
    finally:
        get_settings.cache_clear()
    assert "broker said: bad token" in caplog.text
    assert "flex-token-789" not in caplog.text and "tt-refresh-456" not in caplog.text
