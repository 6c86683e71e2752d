"""Direct psycopg connections for the hot paths (a step's claim and settle, a run's submission).

A step makes two round trips to Postgres; SQLAlchemy's session, identity map and statement
compilation around them cost as much as the round trips themselves (docs/performance.md), so
the step path speaks to psycopg directly, through prepared statements, on connections of its own:

- ``relaxed()``: ``synchronous_commit = off``. For writes that a redelivery would redo (the
  claim of a step: if Postgres loses it in a crash, the redelivered message claims again).
- ``durable()``: ``synchronous_commit = on``. For everything that must survive once committed
  (a step's checkpoint, a submitted run). WAL is flushed in order, so the flush of a durable
  commit also makes every earlier relaxed commit durable.

Each kind is a small pool per process (``AOS_DB_POOL_SIZE`` kept open, a few more under load),
borrowed by one thread at a time: a Celery worker child uses one connection of each, an API
worker's threads share a few. A connection inherited across fork belongs to the parent (its
socket is shared): the child never uses, closes or garbage-collects it, it opens its own. A
broken connection (server restart, network) is dropped when it is returned; the error itself
reaches the caller as one of ``TRANSIENT_ERRORS``.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from aos.config import get_settings, libpq_url
from aos.db.scope import Scope
from aos.db.scope import current as current_scope


class DatabaseOperationalError(Exception):
    """DB-API's OperationalError category met on a direct connection (the server restarted, a statement
    timed out, a serialisation failure), named with psycopg's own class: work that may be tried again."""

    def __init__(self, exc: psycopg.OperationalError) -> None:
        super().__init__(f"{type(exc).__name__}: {' '.join(str(exc).split())}")


# Errors after which the same work may simply be tried again later (with SQLAlchemy's: aos.db.session).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (DatabaseOperationalError, psycopg.OperationalError)

BORROW_TIMEOUT_S = 30.0  # how long a thread waits for a connection when the process has its cap open
# How long connections past AOS_DB_POOL_SIZE stay open after the last time all were busy.
SURPLUS_KEPT_S = 30.0


class _Pool:
    """Idle connections of one kind for this process, borrowed by one thread at a time.

    The common case (an idle connection is there, and goes back afterwards) takes no lock: a list's
    ``pop`` and ``append`` are atomic. The condition is only for opening a connection past the idle
    ones, and for waiting at the cap (``AOS_DB_POOL_SIZE`` + 5 open at once, like the engine's pool).
    """

    def __init__(self, synchronous_commit: bool) -> None:
        self.synchronous_commit = synchronous_commit
        self.pid = os.getpid()
        self.idle: list[psycopg.Connection[Any]] = []
        self.cond = threading.Condition()
        size = get_settings().db_pool_size
        self.cap = size + 5   # connections open at once (borrowed or idle)
        self.keep = size      # idle connections kept open between borrows
        self.opened = 0
        self.waiting = 0
        self.short_at = 0.0   # when a borrow last found no idle connection

    def get(self) -> psycopg.Connection[Any]:
        try:
            conn = self.idle.pop()
        except IndexError:
            self.short_at = time.monotonic()
            return self._open()
        if conn.closed or conn.broken:
            self._forget(conn)
            return self._open()
        return conn

    def _open(self) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + BORROW_TIMEOUT_S
        with self.cond:
            self.waiting += 1
            try:
                while True:
                    try:  # one came back meanwhile
                        return self.idle.pop()
                    except IndexError:
                        pass
                    if self.opened < self.cap:
                        self.opened += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DatabaseOperationalError(psycopg.OperationalError(
                            f"no database connection free in this process for {BORROW_TIMEOUT_S:.0f} s "
                            "(AOS_DB_POOL_SIZE)"))
                    self.cond.wait(min(left, 1.0))
            finally:
                self.waiting -= 1
        try:
            return _connect(self.synchronous_commit)
        except BaseException:
            self._forget(None)
            raise

    def put(self, conn: psycopg.Connection[Any]) -> None:
        # Past ``keep``, a connection stays while the load needs it: closing it at once and opening another at
        # the next burst (a backend fork each) cost an API under steady load more than the query itself.
        if conn.closed or conn.broken or conn.pgconn.transaction_status != TransactionStatus.IDLE \
                or (len(self.idle) >= self.keep and time.monotonic() - self.short_at > SURPLUS_KEPT_S):
            self._forget(conn)
            return
        self.idle.append(conn)
        if self.waiting:
            with self.cond:
                self.cond.notify()

    def _forget(self, conn: psycopg.Connection[Any] | None) -> None:
        """A connection leaves the pool (broken, left in a transaction, or one more than ``keep``)."""
        if conn is not None:
            conn.close()
        with self.cond:
            self.opened -= 1
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            idle, self.idle = self.idle, []
            self.opened -= len(idle)
        if self.pid == os.getpid():
            for conn in idle:
                conn.close()
        else:  # inherited across fork: the parent's sockets; never close them here
            _inherited.extend(idle)


