"""Scratch models name their positions: stored specs of runs and jobs made before get
`scratch.positions = "absolute"`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

A model trained from scratch was a RoBERTa encoder (learned absolute positions); it is now
a RoFormer (rotary positions) unless its spec says `positions: absolute`. A run or job
stored before this revision has no `positions` in its spec, and re-reading it would build
the new architecture, which its saved state cannot load into (a resumed run, a retried
job). This writes the architecture it was trained with into those specs. Plain SQL per
dialect, so `--sql` (offline) emits it too. Downgrading removes the key again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "jobs")


def _dialect() -> str:
    return context.get_context().dialect.name


def upgrade() -> None:
    for table in TABLES:
        if _dialect() == "postgresql":
            op.execute(
                f"UPDATE {table} SET spec = jsonb_set(spec, '{{scratch,positions}}', "
                "'\"absolute\"') WHERE jsonb_typeof(spec->'scratch') = 'object' "
                "AND NOT (spec->'scratch' ? 'positions')"
            )
        else:
            op.execute(
                f"UPDATE {table} SET spec = json_set(spec, '$.scratch.positions', 'absolute') "
                "WHERE json_type(spec, '$.scratch') = 'object' "
                "AND json_type(spec, '$.scratch.positions') IS NULL"
            )


def downgrade() -> None:
    for table in TABLES:
        if _dialect() == "postgresql":
            op.execute(
                f"UPDATE {table} SET spec = spec #- '{{scratch,positions}}' "
                "WHERE jsonb_typeof(spec->'scratch') = 'object'"
            )
        else:
            op.execute(
                f"UPDATE {table} SET spec = json_remove(spec, '$.scratch.positions') "
                "WHERE json_type(spec, '$.scratch') = 'object'"
            )
