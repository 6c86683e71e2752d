"""Alembic environment: one migration chain for the whole data model."""

from __future__ import annotations

from alembic import context
from aos.db.models import Base
from aos.db.session import build_engine
from aos.db.schema_compare import compare_type, include_object

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = build_engine(context.config.attributes.get("url") or None, null_pool=True)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=compare_type,
                      include_object=include_object,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use `aos db upgrade`")
run_migrations_online()
