"""Row-level security: the catalog's tenant tables all have a forced policy, the application's role can
neither skip it nor own the tables, and a query that forgets its tenant condition — through the
application's session and through its direct (pipelined) connections — sees only the current tenant's
rows, for every tenant table, filled with real rows of two tenants.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from aos.config import get_settings
from aos.db import direct, scope
from aos.db.rls import role_problems, tenant_tables, unguarded_tables
from aos.db.session import session_scope
from aos.db.statements import Statement
from tests.support.worker import wait_for_run


def _pg(conn: Any) -> Any:
    """The psycopg connection under a session or an SQLAlchemy connection (aos.db.rls asks on psycopg), in its
    transaction."""
    if isinstance(conn, Session):
        conn = conn.connection()
    return conn.connection.driver_connection


def _tenant_tables() -> list[dict[str, Any]]:
    with session_scope() as s:
        return tenant_tables(_pg(s))


def test_every_tenant_table_has_a_forced_tenant_policy(aos_env):
    with session_scope() as s:
        assert len(tenant_tables(_pg(s))) >= 15
        assert unguarded_tables(_pg(s)) == [], "tenant tables without a forced tenant_rows policy on aos.tenant_id"


def test_the_guard_finds_a_new_tenant_table_without_a_policy(aos_env):
    from aos.db.session import build_engine

    engine = build_engine(null_pool=True)  # the migrating login: it may create tables
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE rls_probe (id int, tenant_id uuid)"))
            assert unguarded_tables(_pg(conn)) == ["rls_probe"]
            conn.execute(text("ALTER TABLE rls_probe ENABLE ROW LEVEL SECURITY"))
            conn.execute(text("CREATE POLICY tenant_rows ON rls_probe USING "
                              "(tenant_id = nullif(current_setting('aos.tenant_id', true), '')::uuid) WITH CHECK "
                              "(tenant_id = nullif(current_setting('aos.tenant_id', true), '')::uuid)"))
            assert unguarded_tables(_pg(conn)) == ["rls_probe"]  # enabled but not forced: its owner would skip it
            conn.execute(text("ALTER TABLE rls_probe FORCE ROW LEVEL SECURITY"))
            assert unguarded_tables(_pg(conn)) == []
            conn.rollback()
    finally:
        engine.dispose()


def test_the_application_role_cannot_bypass_the_policies(aos_env):
    settings = get_settings()
    with session_scope() as s:
        assert role_problems(_pg(s), settings.db_app_role) == []
        assert role_problems(_pg(s), "postgres")  # a superuser: the check can say no
    # and the application's connections do act as it
    with scope.as_tenant(uuid.uuid4()):
        with session_scope() as s:
            assert s.scalar(text("SELECT current_user")) == settings.db_app_role
        with direct.relaxed() as conn:
            assert Statement("SELECT current_user AS u").one(conn)["u"] == settings.db_app_role


# --- two tenants with rows in every tenant table ------------------------------------------------------


def _two_tenants_everywhere(worker) -> list[uuid.UUID]:
    """Two tenants, each with real rows in every tenant table (the API's and the engine's own paths where
    they exist, plain inserts for the tables only beat and the recovery code fill)."""
    from aos.services.agents import create_agent
    from aos.services.runs import submit_run
    from aos.services.schedules import create_schedule
    from aos.services.tenancy import authenticate, create_api_key, create_tenant
    from aos.services.workflows import save_workflow
    from aos.tasks.publisher import CeleryPublisher

    plan = {"name": "rls", "inputs": {"x": 1}, "budget": {"max_cost_usd": 1},
            "steps": [{"id": "a", "skill": "json.transform", "args": {"input": {"$ref": "inputs"}, "expr": "x"}}]}
    tenants = []
    for _ in range(2):
        with session_scope() as s:
            t = create_tenant(s, f"rls-{uuid.uuid4().hex[:8]}")
            key, _ = create_api_key(s, t)
            ctx = authenticate(s, key)
        create_agent(ctx, "rls-agent")
        save_workflow(ctx, "rls-wf", plan)
        create_schedule(ctx, "rls-wf", "0 0 1 1 *")
        run_id = submit_run(ctx, plan, CeleryPublisher())
        assert wait_for_run(run_id, timeout=60).status == "succeeded", worker.tail()
        tid = ctx.tenant_id
        with session_scope() as s:  # the operator's rows of the tables no API call fills here
            p = {"t": tid, "r": run_id}
            s.execute(text("INSERT INTO tenant_daily_spend (tenant_id, day) VALUES (:t, current_date)"), p)
            dl = s.execute(text("INSERT INTO dead_letters (tenant_id, kind, run_id, payload, error_code) "
                                "VALUES (:t, 'step', :r, '{}', 'X') RETURNING id"), p).scalar()
            s.execute(text("INSERT INTO replay_log (tenant_id, dead_letter_id, result) VALUES (:t, :d, 'requeued')"),
                      {**p, "d": dl})
            s.execute(text("INSERT INTO dead_letter_archive (id, tenant_id, kind, payload, error_code, status) "
                           "VALUES (:d + 1000000000, :t, 'step', '{}', 'X', 'resolved')"), {**p, "d": dl})
            s.execute(text("INSERT INTO failure_patterns (tenant_id, error_code, signature, message, recovery, source)"
                           " VALUES (:t, 'X', md5(CAST(:t AS text)), 'm', '{}', 'human')"), p)
            s.execute(text("INSERT INTO golden_replay_calls (run_id, step_id, attempt, role, tenant_id, call) "
                           "VALUES (:r, 'a', 1, 'primary', :t, '{}')"), p)
            s.execute(text("INSERT INTO tenant_quotas (tenant_id, daily_runs) VALUES (:t, 1000)"), p)
            s.execute(text("INSERT INTO recovery_usage (tenant_id, day, kind) VALUES (:t, current_date, 'llm')"), p)
            s.execute(text("INSERT INTO recovery_settings (tenant_id) VALUES (:t)"), p)
            s.execute(text("INSERT INTO recovery_suggestions (id, tenant_id, run_id, step_index, step_id, attempt, "
                           "error_code, signature, layer, mode, explanation, confidence) VALUES "
                           "(gen_random_uuid(), :t, :r, 0, 'a', 1, 'X', 's', 'catalog', 'RETRY', 'e', 0.5)"), p)
            s.execute(text("INSERT INTO run_amendments (id, tenant_id, run_id, plan_revision, step_index, step_id, "
                           "after_attempt, changes, step_hash_before, step_hash_after, applied_by) VALUES "
                           "(gen_random_uuid(), :t, :r, 1, 0, 'a', 1, '{}', 'x', 'y', 'person')"), p)
            s.execute(text("INSERT INTO run_waits (tenant_id, run_id, step_index, step_id, attempt, kind, signal, "
                           "status) VALUES (:t, :r, 0, 'a', 1, 'signal', 'go', 'cancelled')"), p)
        tenants.append(tid)
    return tenants


@pytest.fixture(scope="module")
def two_tenants(worker):
    return _two_tenants_everywhere(worker)


def _unscoped(table: str, column: str) -> str:
    return f"SELECT {column} AS owner FROM {table}"  # deliberately no tenant condition


def test_an_unscoped_select_sees_only_the_current_tenants_rows_in_every_tenant_table(two_tenants):
    a, b = two_tenants
    tables = _tenant_tables()
    for t in tables:  # both tenants really have rows there (else the check below proves nothing)
        with session_scope() as s:
            owners = set(s.scalars(text(_unscoped(t["table"], t["column"]))))
        assert {a, b} <= owners, f"{t['table']}: the fixture must give both tenants rows"
    for me in (a, b):
        with scope.as_tenant(me):
            for t in tables:
                with session_scope() as s:  # the application's session
                    owners = set(s.scalars(text(_unscoped(t["table"], t["column"]))))
                assert owners == {me}, (t["table"], owners)
                with direct.relaxed() as conn:  # the engine's direct connections (pipelined scope)
                    rows = Statement(_unscoped(t["table"], t["column"])).rows(conn)
                assert {r[0] for r in rows} == {me}, (t["table"], "direct")


def test_with_no_tenant_the_application_sees_no_tenant_row(two_tenants):
    with scope.scoped(scope.NOBODY):
        for t in _tenant_tables():
            with session_scope() as s:
                assert s.scalar(text(f"SELECT count(*) FROM {t['table']}")) == 0, t["table"]
            with direct.relaxed() as conn:
                assert Statement(f"SELECT count(*) AS n FROM {t['table']}").one(conn)["n"] == 0, t["table"]


def test_a_tenant_cannot_write_another_tenants_rows(two_tenants):
    a, b = two_tenants
    with scope.as_tenant(a):
        with pytest.raises(Exception, match="row-level security"), session_scope() as s:
            s.execute(text("INSERT INTO agents (tenant_id, name) VALUES (:b, 'intruder')"), {"b": b})
        with session_scope() as s:  # an update or delete of b's rows touches nothing
            assert s.execute(text("UPDATE agents SET name = 'renamed' WHERE tenant_id = :b"), {"b": b}).rowcount == 0
            assert s.execute(text("DELETE FROM runs WHERE tenant_id = :b"), {"b": b}).rowcount == 0
    with session_scope() as s:
        assert s.scalar(text("SELECT count(*) FROM runs WHERE tenant_id = :b"), {"b": b}) >= 1


def test_the_scope_of_a_direct_statement_ends_with_it(two_tenants):
    """The pipelined set_config is local to the statement's own transaction: the connection, back in the
    pool, carries no tenant into its next borrower's statements."""
    a, _ = two_tenants
    with scope.as_tenant(a), direct.relaxed() as conn:
        assert Statement("SELECT count(*) AS n FROM runs").one(conn)["n"] >= 1
        held = conn
    held._aos_scope = scope.NOBODY  # the same connection, used with no scope
    assert Statement("SELECT count(*) AS n FROM runs").one(held)["n"] == 0
    assert Statement("SELECT current_setting('aos.tenant_id', true) AS t").one(held)["t"] in ("", None)


def test_api_requests_of_one_tenant_see_only_its_rows(client, two_tenants):
    """Through HTTP: a key of tenant a lists a's runs only (the isolation tests cover every endpoint)."""
    from aos.services.tenancy import create_api_key

    a, b = two_tenants
    with session_scope() as s:
        from aos.db.models import Tenant

        key, _ = create_api_key(s, s.get(Tenant, a))
    body = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert body["items"]
    with session_scope() as s:
        owners = set(s.scalars(text("SELECT tenant_id FROM runs WHERE id = ANY(:ids)"),
                               {"ids": [uuid.UUID(r["id"]) for r in body["items"]]}))
    assert owners == {a}
