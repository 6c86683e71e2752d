"""Hot-path statements: prepared once per connection, the same types in and out as psycopg's cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aos.db import direct
from aos.db.direct import DatabaseOperationalError
from aos.db.statements import Statement

ECHO = Statement("SELECT %(id)s::uuid AS id, %(n)s::int AS n, %(cost)s::numeric AS cost, %(at)s::timestamptz AS at, "
                 "%(flag)s::boolean AS flag, %(doc)s::jsonb AS doc, %(text)s::text AS text, %(n)s::int + 1 AS again")


def test_values_come_back_with_their_types(aos_env):
    values = {"id": uuid.uuid4(), "n": 41, "cost": Decimal("0.012345"), "at": datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC),
              "flag": True, "doc": '{"a": [1, "é"]}', "text": "naïve ☕"}
    with direct.relaxed() as conn:
        row = ECHO.one(conn, **values)
    assert row == {**values, "doc": {"a": [1, "é"]}, "again": 42}
    with direct.relaxed() as conn:
        assert ECHO.one(conn, **{**values, "n": None, "doc": None})["again"] is None


def test_a_statement_the_server_forgot_is_prepared_again(aos_env):
    values = {"id": uuid.uuid4(), "n": 1, "cost": Decimal(0), "at": None, "flag": False, "doc": "{}", "text": "x"}
    with direct.relaxed() as conn:
        ECHO.one(conn, **values)
        conn.execute("DEALLOCATE ALL")  # what a rollback through psycopg would do
        assert ECHO.one(conn, **values)["again"] == 2


def test_a_failing_statement_raises_psycopgs_own_error_and_a_timeout_is_operational(aos_env):
    with direct.relaxed() as conn:
        with pytest.raises(Exception) as bad:
            Statement("SELECT %(x)s::int AS x").one(conn, x="not a number")
        assert type(bad.value).__name__ == "InvalidTextRepresentation"
        conn.execute("SET statement_timeout = 50")
        try:
            with pytest.raises(DatabaseOperationalError, match="QueryCanceled"):
                Statement("SELECT pg_sleep(%(s)s::float8)").run(conn, s=1.0)
        finally:
            conn.execute("RESET statement_timeout")


def test_inside_a_session_it_runs_in_the_sessions_transaction(aos_env):
    from sqlalchemy import text

    from aos.db.session import session_scope
    from aos.db.step_store import session_connection

    insert = Statement("INSERT INTO tenants (id, name) VALUES (%(id)s, %(name)s)")
    tid = uuid.uuid4()
    with pytest.raises(RuntimeError), session_scope() as s:
        insert.run(session_connection(s), id=tid, name=f"rolled-back-{tid.hex[:8]}")
        raise RuntimeError("roll the session back")
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM tenants WHERE id = :id"), {"id": tid}).scalar() == 0
