"""Direct psycopg connections for the hot paths (a step's claim and settle, a run's submission).

A step makes two round trips to Postgres; SQLAlchemy's session, identity map and statement
compilation around them cost as much as the round trips themselves (docs/performance.md), so
the step path speaks to psycopg directly, through prepared statements, on connections of its own:

- ``relaxed()``: ``synchronous_commit = off``. For writes that a redelivery would redo (the
  claim of a step: if Postgres loses it in a crash, the redelivered message claims again).
- ``durable()``: ``synchronous_commit = on``. For everything that must survive once committed
  (a step's checkpoint, a submitted run). WAL is flushed in order, so the flush of a durable
  commit also makes every earlier relaxed commit durable.

One connection of each kind per thread and process, opened lazily. A connection inherited
across fork belongs to the parent (its socket is shared): the child never uses, closes or
garbage-collects it, it opens its own. A broken connection (server restart, network) is
replaced at the next use; the error itself reaches the caller as ``psycopg.OperationalError``,
one of ``TRANSIENT_ERRORS``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import sqlalchemy.exc
from psycopg.rows import dict_row

from aos.config import get_settings
from aos.db.session import libpq_url, on_engine_reset


class DatabaseOperationalError(Exception):
    """DB-API's OperationalError category met on a direct connection (the server restarted, a statement
    timed out, a serialisation failure), named with psycopg's own class: work that may be tried again."""

    def __init__(self, exc: psycopg.OperationalError) -> None:
        super().__init__(f"{type(exc).__name__}: {' '.join(str(exc).split())}")


# Errors after which the same work may simply be tried again later: the step task retries on them.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (DatabaseOperationalError, psycopg.OperationalError,
                                                 sqlalchemy.exc.OperationalError)

_local = threading.local()
# Connections inherited across fork: kept referenced so that no child ever finalises (closes) them.
_inherited: list[psycopg.Connection[Any]] = []
_opened_lock = threading.Lock()
_opened: list[tuple[int, psycopg.Connection[Any]]] = []  # (pid that opened it, connection)


def _connect(synchronous_commit: bool) -> psycopg.Connection[Any]:
    settings = get_settings()
    conn = psycopg.connect(
        libpq_url(settings.effective_database_url()), autocommit=True, connect_timeout=10,
        row_factory=dict_row, application_name="aos-engine",
        # these connections run a handful of statements, over and over: plan each once, at first use
        prepare_threshold=0,
        # generic plans from the first execution: every statement here finds its rows by key
        options=(f"-c statement_timeout={int(settings.db_statement_timeout_ms)} -c TimeZone=UTC "
                 "-c plan_cache_mode=force_generic_plan "
                 f"-c synchronous_commit={'on' if synchronous_commit else 'off'}"))
    with _opened_lock:
        _opened.append((os.getpid(), conn))
    return conn


def _get(kind: str, synchronous_commit: bool) -> psycopg.Connection[Any]:
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        _inherited.extend(c for c in getattr(_local, "conns", {}).values())
        _local.pid, _local.conns = pid, {}
    conn: psycopg.Connection[Any] | None = _local.conns.get(kind)
    if conn is None or conn.closed or conn.broken:
        conn = _local.conns[kind] = _connect(synchronous_commit)
    return conn


def relaxed() -> psycopg.Connection[Any]:
    """This thread's connection for redoable writes (``synchronous_commit = off``), autocommit."""
    return _get("relaxed", False)


def durable() -> psycopg.Connection[Any]:
    """This thread's connection for durable writes (``synchronous_commit = on``), autocommit."""
    return _get("durable", True)


def reset() -> None:
    """Forget the connections: this process's own are closed; those inherited across fork are left
    alone (they belong to the parent) and kept referenced so that they are never finalised here."""
    pid = os.getpid()
    with _opened_lock:
        opened = list(_opened)
        _opened.clear()
    for owner, conn in opened:
        if owner != pid:
            _inherited.append(conn)
        elif not conn.closed:
            conn.close()
    _local.pid, _local.conns = pid, {}


on_engine_reset(reset)
