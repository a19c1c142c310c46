"""Sweeps: `sweeps`, `sweep_trials`, `runs.sweep_trial_id`, and the `pruned` status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A sweep's trials are ordinary runs; `runs.sweep_trial_id` says which trial a run is one
seed of. `pruned` joins the job and run statuses (a trial its pruner stopped early), so
both CHECK constraints are rebuilt (batch mode: SQLite cannot alter a constraint, so it
copies the table; offline, `--sql` has no database to read the table from, so it copies
from the frozen definitions below: `runs` and `jobs` as revisions 0001-0005 left them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("queued", "running", "succeeded", "failed", "cancelled")
NEW = (*OLD, "pruned")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _frozen(table: str, statuses: Sequence[str], *, trial_column: bool = False) -> sa.Table:
    """`runs` or `jobs` as the database holds them (`statuses` allowed; `runs` with or
    without `sweep_trial_id`), for offline SQL, which cannot read them."""
    meta = sa.MetaData()
    ts = UTC_TIMESTAMP
    sa.Table("sweep_trials", meta, sa.Column("id", sa.Integer(), primary_key=True))
    if table == "runs":
        extra = (
            [
                sa.Column(
                    "sweep_trial_id",
                    sa.Integer(),
                    sa.ForeignKey(
                        "sweep_trials.id",
                        ondelete="SET NULL",
                        name="fk_runs_sweep_trial_id_sweep_trials",
                    ),
                ),
                sa.Index("ix_runs_sweep_trial_id", "sweep_trial_id"),
            ]
            if trial_column
            else []
        )
        return sa.Table(
            "runs",
            meta,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("preset", sa.String(64)),
            sa.Column("tags", JSON, nullable=False),
            sa.Column("spec", JSON, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created_at", ts, nullable=False),
            sa.Column("started_at", ts),
            sa.Column("finished_at", ts),
            sa.Column("summary", JSON, nullable=False),
            sa.Column("step", sa.Integer(), nullable=False),
            sa.Column("max_steps", sa.Integer()),
            sa.Column("tokens_seen", sa.BigInteger(), nullable=False),
            *extra,
            sa.PrimaryKeyConstraint("id", name="pk_runs"),
            sa.CheckConstraint(_one_of("status", statuses), name="ck_runs_run_status"),
            sa.Index("ix_runs_created_at", "created_at"),
            sa.Index("ix_runs_status_created_at", "status", "created_at"),
        )
    sa.Table("runs", meta, sa.Column("id", sa.Integer(), primary_key=True))
    return sa.Table(
        "jobs",
        meta,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.id", ondelete="CASCADE", name="fk_jobs_run_id_runs"),
        ),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("celery_task_id", sa.String(255)),
        sa.Column("heartbeat_at", ts),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("started_at", ts),
        sa.Column("finished_at", ts),
        sa.Column("result", JSON),
        sa.Column("enqueued_at", ts),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.CheckConstraint(
            _one_of("kind", ("train", "generate", "evaluate")), name="ck_jobs_job_kind"
        ),
        sa.CheckConstraint(_one_of("status", statuses), name="ck_jobs_job_status"),
        sa.Index("ix_jobs_created_at", "created_at"),
        sa.Index("ix_jobs_run_id", "run_id"),
        sa.Index("ix_jobs_status_queue_priority", "status", "queue", "priority"),
    )


def _batch(table: str, statuses: Sequence[str], *, trial_column: bool = False):
    if context.is_offline_mode():
        frozen = _frozen(table, statuses, trial_column=trial_column)
        return op.batch_alter_table(table, copy_from=frozen)
    return op.batch_alter_table(table)


def _status_check(batch, table: str, name: str, values: Sequence[str]) -> None:
    batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
    batch.create_check_constraint(name, _one_of("status", values))


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("finished_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            _one_of("status", ("running", "paused", "stopped", "finished")),
            name=op.f("ck_sweeps_sweep_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_table(
        "sweep_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("system_attrs", JSON, nullable=False),
        sa.Column("reports", JSON, nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_sweep_trials_sweep_id_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_trials")),
        sa.UniqueConstraint("sweep_id", "number", name=op.f("uq_sweep_trials_sweep_id_number")),
    )
    with _batch("runs", OLD) as batch:
        _status_check(batch, "runs", "run_status", NEW)
        batch.add_column(sa.Column("sweep_trial_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_runs_sweep_trial_id_sweep_trials"),
            "sweep_trials",
            ["sweep_trial_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_runs_sweep_trial_id", ["sweep_trial_id"])
    with _batch("jobs", OLD) as batch:
        _status_check(batch, "jobs", "job_status", NEW)


def downgrade() -> None:
    op.execute("UPDATE runs SET status = 'cancelled' WHERE status = 'pruned'")
    op.execute("UPDATE jobs SET status = 'cancelled' WHERE status = 'pruned'")
    with _batch("jobs", NEW) as batch:
        _status_check(batch, "jobs", "job_status", OLD)
    with _batch("runs", NEW, trial_column=True) as batch:
        _status_check(batch, "runs", "run_status", OLD)
        batch.drop_index("ix_runs_sweep_trial_id")
        batch.drop_constraint(op.f("fk_runs_sweep_trial_id_sweep_trials"), type_="foreignkey")
        batch.drop_column("sweep_trial_id")
    op.drop_table("sweep_trials")
    op.drop_table("sweeps")
