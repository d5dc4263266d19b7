"""alembic environment: the database from DATABASE_URL, one migration run at a time."""

import os
import sys
import time
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from shop import settings
from shop.models import Base

LOCK_ID = 727401  # advisory lock: concurrent runs (two hosts, a retried deploy) apply steps one at a time

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def connect(engine, timeout):
    """Waits for the database (it may still be starting) up to MIGRATE_TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return engine.connect()
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            print(f"migrate: database not ready ({first}), retrying", file=sys.stderr, flush=True)
            time.sleep(2)


def run_offline():
    context.configure(url=settings.database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online():
    engine = create_engine(settings.database_url(), connect_args={"connect_timeout": 3})
    with connect(engine, float(os.environ.get("MIGRATE_TIMEOUT", "60"))) as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
