"""Shared console resources: settings and the database engine, created once per server process."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from engine.config import Settings, get_settings
from engine.db import get_engine


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return get_settings()


@st.cache_resource(show_spinner=False)
def db() -> Engine:
    return get_engine(settings().db_url)
