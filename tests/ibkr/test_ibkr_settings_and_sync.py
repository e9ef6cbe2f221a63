"""QM_IBKR__* settings and ``sync --broker ibkr`` (live part on the fake gateway, Flex part from a file)."""

from __future__ import annotations

from datetime import date

import pytest
from ib_async import Option

from engine.config import load_settings
from engine.execution.brokers.ibkr import IBKRBroker
from tests.conftest import shared_data
from tests.ibkr.fake_ib import FakeIB


def test_nested_env_names_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.ibkr.host, s.ibkr.port, s.ibkr.history_start) == ("127.0.0.1", 4002, date(2024, 5, 9))
    assert s.ibkr.flex_token is None
    monkeypatch.setenv("QM_BROKER", "ibkr")
    monkeypatch.setenv("QM_IBKR__HOST", "10.0.0.5")
    monkeypatch.setenv("QM_IBKR__PORT", "4001")
    monkeypatch.setenv("QM_IBKR__CLIENT_ID", "9")
    monkeypatch.setenv("QM_IBKR__ACCOUNT", "U7654321")
    monkeypatch.setenv("QM_IBKR__FLEX_TOKEN", "tok-abc")
    monkeypatch.setenv("QM_IBKR__FLEX_QUERY_ID", "424242")
    monkeypatch.setenv("QM_IBKR__FLEX_URL", "http://127.0.0.1:1/x")
    monkeypatch.setenv("QM_IBKR__HISTORY_START", "2024-06-01")
    s = load_settings()
    assert s.broker.value == "ibkr"
    assert (s.ibkr.host, s.ibkr.port, s.ibkr.client_id, s.ibkr.account) == ("10.0.0.5", 4001, 9, "U7654321")
    assert s.ibkr.flex_token is not None and s.ibkr.flex_token.get_secret_value() == "tok-abc"
    assert "tok-abc" not in repr(s)
    assert (s.ibkr.flex_query_id, s.ibkr.flex_url, s.ibkr.history_start) == ("424242", "http://127.0.0.1:1/x",
                                                                           date(2024, 6, 1))


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import SettingsError

    monkeypatch.setenv("QM_IBKR__PORT", "99999")
    with pytest.raises(SettingsError, match="QM_IBKR__PORT"):
        load_settings()


def test_sync_ibkr_live_and_history() -> None:
    from engine.config import get_settings
    from engine.ibkr.sync import sync_ibkr

    ib = FakeIB()
    leg = Option("AAPL", "20261218", 150.0, "C", "SMART", multiplier="100", currency="USD")
    ib.fill(leg, "e-1", "BOT", 1, 2.40, 0.65, "c-1")
    broker = IBKRBroker(ib, "DU1")
    statement = shared_data("ibkr_flex", "portfolio_performance", "testIBFlexStatementFile02.xml").read_bytes()
    out = sync_ibkr(get_settings(), broker=broker, download=lambda: statement)
    assert out["executions_new"] == 1 and out["account"]["equity"] == "30100.25"
    assert out["flex"]["counts"]["Trade"]["read"] == 9
    assert out["lots"]["open"] >= 1
    again = sync_ibkr(get_settings(), broker=broker, download=lambda: statement)
    assert again["executions_new"] == 0
    assert all(c["new"] == 0 for c in again["flex"]["counts"].values())


def test_flex_import_cli_prints_counts_and_what_was_new(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    a = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_options.xml")
    assert main(["flex", "import", str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "Trade                 4 read       4 new" in out
    assert "Trade                 4 read       0 new" in out
    assert "total:" in out


def test_flex_import_cli_rejects_non_flex(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from engine.cli import main

    bad = tmp_path / "x.xml"
    bad.write_text("<html><body>login</body></html>")
    assert main(["flex", "import", str(bad)]) == 1
    assert "not a Flex statement" in capsys.readouterr().err
