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
runs through psycopg's cursor, inside that transaction.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

from aos.db.direct import DatabaseOperationalError

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
        if self._name not in state.names:
            res = pgconn.prepare(self._name, self.sql.encode(), None)
            if res.status not in _OK:
                _raise_for(conn, res)
            state.names.add(self._name)
        params = tx.dump_sequence([values[n] for n in self.names], self._formats)  # extra values: other variants
        res = pgconn.exec_prepared(self._name, params)  # type: ignore[arg-type]  # None is NULL
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

    def run(self, conn: psycopg.Connection[Any], **values: Any) -> int:
        """Execute; the number of rows it touched."""
        res, _ = self._execute(conn, values)
        return res.command_tuples or 0