class _Borrowed:
    """``with``: one connection of a pool, given back at the end (a class, not a generator: it runs twice per step).

    The connection carries the scope its statements run in (``conn._aos_scope``, read by
    ``aos.db.statements``): the one given, else the caller's (``aos.db.scope.current()``)."""

    __slots__ = ("pool", "conn", "scope")

    def __init__(self, pool: _Pool, scope: Scope | None) -> None:
        self.pool = pool
        self.scope = scope

    def __enter__(self) -> psycopg.Connection[Any]:
        conn = self.conn = self.pool.get()
        conn._aos_scope = self.scope if self.scope is not None else current_scope()  # type: ignore[attr-defined]
        return conn

    def __exit__(self, *exc: object) -> None:
        self.pool.put(self.conn)


# Connections inherited across fork: kept referenced so that no child ever finalises (closes) them.
_inherited: list[psycopg.Connection[Any]] = []
_pools: dict[bool, _Pool] = {}
_pools_lock = threading.Lock()


def _connect(synchronous_commit: bool) -> psycopg.Connection[Any]:
    settings = get_settings()
    return psycopg.connect(
        libpq_url(settings.effective_database_url()), autocommit=True, connect_timeout=10,
        row_factory=dict_row, application_name="aos-engine",
        # aos.db.statements prepares its statements itself; psycopg must not prepare (and then, at a
        # rollback, DEALLOCATE ALL) on these connections
        prepare_threshold=None,
        # generic plans from the first execution: every statement here finds its rows by key
        options=(f"-c statement_timeout={int(settings.db_statement_timeout_ms)} -c TimeZone=UTC "
                 "-c plan_cache_mode=force_generic_plan "
                 f"-c synchronous_commit={'on' if synchronous_commit else 'off'}"
                 # the application role, set at connection start (no round trip): row-level security applies
                 + (f" -c role={settings.db_app_role}" if settings.db_app_role else "")))


def _pool(synchronous_commit: bool) -> _Pool:
    pool = _pools.get(synchronous_commit)
    if pool is None or pool.pid != os.getpid():
        with _pools_lock:
            pool = _pools.get(synchronous_commit)
            if pool is None or pool.pid != os.getpid():
                if pool is not None:
                    pool.close()  # the parent's: kept, never closed
                pool = _pools[synchronous_commit] = _Pool(synchronous_commit)
    return pool


def relaxed(scope: Scope | None = None) -> AbstractContextManager[psycopg.Connection[Any]]:
    """``with relaxed() as conn``: an autocommit connection for redoable writes (``synchronous_commit =
    off``) and reads, borrowed from this process's pool; its statements run in ``scope`` (default: the
    caller's, ``aos.db.scope``)."""
    return _Borrowed(_pool(False), scope)


def durable(scope: Scope | None = None) -> AbstractContextManager[psycopg.Connection[Any]]:
    """``with durable() as conn``: an autocommit connection for durable writes (``synchronous_commit =
    on``), borrowed from this process's pool; its statements run in ``scope`` (default: the caller's)."""
    return _Borrowed(_pool(True), scope)


def reset() -> None:
    """Forget the pools: this process's idle connections are closed; those inherited across fork are left
    alone (they belong to the parent) and kept referenced so that they are never finalised here."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()

