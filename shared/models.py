"""The database schema: SQLAlchemy 2.0 typed ORM models.

Portable between SQLite and PostgreSQL: JSON columns (JSONB on PostgreSQL), statuses as
strings with a CHECK constraint rather than native enums (adding a state is then an
ordinary migration), and timestamps that are always timezone-aware UTC in Python.
Constraint names follow `NAMING_CONVENTION`, so migrations can refer to them.

JSON columns do not track in-place changes: assign a new value
(`run.summary = {**run.summary, "ppl_bound": 12.3}`), do not mutate the old one.

Every job state change goes through `shared.jobs`; this module only describes rows.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.kinds import STORED

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is aware UTC in Python on every backend.

    SQLite has no time zones: we store UTC and re-attach the zone on read. Naive values
    are refused on write, since guessing their zone is how timestamps drift by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r}: use an aware one, e.g. shared.models.utcnow()"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON on SQLite, JSONB on PostgreSQL (comparable, indexable, compact). Python None is SQL NULL.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


# The kinds of job a row may hold: those of the job-kind table (`shared.kinds`), whose
# migration widened the `ck_jobs_job_kind` constraint.
JobKind = enum.StrEnum("JobKind", {name.upper(): name for name in STORED})


class JobStatus(enum.StrEnum):
    """queued -> running -> succeeded | failed | cancelled (running -> queued on retry)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a sweep's trial stopped early by its pruner: kept, not a failure

    @property
    def finished(self) -> bool:
        return self in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.PRUNED,
        )


class SweepStatus(enum.StrEnum):
    """running -> finished (cap reached, every trial ended) | stopped; running <-> paused."""

    RUNNING = "running"
    PAUSED = "paused"  # no new trials; running ones go on
    STOPPED = "stopped"  # no new trials; running ones were cancelled
    FINISHED = "finished"


class WorkerState(enum.StrEnum):
    ONLINE = "online"
    DRAINING = "draining"  # finishing its current job, taking no new ones
    OFFLINE = "offline"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # VARCHAR + CHECK on every backend; stores the lower-case values, not the member names.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        list[str]: JSONType,
        float: Double(),
    }


class Run(Base):
    """One training run: its spec, where it is, and what it reached."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(default=list)
    spec: Mapped[dict[str, Any]]  # TrainSpec.model_dump(mode="json")
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "run_status"), default=JobStatus.QUEUED
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Final metrics, e.g. {"ppl_bound": 31.2, "nll_bound": 3.44, "final_loss": 2.9}.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Progress, written in batches by the training loop.
    step: Mapped[int] = mapped_column(default=0)
    max_steps: Mapped[int | None]
    tokens_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    # The sweep trial this run is one seed of (None: queued by hand).
    sweep_trial_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweep_trials.id", ondelete="SET NULL")
    )

    jobs: Mapped[list[Job]] = relationship(back_populates="run", passive_deletes=True)
    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="run", order_by="Checkpoint.step", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_runs_status_created_at", "status", "created_at"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_sweep_trial_id", "sweep_trial_id"),
    )

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name!r} {self.status}>"


class Job(Base):
    """One unit of work for a worker. The database, not the broker, owns its state."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.QUEUED
    )
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    spec: Mapped[dict[str, Any]]  # TrainSpec / GenerateSpec / EvalSpec as JSON
    attempts: Mapped[int] = mapped_column(default=0)  # starts so far, this one included
    max_attempts: Mapped[int] = mapped_column(default=3)
    priority: Mapped[int] = mapped_column(default=0)  # higher runs first
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    worker: Mapped[str | None] = mapped_column(String(255))  # Worker.name while it runs
    celery_task_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # What a finished job produced beyond its rows elsewhere, e.g. an evaluation's grid.
    result: Mapped[dict[str, Any] | None]
    progress: Mapped[float] = mapped_column(default=0.0)  # 0..1
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Last time its message was sent: the reconciler resends queued jobs sent long ago.
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    run: Mapped[Run | None] = relationship(back_populates="jobs")

    __table_args__ = (
        # The queue view and the reconciler: owed jobs by queue, best first.
        Index("ix_jobs_status_queue_priority", "status", "queue", "priority"),
        Index("ix_jobs_run_id", "run_id"),
        Index("ix_jobs_created_at", "created_at"),
    )

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status}>"


