"""Row-level security as the catalog has it: the tenant tables and those not guarded by a forced policy.

`aos doctor` and tests/db/test_rls.py ask this; migration 0007_rls creates the policies. On a psycopg
connection (a session's is ``session.connection().connection.driver_connection``, in its transaction): `aos
doctor` asks without importing SQLAlchemy, which alone cost it a fifth of a second of CPU.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

# a table is tenant-owned when it has a tenant_id column; `tenants` is owned by the tenant it is
TENANT_TABLES_SQL = """
SELECT c.relname AS table, CASE WHEN c.relname = 'tenants' THEN 'id' ELSE 'tenant_id' END AS column,
       c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced, pg_get_userbyid(c.relowner) AS owner
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                                        AND a.attname = 'tenant_id' AND NOT a.attisdropped))
ORDER BY 1
"""
POLICY = "tenant_rows"
SETTING = "aos.tenant_id"


def _rows(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


def tenant_tables(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every tenant-owned table of the schema: name, tenant column, RLS enabled and forced, owner."""
    return _rows(conn, TENANT_TABLES_SQL)


def unguarded_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Tenant tables without RLS enabled and forced and a ``tenant_rows`` policy (reads and writes) on the
    transaction's ``aos.tenant_id``."""
    policies = {r["tablename"]: r for r in _rows(
        conn, "SELECT tablename, qual, with_check FROM pg_policies WHERE schemaname = current_schema() "
        "AND policyname = %(p)s", {"p": POLICY})}
    missing = []
    for t in tenant_tables(conn):
        policy = policies.get(t["table"])
        if not (t["enabled"] and t["forced"] and policy is not None
                and SETTING in (policy["qual"] or "") and SETTING in (policy["with_check"] or "")
                and t["column"] in policy["qual"]):
            missing.append(t["table"])
    return missing


def role_problems(conn: psycopg.Connection[Any], role: str) -> list[str]:
    """Why ``role`` cannot be the application's role (empty: it can)."""
    found = _rows(conn, "SELECT rolsuper, rolbypassrls, pg_has_role(session_user, oid, 'MEMBER') AS member, "
                  "session_user AS login FROM pg_roles WHERE rolname = %(r)s", {"r": role})
    if not found:
        return [f"role {role} does not exist"]
    row = found[0]
    problems = []
    if row["rolsuper"]:
        problems.append(f"role {role} is a superuser (superusers bypass every policy)")
    if row["rolbypassrls"]:
        problems.append(f"role {role} has BYPASSRLS")
    if not row["member"]:
        problems.append(f"the login ({row['login']}) is not a member of {role} (it cannot SET ROLE to it)")
    owners = {r["owner"] for r in _rows(
        conn, "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class "
        "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'")}
    if role in owners:
        problems.append(f"role {role} owns tables")
    return problems
