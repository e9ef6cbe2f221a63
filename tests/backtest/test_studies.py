"""The Optuna studies live in the project database beside our tables, on SQLite and PostgreSQL, without
either side's Alembic bookkeeping seeing the other's."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.backtest.search import ParamRange, SearchSpec, run_walk_forward
from engine.backtest.studies import OPTUNA_VERSION_TABLE, include_name, study_storage
from engine.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]
SPEC = SearchSpec(study="s1", symbols=4, start=date(2021, 1, 4), end=date(2021, 3, 31), sampler="random",
                  trials=2, folds=1, is_sessions=30, oos_sessions=10, ranges=(ParamRange("fast", 20, 40, 5, True),))


def _heads() -> tuple[str, str]:
    """(our migrations' head, the installed Optuna's head), read from each side's script directory."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from optuna.storages._rdb import models

    ours = Config()
    ours.set_main_option("script_location", str(ROOT / "migrations"))
    theirs = Config()
    theirs.set_main_option("script_location", str(Path(models.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(ours).get_current_head(), ScriptDirectory.from_config(theirs).get_current_head()


def _check_bookkeeping(url: str) -> None:
    """Both version tables hold their own side's head; our drift check sees no difference once Optuna's
    tables are left out, and would see them without the filter (so the filter is what makes it pass)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    ours, theirs = _heads()
    migrate(url)  # again, on a database holding studies: a no-op, not an error
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select version_num from alembic_version")).scalars().all() == [ours]
            assert conn.execute(sa.text(f"select version_num from {OPTUNA_VERSION_TABLE}")).scalars().all() == [
                theirs]
            assert compare_metadata(MigrationContext.configure(conn, opts={"include_name": include_name}),
                                    SQLModel.metadata) == []
            unfiltered = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
            assert {d[1].name for d in unfiltered if d[0] == "remove_table"} >= {"studies", "trials"}
    finally:
        engine.dispose()


def test_search_study_lands_in_the_project_sqlite_file(sqlite_url: str, client: Any) -> None:
    db = Path(sqlite_url.split("///", 1)[1])
    result = run_walk_forward(SPEC, study_storage(sqlite_url), client)
    assert result["folds"][0]["trials"] == 2
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.startswith(db.name)) == []  # no optuna.sqlite
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("select study_name from studies").fetchall() == [("s1-fold1",)]
        assert conn.execute("select count(*) from trials where state = 'COMPLETE'").fetchone() == (2,)
    _check_bookkeeping(sqlite_url)
    # Reopened (as a rerun after a kill does), the study is found and not redone.
    again = run_walk_forward(SPEC, study_storage(sqlite_url), client)
    assert again["folds"][0]["trials"] == 2 and again["folds"][0]["best_params"] == result["folds"][0]["best_params"]


def test_models_match_migrations_on_a_database_holding_studies(sqlite_url: str) -> None:
    """What `migrations/env.py` uses (include_name) keeps autogenerate from proposing to drop the studies."""
    import optuna

    storage = study_storage(sqlite_url)
    study = optuna.create_study(study_name="x", storage=storage)
    study.tell(study.ask(), 1.0)
    _check_bookkeeping(sqlite_url)


def test_an_incompatible_optuna_schema_is_refused(sqlite_url: str) -> None:
    from optuna.storages._rdb import models

    study_storage(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # as left by an older optuna: an older revision stamped
        conn.execute(sa.text(f"update {OPTUNA_VERSION_TABLE} set version_num = 'v3.0.0.d'"))
    with pytest.raises(RuntimeError, match=r"revision v3\.0\.0\.d.*do not match the installed optuna"):
        study_storage(sqlite_url)
    with engine.begin() as conn:  # right revision, but version_info says another schema
        conn.execute(sa.text(f"update {OPTUNA_VERSION_TABLE} set version_num = :v"), {"v": _heads()[1]})
        conn.execute(sa.text("update version_info set schema_version = :s"), {"s": models.SCHEMA_VERSION - 1})
    with pytest.raises(RuntimeError, match=f"schema {models.SCHEMA_VERSION - 1} written by optuna"):
        study_storage(sqlite_url)
    with engine.begin() as conn:  # Optuna's tables without our record of them: not ours to guess
        conn.execute(sa.text(f"delete from {OPTUNA_VERSION_TABLE}"))
    with pytest.raises(RuntimeError, match=f"no revision in {OPTUNA_VERSION_TABLE}"):
        study_storage(sqlite_url)
    engine.dispose()


@pytest.mark.postgres
def test_postgres_studies_share_the_schema_with_our_tables(postgres_url: str, client: Any) -> None:
    import optuna

    result = run_walk_forward(SPEC, study_storage(postgres_url), client)
    assert result["folds"][0]["trials"] == 2
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        schema = conn.execute(sa.text("select current_schema()")).scalar()
        tables = set(sa.inspect(conn).get_table_names(schema=schema))
    engine.dispose()
    assert {"studies", "trials", "version_info", OPTUNA_VERSION_TABLE, "alembic_version", "order"} <= tables
    _check_bookkeeping(postgres_url)
    s = optuna.load_study(study_name="s1-fold1", storage=study_storage(postgres_url))
    assert len([t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2
