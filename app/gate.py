"""Login gate: nothing else in the console renders until the operator has logged in.

The password is set from QM_OPERATOR_PASSWORD or .streamlit/secrets.toml (only its scrypt hash is stored),
or on first run from this page. engine.auth compares in constant time and locks the login for 15 minutes
after 5 failures, counted in the database so a restart does not reset them.
"""

from __future__ import annotations

import streamlit as st

from app.state import db, settings
from engine import auth

SESSION_KEY = "authenticated"


def require_login() -> bool:
    if st.session_state.get(SESSION_KEY):
        return True
    configured = settings().operator_password
    has_password = auth.ensure_password(db(), configured.get_secret_value() if configured else None)
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("📈 QuantMatrix")
        st.caption("Operator console · log in to continue")
        if not has_password:
            _first_run_form()
        else:
            _login_form()
    return False


def logout() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.rerun()


def _login_form() -> None:
    with st.form("login"):
        password = st.text_input("Operator password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary", key="login_submit")
    if submitted:
        result = auth.check_login(db(), password)
        if result.ok:
            st.session_state[SESSION_KEY] = True
            st.rerun()
        st.error(result.message)


def _first_run_form() -> None:
    st.info("No operator password is set yet. Choose one now (at least 8 characters); only its hash is stored. "
            "You can also set QM_OPERATOR_PASSWORD or `operator_password` in .streamlit/secrets.toml.")
    with st.form("set_password"):
        first = st.text_input("New operator password", type="password", key="new_password")
        second = st.text_input("Repeat it", type="password", key="new_password_repeat")
        submitted = st.form_submit_button("Set password", type="primary", key="set_password_submit")
    if submitted:
        if first != second:
            st.error("the two passwords differ")
            return
        try:
            auth.set_password(db(), first)
        except (ValueError, PermissionError) as exc:
            st.error(str(exc))
            return
        st.session_state[SESSION_KEY] = True
        st.rerun()
