"""Fixtures for the console tests: databases filled by real engine activity, built once per session and
copied per test, and an AppTest factory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = str(ROOT / "app" / "console.py")
PASSWORD = "console-test-password"
SIM_SYMBOLS = "600"
# Fixed dates (not "the last N sessions"): the simulated market is a function of the date, so the same
# days always give the same signals, orders and fills, whenever the tests run.
BARS_FROM, BARS_TO = date(2025, 7, 1), date(2026, 9, 30)
REPLAY_FROM, REPLAY_TO = date(2026, 10, 1), date(2026, 10, 8)
MANUAL_DAY = date(2026, 10, 9)  # a pre-market in manual mode: its entry orders wait for approval


def _clean_env(mp: pytest.MonkeyPatch, data_dir: Path) -> None:
    for key in list(os.environ):
        if key.startswith("QM_") and key not in ("QM_TEST_POSTGRES_URL", "QM_REQUIRE_POSTGRES", "QM_REQUIRE_BROWSER"):
            mp.delenv(key)
    mp.delenv("DATABASE_URL", raising=False)
    mp.setenv("QM_DATA_DIR", str(data_dir))
    mp.setenv("QM_SIM_SYMBOLS", SIM_SYMBOLS)
    mp.chdir(data_dir)


def _seed(settings) -> None:  # type: ignore[no-untyped-def]
    """What `python -m engine init` does, with a fixed range of bars."""
    from engine.data.sources import bar_store, fill_bar_store, get_market_data
    from engine.data.universe import sync_universe
    from engine.db import get_engine, migrate, session_scope

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db_url)
    market = get_market_data(settings)
    with session_scope(get_engine(settings.db_url)) as session:
        sync_universe(session, market.universe(), market.name)
    fill_bar_store(market, bar_store(settings), BARS_FROM, BARS_TO)


def build_database(data_dir: Path, replay: bool) -> None:
    """Seed bars and universe; with ``replay``, run the scheduler's jobs over REPLAY_FROM..REPLAY_TO (job runs,
    heartbeats, scans, orders, fills, positions, snapshots, notifications), then a manual-mode pre-market."""
    from engine.clock import NEW_YORK, ReplayClock
    from engine.config import ApprovalMode, get_settings
    from engine.context import build_context
    from engine.db import get_engine

    data_dir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp, data_dir)
        get_settings.cache_clear()
        get_engine.cache_clear()
        settings = get_settings()
        _seed(settings)
        if replay:
            from engine import pipeline, runtime

            clock = ReplayClock(datetime.combine(REPLAY_FROM, time(6, 0), NEW_YORK))
            ctx = build_context(settings, clock=clock)
            state = runtime.RuntimeState(instance="console-tests")
            runtime.replay(ctx, clock, state, REPLAY_FROM, REPLAY_TO, speed=0,
                           intraday_every=timedelta(minutes=30))
            manual = settings.model_copy(update={"approval_mode": ApprovalMode.manual})
            clock.set(datetime.combine(MANUAL_DAY, time(8, 30), NEW_YORK))
            pipeline.run_premarket(build_context(manual, clock=clock))
        get_engine(settings.db_url).dispose()
        get_settings.cache_clear()
        get_engine.cache_clear()


@pytest.fixture(scope="session")
def filled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-filled") / "var"
    build_database(path, replay=True)
    return path


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-seeded") / "var"
    build_database(path, replay=False)
    return path


def _use_copy(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "var"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    monkeypatch.setenv("QM_DATA_DIR", str(target))
    monkeypatch.setenv("QM_SIM_SYMBOLS", SIM_SYMBOLS)
    monkeypatch.setenv("QM_OPERATOR_PASSWORD", PASSWORD)
    _reset_caches()
    return target


def _reset_caches() -> None:
    import streamlit as st

    from engine.config import get_settings
    from engine.db import get_engine

    st.cache_data.clear()
    st.cache_resource.clear()
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture
def filled(filled_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the replay-filled data directory for one test."""
    return _use_copy(filled_template, tmp_path, monkeypatch)


@pytest.fixture
def seeded(seeded_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of a data directory with bars and universe but no engine activity (no scan yet)."""
    return _use_copy(seeded_template, tmp_path, monkeypatch)


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A migrated, empty database (no instruments, no bars)."""
    from engine.config import get_settings
    from engine.db import migrate

    monkeypatch.setenv("QM_OPERATOR_PASSWORD", PASSWORD)
    _reset_caches()
    migrate(get_settings().db_url)
    yield tmp_path / "var"
    _reset_caches()


@pytest.fixture
def db():  # type: ignore[no-untyped-def]
    """The engine's database engine for the current test's data directory (for checks)."""
    from engine.config import get_settings
    from engine.db import get_engine

    return get_engine(get_settings().db_url)


class Console:
    """AppTest of app/console.py with helpers to log in and open a page."""

    def __init__(self, logged_in: bool = True) -> None:
        from streamlit.testing.v1 import AppTest

        self.at = AppTest.from_file(CONSOLE, default_timeout=60)
        if logged_in:
            self.at.session_state["authenticated"] = True

    def open(self, page: str):  # type: ignore[no-untyped-def]
        """Run the console on ``page`` (the module name in pages/); returns the AppTest."""
        at = self.at
        at.run()
        at.switch_page(f"../pages/{page}.py")
        at.run()
        return at


@pytest.fixture
def console():  # type: ignore[no-untyped-def]
    def make(logged_in: bool = True) -> Console:
        return Console(logged_in)

    return make
