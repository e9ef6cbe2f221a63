"""Login gate: nothing else in the console renders until the operator has logged in."""

from __future__ import annotations

import streamlit as st

from app.state import db, settings
from engine import auth


def require_login() -> bool:
    if st.session_state.get("authenticated"):
        return True
    configured = settings().operator_password
    has_password = auth.ensure_password(db(), configured.get_secret_value() if configured else None)
    st.title("QuantMatrix")
    if not has_password:
        _first_run_form()
    else:
        _login_form()
    return False


def _login_form() -> None:
    with st.form("login"):
        password = st.text_input("Operator password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        result = auth.check_login(db(), password)
        if result.ok:
            st.session_state["authenticated"] = True
            st.rerun()
        st.error(result.message)


def _first_run_form() -> None:
    st.info("No operator password is set yet. Choose one now (at least 8 characters); only its hash is stored.")
    with st.form("set_password"):
        first = st.text_input("New operator password", type="password", key="new_password")
        second = st.text_input("Repeat it", type="password", key="new_password_repeat")
        submitted = st.form_submit_button("Set password")
    if submitted:
        if first != second:
            st.error("the two passwords differ")
            return
        try:
            auth.set_password(db(), first)
        except (ValueError, PermissionError) as exc:
            st.error(str(exc))
            return
        st.session_state["authenticated"] = True
        st.rerun()
