"""The models on a real database: relationships, constraints, time zones, SQLite setup."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from shared import db
from shared.models import (
    Checkpoint,
    EvalPoint,
    Job,
    JobKind,
    JobStatus,
    LossPoint,
    Run,
    Sample,
    SampleSet,
    Worker,
    WorkerState,
    utcnow,
)
from tests.services import temporary_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> Iterator[str]:
    """A database migrated to head; engines cached for it are disposed afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'models.db'}"
        db.upgrade(url)
        yield url
        db.dispose_engines()
    else:
        with temporary_postgres_database() as url:
            db.upgrade(url)
            yield url
            db.dispose_engines()


@pytest.fixture
def sqlite_url(tmp_path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'models.db'}"
    db.upgrade(url)
    yield url
    db.dispose_engines()


def _run_with_results(session) -> Run:
    run = Run(name="tiny-1", preset="tiny", tags=["smoke"], spec={"preset": "tiny"}, max_steps=200)
    train = Job(kind=JobKind.TRAIN, spec={"preset": "tiny"}, queue="cpu", run=run)
    session.add_all([run, train])
    session.flush()
    ckpt = Checkpoint(run_id=run.id, step=100, url="file:///tmp/ckpt/100", metrics={"loss": 3.1})
    session.add(ckpt)
    session.add_all(
        EvalPoint(run_id=run.id, step=100, ratio=r, loss=2.0 + r, accuracy=0.5 - r / 4)
        for r in (0.1, 0.5, 1.0)
    )
    session.add_all(
        LossPoint(run_id=run.id, step=s, loss=4.0 - s / 100, mask_ratio=0.3, lr=1e-3)
        for s in (10, 20)
    )
    session.flush()
    gen = Job(kind=JobKind.GENERATE, spec={"checkpoint_id": ckpt.id}, run=run, priority=5)
    session.add(gen)
    session.flush()
    sample_set = SampleSet(job_id=gen.id, checkpoint_id=ckpt.id, settings={"steps": 10})
    sample_set.samples = [
        Sample(position=0, prompt="In the", text="In the beginning", seed=0, trajectory=None),
        Sample(position=1, text="and the", seed=1, trajectory=[{"step": 0, "text": "<mask>"}]),
    ]
    session.add(sample_set)
    session.add(Worker(name="celery@box", host="box", queues=["cpu"], current_job_id=train.id))
    return run


def test_a_run_with_its_results_round_trips(url):
    with db.session_scope(url) as session:
        run_id = _run_with_results(session).id

    with db.session_scope(url) as session:
        run = session.get(Run, run_id)
        assert run.status is JobStatus.QUEUED and run.tags == ["smoke"] and run.step == 0
        assert {j.kind for j in run.jobs} == {JobKind.TRAIN, JobKind.GENERATE}
        assert [c.step for c in run.checkpoints] == [100]
        ratios = session.scalars(
            select(EvalPoint.ratio).where(EvalPoint.run_id == run_id).order_by(EvalPoint.ratio)
        ).all()
        assert ratios == [0.1, 0.5, 1.0]
        sample_set = session.scalars(select(SampleSet)).one()
        assert [s.text for s in sample_set.samples] == ["In the beginning", "and the"]
        assert sample_set.samples[0].trajectory is None
        worker = session.scalars(select(Worker)).one()
        assert worker.state is WorkerState.ONLINE and worker.queues == ["cpu"]
        # Statuses are stored as their lower-case values, readable from plain SQL.
        raw = session.execute(text("SELECT status, kind FROM jobs ORDER BY id")).all()
        assert [tuple(r) for r in raw] == [("queued", "train"), ("queued", "generate")]
        # Python None in a JSON column is SQL NULL, not the JSON literal null.
        nulls = session.execute(text("SELECT count(*) FROM samples WHERE trajectory IS NULL"))
        assert nulls.scalar_one() == 1


def test_duplicate_eval_point_is_rejected(url):
    with db.session_scope(url) as session:
        run_id = _run_with_results(session).id
    with pytest.raises(IntegrityError, match=r"(?i)unique"), db.session_scope(url) as session:
        session.add(EvalPoint(run_id=run_id, step=100, ratio=0.5, loss=9.9))
    # A different step or ratio is a new point.
    with db.session_scope(url) as session:
        session.add(EvalPoint(run_id=run_id, step=200, ratio=0.5, loss=1.9))
        session.add(EvalPoint(run_id=run_id, step=100, ratio=0.3, loss=2.3))


def test_duplicate_loss_point_and_checkpoint_are_rejected(url):
    with db.session_scope(url) as session:
        run_id = _run_with_results(session).id
    with pytest.raises(IntegrityError), db.session_scope(url) as session:
        session.add(LossPoint(run_id=run_id, step=10, loss=1.0))
    with pytest.raises(IntegrityError), db.session_scope(url) as session:
        session.add(Checkpoint(run_id=run_id, step=100, url="file:///elsewhere"))


