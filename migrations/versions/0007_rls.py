"""tenancy as a boundary: row-level security, concurrency limits

Revision ID: 0007_rls
Revises: 0006_signals
Create Date: 2026-12-06

Row-level security (issue 13, item 2; aos/db/scope.py, docs/security.md):

- two roles, created when they do not exist and the migrating user may (else the migration stops and
  says what a DBA must create): AOS_DB_APP_ROLE (aos_app), what the API and workers act as, and
  AOS_DB_OPERATOR_ROLE (aos_operator), what cross-tenant work switches to; neither may log in, be a
  superuser or bypass RLS; the migrating user is made a member of both (for SET ROLE);
- both get DML on every table and sequence of the schema (and on those later migrations create);
- every tenant-owned table (TENANT_TABLES) gets ROW LEVEL SECURITY, FORCEd (its owner is held too),
  a policy for every role keeping rows to the tenant named by the transaction's ``aos.tenant_id``, and
  one letting the operator role see and write every row. A later data migration that must cross
  tenants runs ``SET LOCAL ROLE aos_operator`` first (unless it runs as a superuser).

Concurrency limits (issue 13, item 4; aos/services/concurrency.py):

- tenants.max_running_runs: the tenant's cap on runs holding a slot (NULL: AOS_TENANT_MAX_RUNNING_RUNS);
- runs.concurrency: the groups a run counts in ([{"group", "limit"}], from its workflow's or plan's
  and its agent's ``concurrency``); NULL for a run that no limit applied to when it was queued;
- runs.waiting_since: set while a queued run waits for a slot (it has no enqueue yet); a run holds a
  slot while it is queued or running with waiting_since NULL, so a slot is released by the very
  update that makes the run final, and a crash can never leak one.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from aos.config import get_settings

revision: str = '0007_rls'
down_revision: Union[str, Sequence[str], None] = '0006_signals'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# every tenant-owned table and the column that names its tenant (tests/db/test_rls.py finds them in the
# catalog and fails when one lacks a forced policy)
TENANT_TABLES = {
    'tenants': 'id', 'api_keys': 'tenant_id', 'agents': 'tenant_id', 'workflows': 'tenant_id',
    'runs': 'tenant_id', 'checkpoints': 'tenant_id', 'golden_replay_calls': 'tenant_id',
    'run_events': 'tenant_id', 'outbox': 'tenant_id', 'dead_letters': 'tenant_id',
    'dead_letter_archive': 'tenant_id', 'replay_log': 'tenant_id', 'failure_patterns': 'tenant_id',
    'schedules': 'tenant_id', 'tenant_daily_spend': 'tenant_id', 'tenant_quotas': 'tenant_id',
    'run_waits': 'tenant_id',
}
CURRENT_TENANT = "nullif(current_setting('aos.tenant_id', true), '')::uuid"


def _roles() -> tuple[str, str]:
    settings = get_settings()
    return settings.db_app_role or 'aos_app', settings.db_operator_role or 'aos_operator'


def _create_role(role: str) -> None:
    op.execute(f"""
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            BEGIN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            EXCEPTION
                WHEN duplicate_object THEN NULL;  -- another database's migration made it just now
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role {role} does not exist and % may not create it', current_user
                        USING HINT = 'a DBA runs: CREATE ROLE {role} NOLOGIN; GRANT {role} TO ' || current_user
                                     || '; (docs/operations.md, "Database roles")';
            END;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}' AND (rolsuper OR rolbypassrls)) THEN
            RAISE EXCEPTION 'role {role} is a superuser or bypasses row-level security: it must not';
        END IF;
        IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT {role} TO %I', current_user);
            EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
                RAISE NOTICE '% is not a member of {role}: grant it to the login AOS uses', current_user;
            END;
        END IF;
    END $$""")


def _enable_rls(operator: str) -> None:
    for table, column in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_rows ON {table} USING ({column} = {CURRENT_TENANT}) "
                   f"WITH CHECK ({column} = {CURRENT_TENANT})")
        op.execute(f"CREATE POLICY operator_rows ON {table} TO {operator} USING (true) WITH CHECK (true)")


def upgrade() -> None:
    app, operator = _roles()
    for role in (app, operator):
        _create_role(role)
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()
    for role in (app, operator):
        op.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
        op.execute(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}')
        op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                   f'TO {role}')
        op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}')
    _enable_rls(operator)
    op.add_column('tenants', sa.Column('max_running_runs', sa.Integer(), nullable=True))
    op.add_column('runs', sa.Column('concurrency', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('runs', sa.Column('waiting_since', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_runs_waiting', 'runs', ['tenant_id', 'waiting_since', 'id'], unique=False,
                    postgresql_where=sa.text("waiting_since IS NOT NULL"))


def downgrade() -> None:
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS operator_rows ON {table}")
        op.execute(f"DROP POLICY IF EXISTS tenant_rows ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    # the roles stay: they belong to the cluster, and other databases may use them
    op.drop_index('ix_runs_waiting', table_name='runs', postgresql_where=sa.text("waiting_since IS NOT NULL"))
    op.drop_column('runs', 'waiting_since')
    op.drop_column('runs', 'concurrency')
    op.drop_column('tenants', 'max_running_runs')
