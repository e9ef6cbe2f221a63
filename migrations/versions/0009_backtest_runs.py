"""backtest runs: parameters, data range, source, code version, trades

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backtestrun", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default="stock"))
        batch_op.add_column(sa.Column("data_source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default="sim"))
        batch_op.add_column(sa.Column("data_start", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("data_end", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("n_symbols", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("code_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("equity", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table(
        "backtesttrade",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("entry_date", sa.Date(), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_date", sa.Date(), nullable=True),
        sa.Column("exit_price", sa.Float(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("exit_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("entry_reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("stop", sa.Float(), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=False),
        sa.Column("fill_source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["backtestrun.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backtesttrade", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backtesttrade_run_id"), ["run_id"], unique=False)
        batch_op.create_index("ix_backtesttrade_run_symbol", ["run_id", "symbol"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("backtesttrade", schema=None) as batch_op:
        batch_op.drop_index("ix_backtesttrade_run_symbol")
        batch_op.drop_index(batch_op.f("ix_backtesttrade_run_id"))
    op.drop_table("backtesttrade")
    with op.batch_alter_table("backtestrun", schema=None) as batch_op:
        for col in ("error", "equity", "seconds", "code_version", "n_symbols", "data_end", "data_start",
                    "data_source", "mode"):
            batch_op.drop_column(col)
