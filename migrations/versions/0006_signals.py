"""signals: waiting runs and their waits

Revision ID: 0006_signals
Revises: 0005_tenancy
Create Date: 2026-12-06

A run can wait without holding a worker (issue 15): its status is ``waiting`` and what it waits
for — a signal's name, the reason, an optional JSON Schema for the payload and a deadline — is a
``run_waits`` row, which also keeps the delivered payload and the client's idempotency key. Beat
finds passed deadlines through a partial index of open waits.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '0006_signals'
down_revision: Union[str, Sequence[str], None] = '0005_tenancy'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_OLD = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead_lettered')"
_NEW = "status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'dead_lettered')"


def upgrade() -> None:
    op.drop_constraint(op.f('ck_runs_status'), 'runs', type_='check')
    op.create_check_constraint(op.f('ck_runs_status'), 'runs', sa.text(_NEW))
    op.create_table(
        'run_waits',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('tenant_id', sa.UUID(), nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.Column('step_index', sa.Integer(), nullable=False),
        sa.Column('step_id', sa.String(length=100), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('signal', sa.String(length=100), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('payload_schema', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status', sa.String(length=20), server_default='waiting', nullable=False),
        sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('idempotency_key', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('waiting', 'signalled', 'expired', 'cancelled')",
                           name=op.f('ck_run_waits_status')),
        sa.CheckConstraint("kind IN ('signal', 'escalation')", name=op.f('ck_run_waits_kind')),
        sa.ForeignKeyConstraint(['run_id', 'tenant_id'], ['runs.id', 'runs.tenant_id'],
                                name=op.f('fk_run_waits_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_run_waits')),
    )
    op.create_index(op.f('ix_run_waits_run_id_id'), 'run_waits', ['run_id', 'id'], unique=False)
    op.create_index('ix_run_waits_deadline', 'run_waits', ['deadline'], unique=False,
                    postgresql_where=sa.text("status = 'waiting' AND deadline IS NOT NULL"))
    op.create_index('uq_run_waits_key', 'run_waits', ['run_id', 'idempotency_key'], unique=True,
                    postgresql_where=sa.text('idempotency_key IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_run_waits_key', table_name='run_waits')
    op.drop_index('ix_run_waits_deadline', table_name='run_waits')
    op.drop_index(op.f('ix_run_waits_run_id_id'), table_name='run_waits')
    op.drop_table('run_waits')
    # a waiting run has no status to go back to but the one a person resumes from
    op.execute("UPDATE runs SET status = 'failed', error_code = 'SIGNAL_TIMEOUT', finished_at = now(), "
               "error_message = 'the schema was downgraded while the run waited' WHERE status = 'waiting'")
    op.drop_constraint(op.f('ck_runs_status'), 'runs', type_='check')
    op.create_check_constraint(op.f('ck_runs_status'), 'runs', sa.text(_OLD))
