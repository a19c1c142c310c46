"""Fixtures of the job-system tests: an environment per mode and real worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import db
from tests.jobs.helpers import (
    FAST_SETTINGS,
    WorkerProcess,
    delete_broker_keys,
    reset_process_caches,
    write_dataset,
)
from tests.services import (
    Cluster,
    redis_url,
    require_or_skip,
    temporary_postgres_database,
    throwaway_postgres_cluster,
)


@pytest.fixture(params=["embedded", "services"])
def job_env(request, tmp_path, monkeypatch):
    """An environment in embedded mode (SQLite + filesystem broker) or services mode
    (PostgreSQL + Redis), migrated; yields the dataset file path."""
    data_dir = tmp_path / "data"
    if request.param == "embedded":
        env = {"DATA_DIR": str(data_dir), **FAST_SETTINGS}
        env["REDIS_URL"] = ""
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'td.db'}"
        yield from _with_env(monkeypatch, env, data_dir)
        return
    require_or_skip("Redis", redis_url())
    with temporary_postgres_database() as pg:
        yield from _services_env(monkeypatch, data_dir, pg)


@pytest.fixture
def cluster_env(tmp_path, monkeypatch) -> Iterator[tuple[Path, Cluster]]:
    """Services mode on a PostgreSQL server of the test's own, which it may restart;
    yields (dataset path, cluster)."""
    require_or_skip("Redis", redis_url())
    with throwaway_postgres_cluster() as cluster:
        for dataset in _services_env(monkeypatch, tmp_path / "data", cluster.url):
            yield dataset, cluster


def _services_env(monkeypatch, data_dir: Path, database_url: str) -> Iterator[Path]:
    """Redis + `database_url`. The test Redis database is shared with every other test run
    on the machine, so this test's broker keys live under a prefix of its own
    (REDIS_KEY_PREFIX), deleted before and after: never FLUSHDB, which would take other
    runs' queued messages with it."""
    url = require_or_skip("Redis", redis_url())
    prefix = f"td-test-{uuid.uuid4().hex[:12]}:"
    env = {"DATA_DIR": str(data_dir), **FAST_SETTINGS}
    env.update(REDIS_URL=url, REDIS_KEY_PREFIX=prefix, DATABASE_URL=database_url)
    delete_broker_keys(url, prefix)
    try:
        yield from _with_env(monkeypatch, env, data_dir)
    finally:
        delete_broker_keys(url, prefix)


def _with_env(monkeypatch, env: dict[str, str], data_dir: Path) -> Iterator[Path]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_process_caches()
    db.upgrade()
    try:
        yield write_dataset(data_dir)
    finally:
        reset_process_caches()


def _worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str = "w1", queues: str = "cpu") -> WorkerProcess:
        w = WorkerProcess(name, tmp_path, queues)
        started.append(w)
        return w.wait_ready()

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def workers(job_env, tmp_path):
    """A factory of started worker processes, all stopped at the end of the test."""
    yield from _worker_factory(tmp_path)


@pytest.fixture
def cluster_workers(cluster_env, tmp_path):
    """`workers` for tests on `cluster_env`."""
    yield from _worker_factory(tmp_path)
