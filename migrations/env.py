"""Alembic environment: the URL comes from QuantMatrix settings, the metadata from engine.models."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import engine.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from engine.config import get_settings
from engine.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Render our UTC timestamp type as plain DateTime(timezone=True): migrations stay importable
    without the application and the stored column type is the same."""
    from engine.models import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Our migrations own our tables only: the Optuna studies' tables share the database
    (engine.backtest.studies) and must not show up as tables to drop."""
    from engine.backtest.studies import include_name as not_optuna

    return not_optuna(name, type_, parent_names)


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or get_settings().db_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True,
                      include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("url") or get_settings().db_url
    connectable = make_engine(url)
    with connectable.connect() as connection:
        # render_as_batch: SQLite can only ALTER by copying tables; batch mode does that for us.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          render_item=render_item, include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
