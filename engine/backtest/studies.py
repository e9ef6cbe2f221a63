"""Where the parameter searches' Optuna studies live: in the project's own database (the SQLite file, or
the PostgreSQL database and schema of ``db_url``), in Optuna's own tables beside ours.

Optuna's ``RDBStorage`` records its schema revision with Alembic in the default ``alembic_version``
table, which is where our migrations record theirs. Sharing it corrupts both sides: Optuna stamps
``v3.2.0.a`` into an unmigrated database and ``engine.db.migrate`` then fails on an unknown revision;
on a migrated one Optuna reads our revision and calls its schema incompatible. So Optuna's bookkeeping
moves to a table of its own, ``optuna_alembic_version``, and this module does what Optuna's
``_VersionManager`` would do, against that table:

- our migrations run first, so ``alembic_version`` always holds our revision; Optuna's
  ``_VersionManager`` (built by every ``RDBStorage``) then finds it non-empty and never stamps there;
- a database without Optuna's tables gets them as Optuna creates them: ``create_all`` of its models,
  the ``version_info`` row, its Alembic head stamped (in ``optuna_alembic_version``), in one transaction
  under the migration lock;
- the compatibility check (our stamp equals the installed Optuna's head and ``version_info`` holds its
  ``SCHEMA_VERSION``) is done here; the storage is then opened with ``skip_compatibility_check`` and
  ``skip_table_creation``. An incompatible schema raises: upgrading it needs Optuna's migrations run
  with this version table, never ``optuna storage upgrade`` (that would stamp our ``alembic_version``);
- our migrations ignore Optuna's tables (``include_name``), so autogenerate and the drift test do not
  propose to drop them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = ["OPTUNA_VERSION_TABLE", "include_name", "optuna_tables", "study_storage"]

OPTUNA_VERSION_TABLE = "optuna_alembic_version"


@cache
def optuna_tables() -> frozenset[str]:
    from optuna.storages._rdb import models

    return frozenset(models.BaseModel.metadata.tables) | {OPTUNA_VERSION_TABLE}


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: our migrations compare and autogenerate our tables only."""
    return not (type_ == "table" and name in optuna_tables())


def _optuna_script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from optuna.storages._rdb import models

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(models.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(cfg)


def _ensure_optuna_schema(conn: sa.Connection) -> None:
    """Create Optuna's tables if absent, else check that the installed Optuna can use them."""
    import optuna
    from alembic.runtime.migration import MigrationContext
    from optuna.storages._rdb import models

    script = _optuna_script()
    head = script.get_current_head()
    ctx = MigrationContext.configure(conn, opts={"version_table": OPTUNA_VERSION_TABLE})
    current = ctx.get_current_revision()
    has_tables = sa.inspect(conn).has_table(models.VersionInfoModel.__tablename__)
    if current is None and not has_tables:
        models.BaseModel.metadata.create_all(conn)
        conn.execute(sa.insert(models.VersionInfoModel.__table__).values(
            version_info_id=1, schema_version=models.SCHEMA_VERSION, library_version=optuna.__version__))
        ctx.stamp(script, head)
        return
    info = conn.execute(sa.select(models.VersionInfoModel.__table__)).mappings().first() if has_tables else None
    if current == head and info is not None and info["schema_version"] == models.SCHEMA_VERSION:
        return
    found = f"revision {current}" if current else f"no revision in {OPTUNA_VERSION_TABLE}"
    if info is not None:
        found += f", schema {info['schema_version']} written by optuna {info['library_version']}"
    raise RuntimeError(
        f"the Optuna studies in this database ({found}) do not match the installed optuna {optuna.__version__} "
        f"(revision {head}, schema {models.SCHEMA_VERSION}): install the optuna that wrote them. Do not run "
        "`optuna storage upgrade` on the project database: it would stamp our alembic_version.")


def study_storage(db_url: str) -> Any:
    """An Optuna ``RDBStorage`` on the project database, its tables created or checked first."""
    from optuna.storages import RDBStorage

    from engine.db import _migration_lock, make_engine, migrate

    migrate(db_url)  # fills alembic_version with ours before Optuna's _VersionManager looks at it
    engine = make_engine(db_url)
    try:
        with _migration_lock(db_url), engine.begin() as conn:
            _ensure_optuna_schema(conn)
    finally:
        engine.dispose()
    # Optuna's own engine: wait for the scheduler's or the console's write lock instead of failing at once.
    kwargs = {"connect_args": {"timeout": 30}} if db_url.startswith("sqlite") else {"pool_pre_ping": True}
    return RDBStorage(db_url, engine_kwargs=kwargs, skip_compatibility_check=True, skip_table_creation=True)
