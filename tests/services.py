"""Helpers for tests that need a real PostgreSQL or Redis.

Such tests skip when the service is unreachable, so a laptop without them still runs the
suite, unless TD_REQUIRE_SERVICES=1 (CI sets it), where a missing service fails the test:
CI must never go green by skipping what it exists to check.

    def test_x():
        url = require_or_skip("PostgreSQL", postgres_url())

    with temporary_postgres_database() as url:   # a fresh database, dropped afterwards
        ...

    with throwaway_postgres_cluster() as cluster: # a server of its own, to restart at will
        cluster.restart()

Where the services are: TD_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test)
and TD_TEST_REDIS_URL (default redis://127.0.0.1:6379/15, a database number nothing else uses).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.db import database_url

T = TypeVar("T")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def services_required() -> bool:
    return os.environ.get("TD_REQUIRE_SERVICES", "") == "1"


def require_or_skip(service: str, value: T | None, why: str = "unreachable") -> T:
    """`value` if not None; else skip the test (fail it under TD_REQUIRE_SERVICES=1)."""
    if value is not None:
        return value
    message = f"{service} {why}"
    if services_required():
        pytest.fail(f"{message}, and TD_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@cache
def postgres_url() -> str | None:
    """The test server's URL if a PostgreSQL answers there (checked once), else None."""
    url = os.environ.get("TD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        engine = create_engine(database_url(url), connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        return None
    return url


@cache
def redis_url() -> str | None:
    """The test Redis URL if a Redis answers PING there (checked once), else None."""
    url = os.environ.get("TD_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception:  # ImportError, redis.exceptions.ConnectionError, timeouts
        return None
    return url


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """Create a uniquely named database on the test server; yield its URL; drop it.

    Skips (or fails, under TD_REQUIRE_SERVICES=1) when the server is unreachable.
    """
    server = require_or_skip("PostgreSQL", postgres_url())
    name = f"td_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url(server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE (PostgreSQL 13+): an engine the test forgot to dispose must not
                # leave the database behind.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- a PostgreSQL server of the test's own --------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A throwaway Debian PostgreSQL cluster: `url` is its `postgres` database."""

    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def restart(self) -> None:
        """Stop (fast: open connections are cut) and start again, as an upgrade would."""
        self.ctl("restart")


def local_cluster_version() -> str | None:
    """The PostgreSQL version whose clusters this process may create, or None.

    Needs Debian's postgresql-common (pg_createcluster) and root: restarting the shared
    test server would break every other test using it, so tests that restart PostgreSQL
    get a server of their own.
    """
    tools = all(shutil.which(t) for t in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster"))
    if not tools or os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        return None
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres_cluster() -> Iterator[Cluster]:
    """Create and start a PostgreSQL cluster on a free port (trust auth on loopback only);
    yield it; stop and delete it. Skips (or fails, under TD_REQUIRE_SERVICES=1) where
    clusters cannot be created."""
    version = require_or_skip(
        "a local PostgreSQL to restart", local_cluster_version(), "needs pg_createcluster and root"
    )
    cluster = Cluster(version, f"td_{uuid.uuid4().hex[:10]}", _free_port())
    # After "--": initdb's options. Trust is safe here: the server listens on loopback only.
    initdb = ["--auth=trust", "--no-sync"]
    create = ["pg_createcluster", "-p", str(cluster.port), version, cluster.name, "--", *initdb]
    subprocess.run(create, check=True, capture_output=True, timeout=120)
    try:
        cluster.ctl("start")
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, cluster.name], capture_output=True, timeout=120
        )
