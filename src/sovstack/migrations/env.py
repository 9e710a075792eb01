"""Alembic environment: runs on the engine that sovstack hands over (never reads a URL itself)."""

from alembic import context

from sovstack.compute import tables as compute_tables  # noqa: F401
from sovstack.core import tables  # noqa: F401  (registers the core tables on the metadata)
from sovstack.core.db import Base
from sovstack.data import tables as data_tables  # noqa: F401
from sovstack.gateway import tables as gateway_tables  # noqa: F401

target_metadata = Base.metadata
engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
