"""Engines, sessions and migrations, configured from `shared.settings`.

    with session_scope() as session:        # commits on success, rolls back on error
        session.add(Run(name="r1", spec={}))

    upgrade()                               # alembic upgrade head on DATABASE_URL
    upgrade("sqlite:////tmp/x.db")          # ... or on any URL

SQLite (the default) is set up for several processes at once: WAL so readers never block
the writer, a busy timeout so writers queue instead of failing, foreign keys on, and
every transaction opened with BEGIN IMMEDIATE so that a read-then-write transaction
waits for the lock up front instead of failing mid-way with "database is locked".
Keep sessions short: a SQLite transaction holds the single write lock until it ends.
`read_scope()` is for reads alone (the dashboard): a plain BEGIN, which takes no lock.

PostgreSQL gets pool_pre_ping, so a worker whose server restarted reconnects on its next
checkout instead of failing the job; the writes a running job makes are wrapped in
`retry_on_disconnect`, so one that falls while the server is down waits for it to return.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import get_settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Writers wait this long for SQLite's lock before "database is locked": a checkpoint
# write or a migration can hold it for seconds, a heartbeat must not fail over that.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A job's writes wait this long for a database that went away (a PostgreSQL restart takes
# seconds, a failover tens of seconds) before they fail, and the job with them.
RETRY_DISCONNECT_S = 60.0
# The longest pause between two of those retries: once the database is back, every writer
# (a job's heartbeat among them) has written again within this.
RETRY_MAX_DELAY_S = 5.0
# PostgreSQL ends a session left idle inside a transaction for this long (see make_engine).
IDLE_IN_TRANSACTION_MS = 30_000


def database_url(url: str | URL | None = None) -> URL:
    """`url` (default: the DATABASE_URL setting) with a PostgreSQL driver that is installed.

    A plain postgresql:// URL means psycopg 3 to SQLAlchemy 2.1 and psycopg2 to 2.0; we
    take whichever of the two is installed, so the same DATABASE_URL works with both.
    """
    url = make_url(url if url is not None else get_settings().database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername=f"postgresql+{_postgres_driver()}")
    return url


def _postgres_driver() -> str:
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return driver
    raise RuntimeError(
        "DATABASE_URL is a PostgreSQL URL but no driver is installed: "
        "pip install 'psycopg[binary]' (or psycopg2-binary)"
    )


def make_engine(
    url: str | URL | None = None, *, foreign_keys: bool = True, **kwargs: Any
) -> Engine:
    """A new engine for `url` (default: DATABASE_URL), set up for its backend.

    `foreign_keys=False` turns SQLite's enforcement off (migrations that rebuild tables
    need that); extra keyword arguments go to `create_engine`.
    """
    url = database_url(url)
    kwargs.setdefault("echo", get_settings().sql_echo)
    if url.get_backend_name() == "sqlite":
        _make_sqlite_parent(url)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, foreign_keys=foreign_keys)
        return engine
    if url.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)  # survive a server restart
        kwargs.setdefault("pool_recycle", 1800)  # and idle-connection reapers in between
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", 10)
        connect_args.setdefault("application_name", "text-diffusion")
        # A client cut off in the middle of a transaction (a partitioned worker) would hold
        # its row locks (a job's, share-locked by `shared.jobs.fence`) until TCP gives up,
        # hours later; the server ends such a session after this instead. Our transactions
        # never wait on the client that long.
        connect_args.setdefault(
            "options", f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
        )
        engine = create_engine(url, **kwargs)
        _configure_postgres(engine)
        return engine
    return create_engine(url, **kwargs)


def _make_sqlite_parent(url: URL) -> None:
    path = url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: pysqlite's own implicit BEGIN comes late and
        # breaks SAVEPOINT; we emit BEGIN ourselves below (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at WAL checkpoints; safe in WAL
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A read (`read_scope`) takes no lock: in WAL mode it reads a snapshot beside the
        # writer, and query_only makes a write in it fail. Anything else takes the write
        # lock up front. (query_only is the connection's: set on every begin, both ways.)
        read = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql(f"PRAGMA query_only={int(read)}")
        connection.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")


# Execution option that marks `read_scope`'s transactions (see the "begin" listeners).
READ_ONLY = "text_diffusion_read_only"


class _Cached(NamedTuple):
    engine: Engine
    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]  # `read_scope`'s: the same pool, marked READ_ONLY


_ENGINES: dict[str, _Cached] = {}
_LOCK = threading.Lock()


def _cached(url: str | None) -> _Cached:
    key = url if url is not None else get_settings().database_url
    with _LOCK:
        if key not in _ENGINES:
            engine = make_engine(key)
            reader = engine.execution_options(**{READ_ONLY: True})
            _ENGINES[key] = _Cached(
                engine,
                sessionmaker(engine, expire_on_commit=False),
                sessionmaker(reader, expire_on_commit=False),
            )
        return _ENGINES[key]


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: DATABASE_URL), created once."""
    return _cached(url).engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    """Sessions on `get_engine(url)`. Objects stay readable after commit (no expiry)."""
    return _cached(url).sessions


def dispose_engines() -> None:
    """Close and forget every cached engine (tests; a settings change)."""
    with _LOCK:
        for cached in _ENGINES.values():
            cached.engine.dispose()
        _ENGINES.clear()


def _after_fork_in_child() -> None:
    # A forked worker must not share its parent's sockets: drop (not close) them.
    global _LOCK
    _LOCK = threading.Lock()
    for cached in _ENGINES.values():
        cached.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: commit on success, roll back on an exception."""
    with get_sessionmaker(url)() as session, session.begin():
        yield session


@contextmanager
def read_scope(url: str | None = None) -> Iterator[Session]:
    """A session for reading only (the dashboard's). On SQLite its transaction takes no
    lock, so readers never queue behind a training job's writes or each other. On both
    backends a write in it fails (SQLite's query_only, PostgreSQL's READ ONLY)."""
    with _cached(url).reads() as session, session.begin():
        yield session


def retry_on_disconnect(fn: Callable[P, R]) -> Callable[P, R]:
    """Call `fn` again, with backoff, while the database cannot be reached.

    Only for functions that are safe to repeat: compare-and-set updates and idempotent
    inserts. A connection lost mid-transaction rolls it back, so a retry starts afresh.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + RETRY_DISCONNECT_S
        delay = 0.25
        while True:
            try:
                return fn(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                reason = str(exc.orig or exc).strip().splitlines()[0][:200]
                log.warning("%s: database unavailable (%s); retrying", fn.__name__, reason)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)

    return wrapper


# --- migrations -------------------------------------------------------------------------


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for our migrations folder; no alembic.ini or cwd needed.

    The URL travels in `config.attributes` (not the ini option) so that a password
    with % in it needs no escaping; migrations/env.py falls back to DATABASE_URL.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["url"] = url
    return config


def upgrade(url: str | None = None, *, revision: str = "head") -> None:
    """Migrate the database at `url` (default: DATABASE_URL) up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, *, revision: str = "-1") -> None:
    """Migrate down to `revision` ("-1": one step; "base": drop everything)."""
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at; None for an empty (never migrated) database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def revision(message: str, *, autogenerate: bool = True, url: str | None = None) -> Path:
    """Write the next numbered revision (0002_add_x.py, ...) and return its path.

    With autogenerate, the database at `url` must be at head: the new revision holds
    the difference between it and the models. Review it by hand before committing.
    """
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    number = int(re.sub(r"\D", "", head or "") or 0) + 1
    script = command.revision(
        alembic_config(url), message, autogenerate=autogenerate, rev_id=f"{number:04d}"
    )
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
