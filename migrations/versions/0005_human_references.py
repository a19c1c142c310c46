"""Human references: held-out human text measured under a judge, once per (split, judge,
tokenizer, length), shown beside every judged sample set and on every frontier.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the models' column types, so this revision never imports the models.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "human_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=500), nullable=False),
        sa.Column("judge", sa.String(length=500), nullable=False),
        sa.Column("tokenizer", sa.String(length=64), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_human_references")),
        sa.UniqueConstraint(
            "dataset",
            "judge",
            "tokenizer",
            "length",
            name=op.f("uq_human_references_dataset_judge_tokenizer_length"),
        ),
    )


def downgrade() -> None:
    op.drop_table("human_references")
