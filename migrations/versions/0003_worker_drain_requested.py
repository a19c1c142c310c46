"""Workers: `drain_requested` (finish the current job, take no new one, exit).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

`text-diffusion workers drain NAME` sets it; the worker's maintenance thread acts on it.
NOT NULL with a server default of false, so existing rows need no backfill.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER TABLE ADD COLUMN, which SQLite also takes: batch mode would rebuild the
    # table for a default that is an expression, and that cannot be rendered offline (--sql).
    op.add_column(
        "workers",
        sa.Column("drain_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("drain_requested")
