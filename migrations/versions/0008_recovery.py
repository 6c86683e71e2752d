"""failure recovery: suggestions, provider usage per tenant and day, tenant settings

Revision ID: 0008_recovery
Revises: 0007_rls
Create Date: 2026-12-06

failure_patterns existed since 0001 (embedding: pgvector with HNSW where the server has it, float8[]
where not); it gains the skill of its failures. Three new tables: recovery_suggestions (one per failure
of a run's step, what came of applying it), recovery_usage (embedding and LLM calls per tenant per day,
what the quotas count) and recovery_settings (auto-apply and quotas per tenant).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from aos.config import get_settings
from sqlalchemy.dialects import postgresql

revision: str = '0008_recovery'
down_revision: Union[str, Sequence[str], None] = '0007_rls'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('failure_patterns', sa.Column('skill', sa.String(length=200), server_default='', nullable=False))
    op.create_table('recovery_suggestions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=200), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('pattern_id', sa.BigInteger(), nullable=True),
    sa.Column('layer', sa.String(length=20), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('parameters', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('confidence', sa.Numeric(precision=4, scale=3), nullable=False),
    sa.Column('similarity', sa.Numeric(precision=4, scale=3), nullable=True),
    sa.Column('meta', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='offered', nullable=False),
    sa.Column('helpful', sa.Boolean(), nullable=True),
    sa.Column('feedback_note', sa.Text(), nullable=True),
    sa.Column('applied_by', sa.String(length=20), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("layer IN ('cache', 'vector', 'llm', 'catalog')", name=op.f('ck_recovery_suggestions_layer')),
    sa.CheckConstraint("status IN ('offered', 'applied', 'succeeded', 'failed')", name=op.f('ck_recovery_suggestions_status')),
    sa.ForeignKeyConstraint(['pattern_id'], ['failure_patterns.id'], name=op.f('fk_recovery_suggestions_pattern_id_failure_patterns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_recovery_suggestions_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_recovery_suggestions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_suggestions')),
    sa.UniqueConstraint('run_id', 'step_index', 'attempt', name=op.f('uq_recovery_suggestions_run_id_step_index_attempt'))
    )
    op.create_index('ix_recovery_suggestions_applied', 'recovery_suggestions', ['run_id'], unique=False, postgresql_where=sa.text("status = 'applied'"))
    op.create_index(op.f('ix_recovery_suggestions_tenant_id_created_at'), 'recovery_suggestions', ['tenant_id', 'created_at'], unique=False)
    op.create_table('recovery_usage',
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('calls', sa.Integer(), server_default='0', nullable=False),
    sa.Column('refused', sa.Integer(), server_default='0', nullable=False),
    sa.Column('tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=18, scale=10), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_recovery_usage_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'day', 'kind', name=op.f('pk_recovery_usage'))
    )
    op.create_table('recovery_settings',
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('auto_apply', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('embedding_quota', sa.Integer(), nullable=True),
    sa.Column('llm_quota', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_recovery_settings_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_recovery_settings'))
    )
    # tenant-owned like every other table: row-level security as 0007_rls sets it up (tests/db/test_rls.py)
    operator = get_settings().db_operator_role or 'aos_operator'
    for table in _TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_rows ON {table} USING (tenant_id = {_CURRENT_TENANT}) "
                   f"WITH CHECK (tenant_id = {_CURRENT_TENANT})")
        op.execute(f"CREATE POLICY operator_rows ON {table} TO {operator} USING (true) WITH CHECK (true)")


_TENANT_TABLES = ('recovery_suggestions', 'recovery_usage', 'recovery_settings')
_CURRENT_TENANT = "nullif(current_setting('aos.tenant_id', true), '')::uuid"


def downgrade() -> None:
    for table in _TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS operator_rows ON {table}")
        op.execute(f"DROP POLICY IF EXISTS tenant_rows ON {table}")
    op.drop_table('recovery_settings')
    op.drop_table('recovery_usage')
    op.drop_index(op.f('ix_recovery_suggestions_tenant_id_created_at'), table_name='recovery_suggestions')
    op.drop_index('ix_recovery_suggestions_applied', table_name='recovery_suggestions', postgresql_where=sa.text("status = 'applied'"))
    op.drop_table('recovery_suggestions')
    op.drop_column('failure_patterns', 'skill')
