"""run amendments: a person's change of one step of a failed run, applied from a recovery suggestion

Revision ID: 0009_amendments
Revises: 0008_recovery
Create Date: 2026-12-07

A run's plan was pinned for good at submission; issue 14 lets a person apply a suggestion that changes the
failed step (timeout_s, max_attempts, args, a fallback skill). Each such change is a row of run_amendments
(the audit: what changed, before and after, by whom, from which suggestion) and bumps runs.plan_revision,
which fences every claim so that no worker runs the step from a plan it cached before the change. A
suggestion applied to a run that is then cancelled settles as `abandoned`.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from aos.config import get_settings
from sqlalchemy.dialects import postgresql

revision: str = '0009_amendments'
down_revision: Union[str, Sequence[str], None] = '0008_recovery'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_STATUSES_BEFORE = "status IN ('offered', 'applied', 'succeeded', 'failed')"
_STATUSES = "status IN ('offered', 'applied', 'succeeded', 'failed', 'abandoned')"
_CURRENT_TENANT = "nullif(current_setting('aos.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.add_column('runs', sa.Column('plan_revision', sa.Integer(), server_default='0', nullable=False))
    op.create_table('run_amendments',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('plan_revision', sa.Integer(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=200), nullable=False),
    sa.Column('after_attempt', sa.Integer(), nullable=False),
    sa.Column('changes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('step_hash_before', sa.String(length=64), nullable=False),
    sa.Column('step_hash_after', sa.String(length=64), nullable=False),
    sa.Column('suggestion_id', sa.UUID(), nullable=True),
    sa.Column('applied_by', sa.String(length=20), nullable=False),
    sa.Column('key_id', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_amendments_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['suggestion_id'], ['recovery_suggestions.id'],
                            name=op.f('fk_run_amendments_suggestion_id_recovery_suggestions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_run_amendments_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_amendments')),
    sa.UniqueConstraint('run_id', 'plan_revision', name=op.f('uq_run_amendments_run_id_plan_revision'))
    )
    op.drop_constraint(op.f('ck_recovery_suggestions_status'), 'recovery_suggestions', type_='check')
    op.create_check_constraint(op.f('ck_recovery_suggestions_status'), 'recovery_suggestions', _STATUSES)
    # tenant-owned like every other table: row-level security as 0007_rls sets it up (tests/db/test_rls.py)
    operator = get_settings().db_operator_role or 'aos_operator'
    op.execute("ALTER TABLE run_amendments ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE run_amendments FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_rows ON run_amendments USING (tenant_id = {_CURRENT_TENANT}) "
               f"WITH CHECK (tenant_id = {_CURRENT_TENANT})")
    op.execute(f"CREATE POLICY operator_rows ON run_amendments TO {operator} USING (true) WITH CHECK (true)")


def downgrade() -> None:
    op.execute("UPDATE recovery_suggestions SET status = 'offered', settled_at = NULL WHERE status = 'abandoned'")
    op.drop_constraint(op.f('ck_recovery_suggestions_status'), 'recovery_suggestions', type_='check')
    op.create_check_constraint(op.f('ck_recovery_suggestions_status'), 'recovery_suggestions', _STATUSES_BEFORE)
    op.execute("DROP POLICY IF EXISTS operator_rows ON run_amendments")
    op.execute("DROP POLICY IF EXISTS tenant_rows ON run_amendments")
    op.drop_table('run_amendments')
    op.drop_column('runs', 'plan_revision')
