"""Massive: settled sessions (barday.final), sectors from SIC codes and retired listings (instrument)

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Days stored before this revision are taken as final: re-fetching every one would cost a request
    # per stored session; only days stored from now on can be provisional.
    with op.batch_alter_table("barday") as batch:
        batch.add_column(sa.Column("final", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("instrument") as batch:
        batch.add_column(sa.Column("sic_code", sa.String(length=8), nullable=False, server_default=""))
        batch.add_column(sa.Column("details_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instrument") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("details_at")
        batch.drop_column("sic_code")
    with op.batch_alter_table("barday") as batch:
        batch.drop_column("final")
