"""Shared console resources, created once per server process: settings and the database engines.

``db()`` is the engine's own database engine, used for every write (operator decisions, commands,
settings). ``reader()`` is a second engine for page reads: on SQLite it uses plain deferred read
transactions in query-only mode, so a page never queues behind the scheduler's write lock (the engine's
engine opens every transaction with BEGIN IMMEDIATE) and can never write by accident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from engine.config import Settings, get_settings
from engine.db import SQLITE_BUSY_TIMEOUT_MS, get_engine, migrate

ACTOR = "operator"  # a single-operator system: every console decision is recorded as this actor


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    """Settings from the environment, .env and .streamlit/secrets.toml (without console changes)."""
    return get_settings()


@st.cache_resource(show_spinner=False)
def db() -> Engine:
    url = settings().db_url
    migrate(url)  # a first start of the console works on an empty data directory too
    return get_engine(url)


@st.cache_resource(show_spinner=False)
def reader() -> Engine:
    engine = db()
    url = settings().db_url
    if not url.startswith("sqlite"):
        return engine
    read = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(read, "connect")
    def _read_only(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA query_only=ON")
        cur.close()

    return read


@st.cache_resource(show_spinner=False)
def studies() -> Any:
    """The Optuna storage of the stored parameter searches (in the project database), opened once: opening
    it migrates and checks both schemas, tens of milliseconds a page run would otherwise pay. A schema
    written by another optuna raises RuntimeError, which is not cached (the next run asks again)."""
    from engine.backtest.studies import study_storage

    db()  # the project database exists and is migrated
    return study_storage(settings().db_url)


@st.cache_resource(show_spinner=False, ttl=5)
def effective() -> Settings:
    """Settings with the operator's stored changes applied: what the scheduler's next job uses."""
    from sqlmodel import Session

    from engine.config import SettingsError
    from engine.settings_store import effective_settings

    with Session(reader()) as session:
        try:
            return effective_settings(session, settings())
        except SettingsError:
            return settings()  # a stored value that no longer validates: the page shows it; keep the base


def now() -> datetime:
    return datetime.now(UTC)


def db_key() -> str:
    """Part of every cached read's key, so two databases never share cached results."""
    return settings().db_url


def refresh() -> None:
    """Forget cached reads after a write, so every page shows the new state at once."""
    st.cache_data.clear()
    effective.clear()
