"""Hot-path statements: written with named parameters, executed as prepared positional ones.

psycopg's general path (a new cursor per call, named parameters reordered per call, a dict built
per row) costs about twice the client CPU of the round trip itself; on the step path, which runs
two statements per step, that is most of AOS's own Python time. A ``Statement`` turns its
``%(name)s`` placeholders into ``$n`` once, at import, and runs on one reusable raw cursor per
connection, with tuple rows mapped to column names once per statement.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from aos.db.direct import DatabaseOperationalError

_NAMED = re.compile(r"%\((\w+)\)s")
_cursors: weakref.WeakKeyDictionary[psycopg.Connection[Any], psycopg.RawCursor[Any]] = weakref.WeakKeyDictionary()


def _cursor(conn: psycopg.Connection[Any]) -> psycopg.RawCursor[Any]:
    cur = _cursors.get(conn)
    if cur is None or cur.closed:
        cur = _cursors[conn] = psycopg.RawCursor(conn, row_factory=tuple_row)
    return cur


class Statement:
    """One SQL statement with ``%(name)s`` parameters (each name may appear several times)."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def positional(m: re.Match[str]) -> str:
            if m.group(1) not in self.names:
                self.names.append(m.group(1))
            return f"${self.names.index(m.group(1)) + 1}"

        self.sql = _NAMED.sub(positional, sql)
        self._columns: tuple[str, ...] | None = None

    def _execute(self, conn: psycopg.Connection[Any], values: dict[str, Any]) -> psycopg.RawCursor[Any]:
        cur = _cursor(conn)
        try:
            cur.execute(self.sql, [values[n] for n in self.names])  # extra values are for other variants
        except psycopg.OperationalError as exc:
            raise DatabaseOperationalError(exc) from exc
        if self._columns is None and cur.description is not None:
            self._columns = tuple(d.name for d in cur.description)
        return cur

    def one(self, conn: psycopg.Connection[Any], **values: Any) -> dict[str, Any] | None:
        """The first row as a dict (None: no row)."""
        row = self._execute(conn, values).fetchone()
        return dict(zip(self._columns or (), row, strict=True)) if row is not None else None

    def rows(self, conn: psycopg.Connection[Any], **values: Any) -> list[tuple[Any, ...]]:
        """Every row, as tuples in the statement's column order."""
        return self._execute(conn, values).fetchall()

    def run(self, conn: psycopg.Connection[Any], **values: Any) -> int:
        """Execute; the number of rows it touched."""
        return self._execute(conn, values).rowcount