def test_deleting_a_run_deletes_its_results(url):
    with db.session_scope(url) as session:
        run_id = _run_with_results(session).id
    with db.session_scope(url) as session:
        session.execute(delete(Run).where(Run.id == run_id))
    with db.session_scope(url) as session:
        for model in (Job, Checkpoint, EvalPoint, LossPoint, SampleSet, Sample):
            assert session.scalars(select(model)).all() == [], model.__name__
        assert session.scalars(select(Worker.current_job_id)).one() is None  # SET NULL


def test_timestamps_are_aware_utc(url):
    paris_noon = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session_scope(url) as session:
        run = Run(name="t", spec={}, started_at=paris_noon)
        session.add(run)
        session.flush()
        run_id = run.id
    with db.session_scope(url) as session:
        run = session.get(Run, run_id)
        assert run.started_at == paris_noon
        assert run.started_at.tzinfo is UTC and run.started_at.hour == 10
        assert run.created_at.tzinfo is UTC
        assert abs(utcnow() - run.created_at) < timedelta(minutes=1)


def test_naive_timestamps_are_refused(sqlite_url):
    with pytest.raises(StatementError, match="naive datetime"), db.session_scope(sqlite_url) as s:
        s.add(Run(name="t", spec={}, started_at=datetime(2026, 1, 1)))


def test_unknown_status_is_refused_by_the_database(url):
    with pytest.raises(IntegrityError), db.session_scope(url) as session:
        session.execute(
            text(
                "INSERT INTO runs (name, tags, spec, status, created_at, summary, step,"
                " tokens_seen) VALUES ('x', '[]', '{}', 'paused', :now, '{}', 0, 0)"
            ),
            {"now": utcnow()},
        )


def test_session_scope_rolls_back_on_error(sqlite_url):
    with pytest.raises(RuntimeError), db.session_scope(sqlite_url) as session:
        session.add(Run(name="lost", spec={}))
        session.flush()
        raise RuntimeError("boom")
    with db.session_scope(sqlite_url) as session:
        assert session.scalars(select(Run)).all() == []


def test_sqlite_is_set_up_for_several_processes(sqlite_url):
    with db.get_engine(sqlite_url).connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}
    # Foreign keys are enforced: no eval point for a run that does not exist.
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), db.session_scope(sqlite_url) as s:
        s.add(EvalPoint(run_id=12345, step=1, ratio=0.5, loss=1.0))


def test_savepoints_work_on_sqlite(sqlite_url):
    # pysqlite's own transaction handling breaks SAVEPOINT; ours must not.
    with db.session_scope(sqlite_url) as session:
        session.add(Run(name="kept", spec={}))
        with pytest.raises(IntegrityError), session.begin_nested():
            session.add(EvalPoint(run_id=12345, step=1, ratio=0.5, loss=1.0))
    with db.session_scope(sqlite_url) as session:
        assert session.scalars(select(Run.name)).all() == ["kept"]


def test_concurrent_read_then_write_transactions_wait_instead_of_failing(sqlite_url):
    # The job system's pattern (read a row, then update it) from several connections at
    # once: with a deferred BEGIN, SQLite fails some with "database is locked".
    with db.session_scope(sqlite_url) as session:
        session.add(Run(name="counter", spec={}))

    def bump(times: int) -> None:
        for _ in range(times):
            with db.session_scope(sqlite_url) as session:
                run = session.scalars(select(Run)).one()
                run.step = run.step + 1

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session_scope(sqlite_url) as session:
        assert session.scalars(select(Run.step)).one() == 100  # no lost update either


def test_reads_do_not_wait_for_a_writer_on_sqlite(sqlite_url):
    # The dashboard reads while training jobs write: a read must see the last committed
    # state at once, not queue behind the write lock (which BEGIN IMMEDIATE would take).
    with db.session_scope(sqlite_url) as session:
        session.add(Run(name="committed", spec={}))
    writing, read_done = threading.Event(), threading.Event()

    def writer() -> None:
        with db.session_scope(sqlite_url) as session:
            session.add(Run(name="uncommitted", spec={}))
            session.flush()  # holds the write lock from here until the commit
            writing.set()
            assert read_done.wait(10), "the read waited for the writer"

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(10)
    with db.read_scope(sqlite_url) as session:
        names = session.scalars(select(Run.name)).all()
    read_done.set()
    thread.join()
    assert names == ["committed"]
    with db.read_scope(sqlite_url) as session:
        assert sorted(session.scalars(select(Run.name))) == ["committed", "uncommitted"]


def test_read_scope_cannot_write(url):
    # SQLite: "attempt to write a readonly database"; PostgreSQL: "... read-only transaction".
    with pytest.raises(DBAPIError, match=r"readonly|read-only"), db.read_scope(url) as session:
        session.add(Run(name="sneaky", spec={}))
        session.flush()
    with db.read_scope(url) as session:
        assert session.scalars(select(Run)).all() == []


def test_postgres_ends_a_session_left_idle_in_a_transaction():
    # A partitioned worker must not hold a job's row lock until TCP gives up (hours).
    with temporary_postgres_database() as url:
        with db.get_engine(url).connect() as connection:
            timeout = connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
            assert timeout.scalar() == f"{db.IDLE_IN_TRANSACTION_MS // 1000}s"
        db.dispose_engines()
