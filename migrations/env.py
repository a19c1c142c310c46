"""Alembic environment: runs our revisions on the database that shared.db names.

Invoked through `shared.db.upgrade()` / `text-diffusion db upgrade` (config from
`shared.db.alembic_config()`, no alembic.ini). The URL comes from, in order: a
connection in `config.attributes["connection"]`, `config.attributes["url"]`, the
`sqlalchemy.url` option, then the DATABASE_URL setting.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from shared.db import database_url, make_engine
from shared.models import Base

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Revisions must not import model code (it moves on; old revisions must not), so a
    # TypeDecorator such as UTCDateTime is written as the plain type it stores.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        **kwargs,
    )


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return database_url(url).render_as_string(hide_password=False)


def run_offline() -> None:
    """Print the SQL (alembic upgrade --sql) instead of running it."""
    url = _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite: ALTER TABLE is mostly missing, so changes rebuild the table (batch mode).
    # Its DDL is transactional, so the whole upgrade is one transaction there too.
    _configure(connection=connection, render_as_batch=sqlite, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            # Table rebuilds ran with foreign keys off; make sure they left none dangling.
            bad = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
            if bad:
                raise RuntimeError(f"migration left dangling foreign keys: {bad[:5]}")


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Foreign keys off on SQLite: a batch rebuild drops and renames tables that others
    # reference. NullPool: a migration's connection must not outlive it.
    engine = make_engine(_url(), foreign_keys=False, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
