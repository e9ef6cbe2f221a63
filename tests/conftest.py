"""Shared fixtures: an isolated data directory and database per test, PostgreSQL when reachable."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
POSTGRES_URL = os.environ.get("QM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data: in CI (CI=true) a missing file fails the test, elsewhere it skips."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"recorded data not found at {path} (../shared/data is absent in this checkout)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI must run the tests on the real recorded data")
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data dir and SQLite file; no test sees the developer's var/ or .env."""
    for key in list(os.environ):
        if key.startswith("QM_") and key not in ("QM_TEST_POSTGRES_URL", "QM_REQUIRE_POSTGRES"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("QM_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # so a developer's .env in the repo is not read
    from engine.config import get_settings
    from engine.db import get_engine

    get_settings.cache_clear()
    get_engine.cache_clear()
    yield
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'quantmatrix.db'}"


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL `test` database, dropped afterwards."""
    if not _postgres_reachable():
        if os.environ.get("QM_REQUIRE_POSTGRES") == "1":
            pytest.fail("QM_REQUIRE_POSTGRES=1 but PostgreSQL at 127.0.0.1:5432 is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable (set QM_TEST_POSTGRES_URL to point elsewhere)")
    import sqlalchemy as sa

    schema = f"qm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def migrated_sqlite(sqlite_url: str):  # type: ignore[no-untyped-def]
    from engine.db import get_engine, migrate

    migrate(sqlite_url)
    return get_engine(sqlite_url)
