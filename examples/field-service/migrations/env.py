"""Alembic environment: DATABASE_URL (postgresql://...) -> postgresql+psycopg://."""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Concurrent `alembic upgrade head` runs (e.g. two deploy hosts) are
# serialized by this transaction-level advisory lock.
MIGRATION_LOCK = "field_service:migrations"


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip() or config.get_main_option("sqlalchemy.url")
    if not url:
        sys.exit("DATABASE_URL is not set")
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    sys.exit("DATABASE_URL must start with postgresql://")


def run_migrations_offline() -> None:
    """Emit SQL to stdout (alembic upgrade head --sql)."""
    context.configure(url=database_url(), target_metadata=None, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool,
                           connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                               {"k": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
