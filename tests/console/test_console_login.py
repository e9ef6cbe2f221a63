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


def test_repeated_failures_slow_the_client_down(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    from engine import auth
    from engine.models import LoginThrottle
    from tests.console.conftest import PASSWORD

    at = console(logged_in=False).open("overview")
    for _ in range(auth.FREE_FAILURES):
        at.text_input(key="login_password").input("wrong-wrong")
        at.button(key="login_submit").click().run()
    assert any("waits 2 s" in str(e.value) for e in at.error)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert any("try again in" in str(e.value) for e in at.error), "this client waits out its slow-down"
    assert "authenticated" not in at.session_state
    with Session(db) as session:
        assert session.get(OperatorAuth, 1).locked_until is None  # no global lock-out any more
        assert session.exec(select(LoginThrottle)).one().failures == auth.FREE_FAILURES


def test_password_is_stored_hashed(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    from tests.console.conftest import PASSWORD

    console(logged_in=False).open("overview")
    with Session(db) as session:
        stored = session.get(OperatorAuth, 1).password_hash
    assert stored.startswith("scrypt$") and PASSWORD not in stored


def test_the_login_page_never_sets_the_first_password(empty, console, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import streamlit as st

    from engine.config import get_settings

    monkeypatch.delenv("QM_OPERATOR_PASSWORD")
    get_settings.cache_clear()
    st.cache_resource.clear()
    at = console(logged_in=False).open("risk")
    assert not at.text_input and not at.button  # nothing a visitor could use to claim the console
    assert any("python -m engine operator set-password" in str(w.value) for w in at.warning)


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
