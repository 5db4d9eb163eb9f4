"""Alembic environment: runs on the connection the gateway hands over
(``gateway.storage.database``)."""

from __future__ import annotations

from alembic import context

from gateway.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("CertGate runs its migrations online, on the configured database")
run_migrations_online()
