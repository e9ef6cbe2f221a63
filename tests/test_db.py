"""Migrations and a read/write round trip on SQLite and PostgreSQL; concurrent SQLite writers."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel, select

import engine.models as m
from engine.db import make_engine, migrate, session_scope

ROOT = Path(__file__).resolve().parent.parent


def _round_trip(url: str) -> None:
    migrate(url)
    engine = make_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables, set(SQLModel.metadata.tables) - tables
    with session_scope(engine) as s:
        sig = m.Signal(strategy="atr_matrix", symbol="ABC", data_date=date(2026, 11, 20), score=0.9,
                       targets=[1.5, 2.5], values={"atr": 1.25})
        s.add(sig)
        s.flush()
        order = m.Order(client_order_id="qm-abc-1", strategy="atr_matrix", signal_id=sig.id, symbol="ABC",
                        structure="long_call", quantity=3, limit_price=Decimal("2.35"),
                        legs=[{"symbol": "ABC   261218C00050000", "ratio": 1}])
        s.add(order)
        s.flush()
        s.add(m.OrderEvent(order_id=order.id, client_order_id=order.client_order_id, to_status="proposed"))
    with session_scope(engine) as s:
        got = s.exec(select(m.Order).where(m.Order.client_order_id == "qm-abc-1")).one()
        # NUMERIC keeps cents exact: 2.35 comes back as Decimal("2.35"), not 2.3500000000000001.
        assert got.limit_price == Decimal("2.35")
        assert got.legs[0]["symbol"] == "ABC   261218C00050000"
        assert got.created_at.year >= 2026
        sig = s.get(m.Signal, got.signal_id)
        assert sig is not None and sig.values == {"atr": 1.25} and sig.targets == [1.5, 2.5]
    # Migrating again is a no-op, not an error.
    migrate(url)
    engine.dispose()


def test_sqlite_migrations_and_round_trip(sqlite_url: str) -> None:
    _round_trip(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


@pytest.mark.postgres
def test_postgres_migrations_and_round_trip(postgres_url: str) -> None:
    _round_trip(postgres_url)


def test_models_match_migrations(sqlite_url: str) -> None:
    """Autogenerate against the migrated schema finds nothing: every model change has a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


WRITER = """
import sys
from engine.db import make_engine, session_scope
from engine.models import JobRun, OperatorCommand
url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = make_engine(url)
for i in range(n):
    with session_scope(engine) as s:
        # read-then-write in one transaction: the pattern that fails with "database is locked"
        # under deferred transactions
        s.exec(__import__("sqlmodel").select(JobRun)).first()
        s.add(JobRun(job_id=f"{tag}-{i}", outcome="ok"))
        s.add(OperatorCommand(kind="noop", payload={"i": i}, created_by=tag))
print("done", tag)
"""


def test_two_processes_write_sqlite_concurrently(sqlite_url: str) -> None:
    migrate(sqlite_url)
    n = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, sqlite_url, tag, str(n)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("console", "scheduler")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert "done" in out
        assert p.returncode == 0, err
        assert "locked" not in err
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM jobrun").scalar() == 2 * n
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM operatorcommand").scalar() == 2 * n


def test_a_writer_that_cannot_take_the_lock_fails_as_sqlalchemy_reports_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Our BEGIN IMMEDIATE goes straight to the driver; when another process holds the write lock past the
    busy timeout, callers still see SQLAlchemy's OperationalError (the paper venue maps it to
    BrokerUnavailable, the scheduler retries it), and a read-only snapshot does not wait at all."""
    import sqlite3

    import engine.db as db

    path = tmp_path / "locked.db"
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with pytest.raises(sa.exc.OperationalError, match="database is locked"), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        reader = engine.execution_options(**{db.READ_ONLY: True})
        with reader.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        other.rollback()
        other.close()
    with engine.begin() as conn:  # the lock released: the same engine writes again
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
