"""Hot-path statements: written with named parameters, executed as server-side prepared statements.

psycopg's general path (a cursor per call, a wait loop of generators, parameters converted and
reordered per call, a dict built per row) costs three to four times the client CPU of the round
trip itself; on the step path, which runs two statements per step, that was most of AOS's own
Python time. A ``Statement`` turns its ``%(name)s`` placeholders into ``$n`` once, prepares itself
once per connection, and runs with one libpq call (``PQexecPrepared``, which releases the GIL while
it waits), its parameters dumped and its row loaded by psycopg's own (C) adapters — the same types
in and out as through a cursor.

A parameter's type is the one Postgres infers from the statement (a column it is compared with or
stored in, or an explicit cast), so a statement casts any parameter whose use leaves it ambiguous.
This path is for the engine's own autocommit connections (``aos.db.direct``), where nothing else
prepares or deallocates statements; on a session's connection (a larger transaction) a statement
runs through psycopg's cursor, inside that transaction (whose scope the session set when it began).

Row-level security: a direct connection carries the scope its borrower runs in (``aos.db.scope``).
A statement in a tenant's or the operator's scope is sent in one pipeline with the prepared
``set_config`` that scopes it — the tenant (``aos.tenant_id``) or the operator role, both local to the
transaction — and one Sync: the two run in one implicit transaction, the setting is in force before
the statement touches a row and gone after it, and it costs no round trip of its own.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import fetch_many

from aos.config import get_settings
from aos.db.direct import DatabaseOperationalError
from aos.db.scope import Scope

_NAMED = re.compile(r"%\((\w+)\)s")
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_numbers = itertools.count(1)


class _Prepared:
    """What a connection has prepared, and its adapters (its encoding, its types): kept on the connection
    itself (``conn._aos_prepared``), so that it lives and dies with it."""

    __slots__ = ("names", "tx")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.names: set[bytes] = set()
        self.tx = Transformer(conn)


def _state(conn: psycopg.Connection[Any]) -> _Prepared:
    try:
        return conn._aos_prepared  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        state = conn._aos_prepared = _Prepared(conn)  # type: ignore[attr-defined]
        return state


def _raise_for(conn: psycopg.Connection[Any], res: pq.abc.PGresult) -> None:
    if conn.pgconn.status == pq.ConnStatus.BAD:  # the connection itself is gone (no SQLSTATE to map)
        exc: psycopg.Error = psycopg.OperationalError(
            (res.error_message or conn.pgconn.error_message).decode(errors="replace").strip())
    else:
        exc = errors.error_from_result(res, encoding=conn.info.encoding)
    if isinstance(exc, psycopg.OperationalError):
        raise DatabaseOperationalError(exc) from exc
    raise exc


_SCOPE_TENANT = (b"aos_scope_tenant", b"SELECT set_config('aos.tenant_id', $1, true)")
_SCOPE_ROLE = (b"aos_scope_role", b"SELECT set_config('role', $1, true)")


def _scope_call(scope: Scope | None) -> tuple[tuple[bytes, bytes], bytes] | None:
    """The prepared ``set_config`` (and its one parameter) that puts a transaction in ``scope``; None for
    none (the connection's own role, no tenant: no tenant-owned row)."""
    if scope is None:
        return None
    if scope.tenant is not None:
        return _SCOPE_TENANT, str(scope.tenant).encode()
    if scope.operator:
        role = get_settings().db_operator_role
        return (_SCOPE_ROLE, role.encode()) if role else None
    return None


def _prepare(conn: psycopg.Connection[Any], state: _Prepared, name: bytes, sql: bytes) -> None:
    if name not in state.names:
        res = conn.pgconn.prepare(name, sql, None)
        if res.status not in _OK:
            _raise_for(conn, res)
        state.names.add(name)


class Statement:
    """One SQL statement with ``%(name)s`` parameters (each name may appear several times)."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def positional(m: re.Match[str]) -> str:
            if m.group(1) not in self.names:
                self.names.append(m.group(1))
            return f"${self.names.index(m.group(1)) + 1}"

        self.sql = _NAMED.sub(positional, sql)
        self._name = f"aos_{next(_numbers)}".encode()
        self._formats = [PyFormat.TEXT] * len(self.names)
        self._columns: tuple[str, ...] | None = None

    def _execute(self, conn: psycopg.Connection[Any], values: dict[str, Any]) -> tuple[pq.abc.PGresult, Any]:
        if not conn.autocommit:
            return self._through_psycopg(conn, values)
        try:
            return self._prepared_execute(conn, values)
        except errors.InvalidSqlStatementName:
            # the server forgot it (DEALLOCATE ALL, DISCARD ALL from elsewhere): prepare it again, once
            _state(conn).names.clear()
            return self._prepared_execute(conn, values)

    def _through_psycopg(self, conn: psycopg.Connection[Any], values: dict[str, Any]) -> tuple[pq.abc.PGresult, Any]:
        """A session's connection (inside its transaction): psycopg's own path, which begins the transaction
        and manages what it prepares (it deallocates everything at a rollback)."""
        try:
            with psycopg.RawCursor(conn) as cur:
                cur.execute(self.sql, [values[n] for n in self.names])
                res = cur.pgresult
        except psycopg.OperationalError as exc:
            raise DatabaseOperationalError(exc) from exc
        assert res is not None
        if self._columns is None:
            self._columns = tuple(res.fname(i).decode() for i in range(res.nfields))  # type: ignore[union-attr]
        tx = Transformer(conn)
        tx.set_pgresult(res)
        return res, tx

    def _prepared_execute(self, conn: psycopg.Connection[Any], values: dict[str, Any]) -> tuple[pq.abc.PGresult, Any]:
        pgconn = conn.pgconn
        state = _state(conn)
        tx = state.tx
        _prepare(conn, state, self._name, self.sql.encode())
        params = tx.dump_sequence([values[n] for n in self.names], self._formats)  # extra values: other variants
        scoped = _scope_call(getattr(conn, "_aos_scope", None))
        if scoped is None:
            res = pgconn.exec_prepared(self._name, params)  # type: ignore[arg-type]  # None is NULL
        else:
            (name, sql), value = scoped
            _prepare(conn, state, name, sql)
            res = _pipelined(conn, name, value, self._name, params)
        if res.status not in _OK:
            _raise_for(conn, res)
        if self._columns is None:
            self._columns = tuple(res.fname(i).decode() for i in range(res.nfields))  # type: ignore[union-attr]
        tx.set_pgresult(res)
        return res, tx

    def one(self, conn: psycopg.Connection[Any], **values: Any) -> dict[str, Any] | None:
        """The first row as a dict (None: no row)."""
        res, tx = self._execute(conn, values)
        if res.ntuples == 0:
            return None
        return dict(zip(self._columns or (), tx.load_row(0, tuple), strict=True))

    def rows(self, conn: psycopg.Connection[Any], **values: Any) -> list[tuple[Any, ...]]:
        """Every row, as tuples in the statement's column order."""
        res, tx = self._execute(conn, values)
        return tx.load_rows(0, res.ntuples, tuple)

    def dicts(self, conn: psycopg.Connection[Any], **values: Any) -> list[dict[str, Any]]:
        """Every row, as a dict by column name."""
        res, tx = self._execute(conn, values)
        return [dict(zip(self._columns or (), row, strict=True)) for row in tx.load_rows(0, res.ntuples, tuple)]

    def run(self, conn: psycopg.Connection[Any], **values: Any) -> int:
        """Execute; the number of rows it touched."""
        res, _ = self._execute(conn, values)
        return res.command_tuples or 0


def _pipelined(conn: psycopg.Connection[Any], scope_name: bytes, scope_value: bytes, name: bytes,
               params: Any) -> pq.abc.PGresult:
    """The scoping ``set_config`` and the statement in one pipeline (one round trip, one implicit
    transaction); the statement's result (the ``set_config``'s error, if that one failed)."""
    pgconn = conn.pgconn
    try:
        pgconn.enter_pipeline_mode()
        pgconn.send_query_prepared(scope_name, [scope_value])
        pgconn.send_query_prepared(name, params)
        pgconn.pipeline_sync()
        scoped = conn.wait(fetch_many(pgconn))
        result = conn.wait(fetch_many(pgconn))
        sync = conn.wait(fetch_many(pgconn))
        if not sync or sync[-1].status != pq.ExecStatus.PIPELINE_SYNC:  # pragma: no cover — protocol
            raise psycopg.OperationalError("pipeline out of step")
        pgconn.exit_pipeline_mode()
    except psycopg.Error as exc:
        conn.close()  # a pipeline cut short leaves the connection in no known state: the pool drops it
        if isinstance(exc, psycopg.OperationalError):
            raise DatabaseOperationalError(exc) from exc
        raise
    if scoped and scoped[0].status not in _OK:
        return scoped[0]
    return result[0]
