"""Login is enforced: without it no page renders and no engine action happens, whatever page is asked for."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from app.registry import PAGES
from engine.models import OperatorAuth, OperatorCommand, Order, OrderEvent, ScanRun, SettingOverride

PAGE_IDS = [p.module for p in PAGES]


def _state(db) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        return tuple(session.exec(select(func.count()).select_from(t)).one()
                     for t in (OperatorCommand, Order, OrderEvent, ScanRun, SettingOverride))


def _only_login_form(at) -> None:  # type: ignore[no-untyped-def]
    assert not at.exception
    assert [t.value for t in at.title] == ["📈 QuantMatrix"]
    assert [t.label for t in at.text_input] == ["Operator password"]
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.sidebar.children or not at.sidebar.button


@pytest.mark.parametrize("page", PAGE_IDS)
def test_no_page_renders_without_login(page: str, filled, console, db) -> None:  # type: ignore[no-untyped-def]
    before = _state(db)
    at = console(logged_in=False).open(page)
    _only_login_form(at)
    # Widget keys a page would use cannot trigger anything either: the page never runs.
    at.session_state["kill_switch_armed"] = True
    at.session_state["scanner_view"] = "Matrix"
    at.run()
    _only_login_form(at)
    assert _state(db) == before


def test_wrong_password_is_refused_then_right_one_opens_the_requested_page(filled, console) -> None:  # type: ignore[no-untyped-def]
    from tests.console.conftest import PASSWORD

    at = console(logged_in=False).open("positions")
    at.text_input(key="login_password").input("not the password")
    at.button(key="login_submit").click().run()
    assert any("wrong password" in str(e.value) for e in at.error)
    assert "authenticated" not in at.session_state and not at.metric
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert not at.exception
    assert at.title[0].value == "Positions"  # the URL asked for opens after login
    assert at.session_state["authenticated"]


def test_lockout_after_repeated_failures(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    from tests.console.conftest import PASSWORD

    at = console(logged_in=False).open("overview")
    for _ in range(5):
        at.text_input(key="login_password").input("wrong-wrong")
        at.button(key="login_submit").click().run()
    assert any("locked" in str(e.value) for e in at.error)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert any("locked" in str(e.value) for e in at.error), "even the right password waits out the lock-out"
    assert "authenticated" not in at.session_state
    with Session(db) as session:
        assert session.get(OperatorAuth, 1).locked_until is not None


def test_password_is_stored_hashed(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    from tests.console.conftest import PASSWORD

    console(logged_in=False).open("overview")
    with Session(db) as session:
        stored = session.get(OperatorAuth, 1).password_hash
    assert stored.startswith("scrypt$") and PASSWORD not in stored


def test_first_run_sets_the_password(empty, console, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import streamlit as st

    from engine.config import get_settings

    monkeypatch.delenv("QM_OPERATOR_PASSWORD")
    get_settings.cache_clear()
    st.cache_resource.clear()
    at = console(logged_in=False).open("risk")
    assert [t.label for t in at.text_input] == ["New operator password", "Repeat it"]
    at.text_input(key="new_password").input("short")
    at.text_input(key="new_password_repeat").input("short")
    at.button(key="set_password_submit").click().run()
    assert any("at least 8" in str(e.value) for e in at.error)
    at.text_input(key="new_password").input("a-long-password")
    at.text_input(key="new_password_repeat").input("a-long-password")
    at.button(key="set_password_submit").click().run()
    assert at.title[0].value == "Risk"


def test_log_out(filled, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("orders")
    assert at.title[0].value == "Orders and fills"
    at.sidebar.button(key="logout").click().run()
    _only_login_form(at)


def test_server_binds_localhost_without_usage_stats() -> None:
    import tomllib

    from tests.console.conftest import ROOT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False


def test_page_reads_cannot_write(filled) -> None:  # type: ignore[no-untyped-def]
    """The engine the pages read through is query-only: a read path can never change trading state."""
    import sqlalchemy.exc

    from app.state import reader

    with reader().connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM \"order\"").scalar() > 0
        with pytest.raises(sqlalchemy.exc.OperationalError, match="readonly"):
            conn.exec_driver_sql("UPDATE \"order\" SET status = 'approved'")
