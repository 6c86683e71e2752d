"""One SQLAlchemy engine per process.

Celery's prefork pool forks workers after import: a pooled connection inherited
across fork is shared by two processes and corrupts both. ``reset_engine()`` is
called in ``worker_process_init`` so each child builds its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from aos.config import get_settings, libpq_url
from aos.db import direct
from aos.db.scope import current as current_scope

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
# Errors after which the same work may simply be tried again later (the step task retries on them): the
# direct connections' and the same category met through SQLAlchemy, which wraps psycopg's in its own class.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (*direct.TRANSIENT_ERRORS, sqlalchemy.exc.OperationalError)
__all__ = ["TRANSIENT_ERRORS", "build_engine", "get_engine", "libpq_url", "reset_engine", "session_scope",
           "sqlalchemy_url"]


def sqlalchemy_url(url: str) -> str:
    """Normalise a postgres URL to the psycopg 3 driver."""
    u = make_url(url.replace("postgres://", "postgresql://", 1))
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def build_engine(url: str | None = None, *, pool_size: int | None = None, null_pool: bool = False,
                 app_role: bool = False) -> Engine:
    """An engine on ``url`` (default: the configured database). ``app_role``: every connection acts as
    ``AOS_DB_APP_ROLE`` (the application's engine; migrations and probes connect as the login role)."""
    settings = get_settings()
    role = settings.db_app_role if app_role else ""
    pooling: dict = (
        {"poolclass": NullPool} if null_pool else
        {"pool_size": pool_size or settings.db_pool_size, "max_overflow": 5, "pool_pre_ping": True,
         "pool_recycle": 1800}
    )
    engine = create_engine(
        sqlalchemy_url(url or settings.effective_database_url()),
        connect_args={"connect_timeout": 10},
        **pooling,
    )
    timeout_ms = settings.db_statement_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # A runaway query must not hold a worker forever (ARCHITECTURE: statement_timeout set).
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(timeout_ms)}")
            cur.execute("SET TIME ZONE 'UTC'")
            if role:  # a validated identifier (aos.config): row-level security applies to this connection
                cur.execute(f"SET ROLE {role}")
        dbapi_conn.commit()

    return engine


def get_engine() -> Engine:
    global _engine, _sessionmaker
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = build_engine(app_role=True)
                _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
                event.listen(_sessionmaker, "after_begin", _apply_scope)
    return _engine


def reset_engine() -> None:
    """Forget this process's engine (after fork, or when the configuration changed)."""
    global _engine, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose(close=False)  # close=False: never touch the parent's sockets
        _engine = None
        _sessionmaker = None
    direct.reset()  # the direct connections are forgotten with the engine


def _apply_scope(_session: Session, _transaction: object, connection: Connection) -> None:
    """Put the transaction that just began in the caller's scope (``aos.db.scope``): the tenant's
    ``aos.tenant_id``, or the operator role, both local to the transaction."""
    scope = current_scope()
    if scope.tenant is not None:
        connection.exec_driver_sql("SELECT set_config('aos.tenant_id', %(t)s, true)", {"t": str(scope.tenant)})
    elif scope.operator and get_settings().db_operator_role:
        connection.exec_driver_sql("SELECT set_config('role', %(r)s, true)", {"r": get_settings().db_operator_role})


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any exception."""
    get_engine()
    assert _sessionmaker is not None
    session = _sessionmaker()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
