"""Which migration a database is at, and which one this code ships: read without alembic or SQLAlchemy.

`aos doctor` asks both of every deployment, and importing alembic (with SQLAlchemy under it) cost it more CPU
than the rest of its database checks together. The shipped head is read from the migration scripts
themselves (their ``revision`` and ``down_revision``), the single place it is written, without running them;
tests/db/test_migrations.py holds it equal to alembic's own answer (``aos.db.migrate.head_revision``), which
`aos db upgrade` and `aos db check` use.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

# Inside the package (`aos.migrations`; in the source tree aos/migrations links to the top-level migrations/),
# so an installed wheel migrates as well as a checkout does.
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# where alembic keeps a database's revision (its default version table, which migrations/env.py keeps)
CURRENT_SQL = "SELECT version_num FROM alembic_version"


# A module-level ``revision = '0011_…'`` or ``down_revision: Union[…] = '0010_…'`` line, as alembic writes them:
# only these lines are read (parsing whole scripts cost ten times more, 20 ms for eleven of them).
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _assignments(path: Path) -> dict[str, Any]:
    """The literals ``revision`` and ``down_revision`` of a migration script (annotated or not)."""
    found: dict[str, Any] = {}
    for name, value in _ASSIGNMENT.findall(path.read_text(encoding="utf-8")):
        found.setdefault(name, ast.literal_eval(value))
    return found


def shipped_revisions() -> dict[str, tuple[str, ...]]:
    """Every migration script's revision → the revisions it follows (alembic's ``down_revision``)."""
    chain: dict[str, tuple[str, ...]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        if path.name.startswith("__"):
            continue
        found = _assignments(path)
        if "revision" not in found:
            continue
        down = found.get("down_revision")
        chain[found["revision"]] = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    return chain


def head_revision() -> str | None:
    """The revision this code expects a database at: the one no other script follows (None: no scripts)."""
    chain = shipped_revisions()
    heads = sorted(set(chain) - {down for downs in chain.values() for down in downs})
    if len(heads) > 1:
        raise ValueError(f"the migrations have several heads: {', '.join(heads)}")
    return heads[0] if heads else None


def current_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The revision a database is at, read on a psycopg connection in autocommit (None: never migrated)."""
    try:
        rows = conn.cursor(row_factory=tuple_row).execute(CURRENT_SQL).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    if len(rows) > 1:
        raise ValueError(f"the database records several revisions: {', '.join(sorted(r[0] for r in rows))}")
    return rows[0][0] if rows else None
