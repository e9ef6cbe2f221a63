"""Database engine and sessions. SQLite (default) in WAL mode with a busy timeout so the console and the
scheduler can both write; PostgreSQL through ``postgresql+psycopg://`` URLs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from engine.config import ROOT, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "qm_read_only"  # connection execution option set by read_scope


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers proceed while one writer writes; busy_timeout makes a second writer wait
            # instead of failing with "database is locked".
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Sent on the driver's connection: a BEGIN needs no result object, and going through
            # SQLAlchemy's execution path cost more than the statement (an order begins several, issue 11).
            # Read-only work (read_scope): a deferred transaction is a consistent WAL snapshot that never
            # takes the write lock, so it neither waits for writers nor makes them wait. Work that writes
            # takes the write lock at BEGIN: a deferred transaction that reads and then writes can hit
            # SQLITE_BUSY without waiting on busy_timeout when another process wrote in between. Such
            # transactions must be short: fetch from the network first, then write.
            statement = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
            try:
                conn.connection.driver_connection.execute(statement)
            except sqlite3.Error as exc:  # as SQLAlchemy would raise it ("database is locked" included)
                raise sa_exc.DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc

        @event.listens_for(engine, "connect")
        def _no_pysqlite_autobegin(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (above)

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().db_url)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only unit of work: a snapshot without the write lock (SQLite), for reads that may take a
    while or wrap slow calls. Any attempt to write through it raises instead of silently taking the lock."""
    bound = (engine or get_engine()).execution_options(**{READ_ONLY: True})
    with Session(bound, expire_on_commit=False) as session:
        event.listen(session, "before_flush", _refuse_writes)
        try:
            yield session
        finally:
            session.rollback()  # nothing to commit; ends the snapshot


def _refuse_writes(session: Session, _flush_context, _instances) -> None:  # type: ignore[no-untyped-def]
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("read_scope is read-only: write in a session_scope (a short write transaction)")


def migrate(url: str | None = None) -> None:
    """Bring the schema to the newest Alembic revision. Two processes starting together (two schedulers,
    scheduler and console) migrate one after the other: a file lock beside a SQLite file, an advisory
    lock on PostgreSQL; the second then finds the schema at head and does nothing."""
    from alembic import command
    from alembic.config import Config

    url = url or get_settings().db_url
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = url
    with _migration_lock(url):
        command.upgrade(cfg, "head")


MIGRATION_LOCK_KEY = 0x514D_4D49  # "QMMI": the advisory lock id the migrations hold on PostgreSQL


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:":
            yield
            return
        import fcntl

        lock_path = Path(path + ".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                conn.commit()
    finally:
        engine.dispose()