class Checkpoint(Base):
    """Weights (and tokenizer) of a run at one step, stored in the artifact store."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    url: Mapped[str] = mapped_column(String(1024))  # shared.storage URL of the folder
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="checkpoints")

    __table_args__ = (UniqueConstraint("run_id", "step"),)

    def __repr__(self) -> str:
        return f"<Checkpoint {self.id} run={self.run_id} step={self.step}>"


class EvalPoint(Base):
    """Validation loss at one mask ratio, at one step of a run.

    Unique on (run, step, ratio): a resumed job re-evaluating a step upserts, it cannot
    duplicate. The unique index also serves the loss-by-ratio chart (run, step order).
    """

    __tablename__ = "eval_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    ratio: Mapped[float]  # mask ratio in (0, 1]
    loss: Mapped[float]  # mean cross-entropy per masked token, nats
    accuracy: Mapped[float | None]  # top-1 on masked tokens

    __table_args__ = (UniqueConstraint("run_id", "step", "ratio"),)


class LossPoint(Base):
    """One logged training step. Unique on (run, step) so a resume cannot duplicate it."""

    __tablename__ = "loss_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    loss: Mapped[float]
    mask_ratio: Mapped[float | None]  # the batch's ratio (grid) or its mean (uniform)
    lr: Mapped[float | None]
    tokens_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    elapsed_s: Mapped[float | None]  # wall-clock seconds since the run started

    __table_args__ = (UniqueConstraint("run_id", "step"),)


class SampleSet(Base):
    """The samples of one sampler-settings combination of a generation job.

    `combination` is the index in the job's grid; unique per job so a retried job skips
    what it already wrote.
    """

    __tablename__ = "sample_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"))
    combination: Mapped[int] = mapped_column(default=0)
    settings: Mapped[dict[str, Any]]  # SamplerSpec as JSON
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoint: Mapped[Checkpoint] = relationship()
    samples: Mapped[list[Sample]] = relationship(
        back_populates="sample_set", order_by="Sample.position", passive_deletes=True
    )

    __table_args__ = (
        UniqueConstraint("job_id", "combination"),
        Index("ix_sample_sets_checkpoint_id", "checkpoint_id"),
    )


class Sample(Base):
    """One generated text with how it was made and, optionally, how it got there."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_set_id: Mapped[int] = mapped_column(ForeignKey("sample_sets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)  # order within the set
    prompt: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    seed: Mapped[int | None]
    # Denoising steps, None if not kept: {"steps": [{"step": 0, "text": "...", "tokens":
    # [piece or None while masked, ...]}, ...], "given": [bool], "committed_at": [int]}
    # (`worker.bodies.generate._trajectory`).
    trajectory: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)

    sample_set: Mapped[SampleSet] = relationship(back_populates="samples")

    __table_args__ = (Index("ix_samples_sample_set_id", "sample_set_id"),)


class HumanReference(Base):
    """Held-out human text measured as a judged sample set is: the yardstick beside it.

    One row per (held-out split, judge, tokenizer, length): snippets of `length` tokens of
    the generating model's tokenizer, decoded through it, scored by the judge. `metrics`:
    judge_ppl, unigram_entropy, repetition, texts, and mauve (against other held-out
    snippets) or mauve_reason. Written by the first generation job that needs it.
    """

    __tablename__ = "human_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(500))  # the split: `worker.bodies.reference`
    judge: Mapped[str] = mapped_column(String(500))  # as sample sets' metrics name it
    tokenizer: Mapped[str] = mapped_column(String(64))  # a hash of its vocabulary
    length: Mapped[int]  # tokens per snippet, in that tokenizer
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("dataset", "judge", "tokenizer", "length"),)


class Worker(Base):
    """A worker process as it last reported itself."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # Celery hostname
    host: Mapped[str] = mapped_column(String(255))
    queues: Mapped[list[str]] = mapped_column(default=list)
    device: Mapped[str | None] = mapped_column(String(128))  # e.g. "cpu", "cuda:0 NVIDIA H100"
    pid: Mapped[int | None]
    state: Mapped[WorkerState] = mapped_column(
        _enum(WorkerState, "worker_state"), default=WorkerState.ONLINE
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(default=utcnow)
    current_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # Set by `text-diffusion workers drain`: finish the current job, take no new one, exit.
    # Kept after it exits (offline + drain_requested reads "drained"); cleared at start.
    drain_requested: Mapped[bool] = mapped_column(default=False, server_default=false())

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} {self.state}>"


class LoginSession(Base):
    """A dashboard login (`web.sessions`): the session cookie names it, and a request is
    logged in only while its row is here, unexpired, and made under the current password.
    Logging out deletes it, so a copy of the cookie stops working too."""

    __tablename__ = "login_sessions"

    # SHA-256 of the random id the cookie carries: reading this table gives no usable cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    # A short tag of the password it was made under (`web.sessions.password_tag`): a new
    # password ends every older session without a write. Too short to test guesses against.
    password_tag: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    __table_args__ = (Index("ix_login_sessions_expires_at", "expires_at"),)


class Sweep(Base):
    """A search over training specs (`shared.contracts.sweep.SweepSpec`). Its trials are
    ordinary runs; this row and its trials are all the state there is (`shared.sweeps`)."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]  # SweepSpec.model_dump(mode="json")
    status: Mapped[SweepStatus] = mapped_column(
        _enum(SweepStatus, "sweep_status"), default=SweepStatus.RUNNING
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    trials: Mapped[list[SweepTrial]] = relationship(
        back_populates="sweep", order_by="SweepTrial.number", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Sweep {self.id} {self.name!r} {self.status}>"


class SweepTrial(Base):
    """One configuration Optuna asked for: its parameters, the sampler's and pruner's
    bookkeeping (Optuna's system attributes), and its reported values per evaluation."""

    __tablename__ = "sweep_trials"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    number: Mapped[int]  # 0, 1, 2, ... within its sweep, in the order asked
    params: Mapped[dict[str, Any]]
    system_attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {run_id: {step: metric}}: what each seed's run reported at each evaluation.
    reports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sweep: Mapped[Sweep] = relationship(back_populates="trials")
    runs: Mapped[list[Run]] = relationship(order_by="Run.id")

    __table_args__ = (UniqueConstraint("sweep_id", "number"),)
