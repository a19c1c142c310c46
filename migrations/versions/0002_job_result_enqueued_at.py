"""Jobs: `result` (what a finished job produced) and `enqueued_at` (last send).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

`enqueued_at` lets the reconciler resend only queued jobs whose message is old (lost to a
broker restart) instead of every queued job on every pass. Both columns are nullable, so
the upgrade needs no backfill; SQLite adds them in batch mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result", JSON, nullable=True))
        batch.add_column(sa.Column("enqueued_at", UTC_TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("enqueued_at")
        batch.drop_column("result")
