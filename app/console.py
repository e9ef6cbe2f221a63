"""Streamlit entry point: ``streamlit run app/console.py``.

The entry lives in app/ (not beside pages/) so Streamlit never switches to its automatic pages/ mode:
every page is registered here through st.navigation. Before login the navigation is hidden and the script
stops at the gate before ``navigation.run()``, so a page's URL path requested directly (e.g. /positions)
shows only the login form: no page module runs and no engine action is reachable. After login the same
URL opens that page.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.gate import logout, require_login, restore_session  # noqa: E402
from app.registry import PAGES  # noqa: E402

st.set_page_config(page_title="QuantMatrix", page_icon="📈", layout="wide")

from app.state import settings as _settings  # noqa: E402
from engine.config import SettingsError  # noqa: E402
from engine.redact import install_log_redaction  # noqa: E402

try:  # log lines of this server process mask every configured secret value and URL password
    install_log_redaction(_settings())
except SettingsError:
    install_log_redaction()  # the pages show the settings error (masked) themselves

# a reload restores the login from its cookie before the navigation is built, so the page keeps its links
login = restore_session()
authenticated = login[0]
sections: dict[str, list[st.Page]] = {}
for i, spec in enumerate(PAGES):
    sections.setdefault(spec.section, []).append(
        st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=i == 0))
# expanded: every page link shows (collapsed, the sidebar hides the pages past the tenth behind "View more")
navigation = st.navigation(sections, position="sidebar" if authenticated else "hidden", expanded=True)

if not require_login(login):
    st.stop()

from app.sidebar import render_sidebar  # noqa: E402  (imported after the gate: it reads the database)

render_sidebar(logout)
started = time.perf_counter()
try:
    navigation.run()
finally:
    # Server-side time of the page script, for the console benchmark (engine/bench/console.py).
    st.session_state["_qm_page_ms"] = (time.perf_counter() - started) * 1000
