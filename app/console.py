"""Streamlit entry point: ``streamlit run app/console.py``.

The entry lives in app/ (not beside pages/) so Streamlit never switches to its automatic pages/
mode, and every page is registered through st.navigation below, after the login gate: a page's
URL path requested directly still runs this script first and stops at the gate.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.gate import require_login  # noqa: E402
from app.registry import PAGES  # noqa: E402

st.set_page_config(page_title="QuantMatrix", page_icon="📈", layout="wide")

if not require_login():
    st.stop()

navigation = st.navigation(
    [st.Page(page.render, title=page.title, icon=page.icon, url_path=page.url_path, default=i == 0)
     for i, page in enumerate(PAGES)]
)
navigation.run()
