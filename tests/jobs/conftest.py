"""Fixtures of the job-system tests: an environment per mode and real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import db
from tests.jobs.helpers import FAST_SETTINGS, WorkerProcess, reset_process_caches, write_dataset
from tests.services import redis_url, require_or_skip, temporary_postgres_database


@pytest.fixture(params=["embedded", "services"])
def job_env(request, tmp_path, monkeypatch):
    """An environment in embedded mode (SQLite + filesystem broker) or services mode
    (PostgreSQL + Redis), migrated; yields the dataset file path."""
    data_dir = tmp_path / "data"
    env = {"DATA_DIR": str(data_dir), **FAST_SETTINGS}
    if request.param == "embedded":
        env["REDIS_URL"] = ""
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'td.db'}"
        yield from _with_env(monkeypatch, env, data_dir)
        return
    url = require_or_skip("Redis", redis_url())
    import redis

    redis.Redis.from_url(url).flushdb()
    with temporary_postgres_database() as pg:
        env["REDIS_URL"] = url
        env["DATABASE_URL"] = pg
        yield from _with_env(monkeypatch, env, data_dir)


def _with_env(monkeypatch, env: dict[str, str], data_dir: Path):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_process_caches()
    db.upgrade()
    try:
        yield write_dataset(data_dir)
    finally:
        reset_process_caches()


@pytest.fixture
def workers(job_env, tmp_path):
    """A factory of started worker processes, all stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", queues: str = "cpu") -> WorkerProcess:
        w = WorkerProcess(name, tmp_path, queues)
        started.append(w)
        return w.wait_ready()

    yield start
    for w in started:
        w.stop()
