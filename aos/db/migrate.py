"""`aos db upgrade` and `aos db check`, on alembic's API."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from aos.db.revisions import MIGRATIONS
from aos.db.session import sqlalchemy_url


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision``; a no-op on an up-to-date database."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """alembic's answer; `aos doctor` reads the same from the scripts without alembic (aos.db.revisions)."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def check(url: str) -> list[str]:
    """Problems found: the database not at head, or models and migrations that differ."""
    from aos.db.models import Base
    from aos.db.schema_compare import compare_type, include_object

    problems: list[str] = []
    cur, head = current_revision(url), head_revision()
    if cur != head:
        problems.append(f"database is at revision {cur or '(none)'}, migrations head is {head}: run `aos db upgrade`")
        return problems
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": compare_type, "include_object": include_object})
            for diff in compare_metadata(ctx, Base.metadata):
                problems.append(f"models and migrations differ: {diff!r}")
    finally:
        engine.dispose()
    return problems
