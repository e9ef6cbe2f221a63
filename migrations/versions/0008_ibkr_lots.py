"""IBKR Flex history and the lot engine: tax lot columns, wash sales, P&L checks, position snapshots

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_M = sa.Numeric(precision=18, scale=6)


def upgrade() -> None:
    op.create_table(
        "brokerpositionsnapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broker", _S(length=16), nullable=False),
        sa.Column("account", _S(length=32), nullable=False),
        sa.Column("snapshot_key", _S(length=96), nullable=False),
        sa.Column("report_date", sa.Date(), nullable=True),
        sa.Column("symbol", _S(length=32), nullable=False),
        sa.Column("asset", _S(length=16), nullable=False),
        sa.Column("quantity", _M, nullable=False),
        sa.Column("mark", _M, nullable=True),
        sa.Column("cost_basis", _M, nullable=True),
        sa.Column("currency", _S(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("broker", "account", "snapshot_key"),
    )
    op.create_table(
        "lotpnlcheck",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broker", _S(length=16), nullable=False),
        sa.Column("account", _S(length=32), nullable=False),
        sa.Column("closing_trade_id", _S(length=96), nullable=False),
        sa.Column("symbol", _S(length=32), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("broker_pnl", _M, nullable=False),
        sa.Column("our_pnl", _M, nullable=False),
        sa.Column("difference", _M, nullable=False),
        sa.Column("cause", _S(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "washsalerecord",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loss_account", _S(length=32), nullable=False),
        sa.Column("symbol", _S(length=32), nullable=False),
        sa.Column("sold", sa.Date(), nullable=False),
        sa.Column("closing_trade_id", _S(length=96), nullable=False),
        sa.Column("quantity", _M, nullable=False),
        sa.Column("disallowed", _M, nullable=False),
        sa.Column("replacement_account", _S(length=32), nullable=False),
        sa.Column("replacement_symbol", _S(length=32), nullable=False),
        sa.Column("replacement_acquired", sa.Date(), nullable=False),
        sa.Column("replacement_trade_id", _S(length=96), nullable=False),
        sa.Column("replacement_lot_key", _S(length=96), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("washsalerecord", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_washsalerecord_symbol"), ["symbol"], unique=False)
    with op.batch_alter_table("taxlot", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lot_key", _S(length=96), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("asset", _S(length=16), nullable=False, server_default="stock"))
        batch_op.add_column(sa.Column("underlying", _S(length=32), nullable=True))
        batch_op.add_column(sa.Column("multiplier", _M, nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("currency", _S(length=8), nullable=False, server_default="USD"))
        batch_op.add_column(sa.Column("opening_trade_id", _S(length=96), nullable=True))
        batch_op.add_column(sa.Column("closing_trade_id", _S(length=96), nullable=True))
        batch_op.add_column(sa.Column("close_kind", _S(length=16), nullable=True))
        batch_op.add_column(sa.Column("holding_period_start", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("wash_sale_disallowed", _M, nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("wash_sale_adjustment", _M, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("taxlot", schema=None) as batch_op:
        for name in ("wash_sale_adjustment", "wash_sale_disallowed", "holding_period_start", "close_kind",
                     "closing_trade_id", "opening_trade_id", "currency", "multiplier", "underlying", "asset",
                     "lot_key"):
            batch_op.drop_column(name)
    with op.batch_alter_table("washsalerecord", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_washsalerecord_symbol"))
    op.drop_table("washsalerecord")
    op.drop_table("lotpnlcheck")
    op.drop_table("brokerpositionsnapshot")
