"""Login gate: nothing else in the console renders until the operator has logged in.

The password is set from QM_OPERATOR_PASSWORD / .streamlit/secrets.toml or with
``python -m engine operator set-password`` (only its scrypt hash is stored); the login page never sets one,
so the first visitor cannot claim the console. Failed attempts slow down the client that makes them
(engine.auth), never everyone, so nobody can lock the operator out of the kill switch.

Reload: a successful login stores a signed session token (HMAC-SHA256 over its expiry and a nonce, keyed by
the stored password hash, so a password change voids every token) in a cookie, ``qm_session``, with
``SameSite=Strict`` and ``Max-Age`` = ``QM_CONSOLE__SESSION_HOURS``. Streamlit reads cookies
(``st.context.cookies``) but cannot set them, so a tiny same-origin component script writes it. A cookie
rather than a query-parameter token: it never shows in the address bar, history, bookmarks or a Referer.
It cannot be HttpOnly (it is written by script); the console listens on loopback only. Log out clears it.
"""

from __future__ import annotations

import json

import streamlit as st

from app.state import db, settings
from engine import auth

SESSION_KEY = "authenticated"
COOKIE = "qm_session"
_SET_COOKIE = "_qm_set_cookie"
_LOGGED_OUT = "_qm_logged_out"


def _client() -> str:
    """Who is trying: the client's address as Streamlit sees it (the slow-down is per client)."""
    try:
        address = st.context.ip_address
    except Exception:  # outside a browser session (tests)
        address = None
    return address if isinstance(address, str) and address else "unknown"


def _write_cookie(value: str, max_age: int) -> None:
    import streamlit.components.v1 as components

    cookie = f"{COOKIE}={value}; Max-Age={max_age}; Path=/; SameSite=Strict"
    components.html(f"<script>window.parent.document.cookie = {json.dumps(cookie)};</script>", height=0)


def _from_cookie() -> bool:
    if st.session_state.get(_LOGGED_OUT):
        return False
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # no browser request behind this run (tests)
        return False
    return auth.verify_token(db(), token)


def restore_session() -> tuple[bool, bool]:
    """(logged in, a password is set) for this browser session, restoring a login from the cookie first
    (a reload or a new tab starts a new Streamlit session). Draws nothing, so the console calls it before
    it builds the navigation (else a reloaded page ran without its sidebar links) and hands the answer to
    ``require_login``, so the password is checked once per run."""
    if st.session_state.get(SESSION_KEY):
        return True, True
    configured = settings().operator_password
    has_password = auth.ensure_password(db(), configured.get_secret_value() if configured else None)
    if has_password and _from_cookie():
        st.session_state[SESSION_KEY] = True
        return True, True
    return False, has_password


def require_login(state: tuple[bool, bool] | None = None) -> bool:
    """True when logged in; else draws the login form (or how to set the first password) and returns
    False. ``state``: what ``restore_session`` answered earlier in this run."""
    logged_in, has_password = state if state is not None else restore_session()
    if logged_in:
        token = st.session_state.pop(_SET_COOKIE, None)
        if token:
            _write_cookie(token, int(settings().console.session_hours * 3600))
        return True
    if st.session_state.pop(_SET_COOKIE, None) == "":
        _write_cookie("", 0)  # log out: forget the browser's token
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("📈 QuantMatrix")
        st.caption("Operator console · log in to continue")
        if not has_password:
            _no_password_yet()
        else:
            _login_form()
    return False


def logout() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[_LOGGED_OUT] = True
    st.session_state[_SET_COOKIE] = ""
    st.rerun()


def _login_form() -> None:
    with st.form("login"):
        password = st.text_input("Operator password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary", key="login_submit")
    if submitted:
        result = auth.check_login(db(), password, client=_client())
        if result.ok:
            st.session_state[SESSION_KEY] = True
            st.session_state.pop(_LOGGED_OUT, None)
            hours = settings().console.session_hours
            if hours > 0:
                st.session_state[_SET_COOKIE] = auth.issue_token(db(), hours)
            st.rerun()
        st.error(result.message)


def _no_password_yet() -> None:
    st.warning("No operator password is set yet. On the machine that runs QuantMatrix, run\n\n"
               "`.venv/bin/python -m engine operator set-password`\n\n"
               "or set `QM_OPERATOR_PASSWORD` (or `operator_password` in .streamlit/secrets.toml), then reload "
               "this page. The console never lets a visitor choose it.")
