"""operations, developer surface and golden files

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Each area adds its changes in its own section below; keep downgrade the mirror of upgrade.
"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
from sqlalchemy.dialects import postgresql  # noqa: F401

revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # --- developer surface (issue 4) ---
    # when PUT /agents/{id}/state last replaced an agent's state
    op.add_column('agents', sa.Column('state_updated_at', sa.DateTime(timezone=True), nullable=True))
    # --- operations (issue 5) ---
    # dead letters (outbox/dlq helper): when a dead letter stopped being open, for archiving; closed statuses
    op.add_column('dead_letters', sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('dead_letter_archive', sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f('ck_dead_letters_status'), 'dead_letters',
                               "status IN ('open', 'replayed', 'discarded', 'resolved')")
    # retention (singletons helper): find old finished runs and old delivered outbox rows without a scan
    op.create_index('ix_runs_finished', 'runs', ['finished_at'], unique=False,
                    postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled', 'dead_lettered')"))
    op.create_index('ix_outbox_delivered', 'outbox', ['delivered_at'], unique=False,
                    postgresql_where=sa.text("status = 'delivered'"))
    # user schedules (singletons helper): what the last tick did, for `aos schedules list`
    op.add_column('schedules', sa.Column('last_run_id', sa.UUID(), nullable=True))
    op.add_column('schedules', sa.Column('last_error', sa.Text(), nullable=True))
    # --- golden files (issue 6) ---
    # a golden replay run: the recorded run it re-executes (its identity is what skills see)
    op.add_column('runs', sa.Column('replay_of', sa.UUID(), nullable=True))
    # the primary call's {args, outcome} when a step's fallback produced the checkpoint
    op.add_column('checkpoints', sa.Column('fallback_from', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    # the recorded calls of non-deterministic skills a replay run answers from
    op.create_table('golden_replay_calls',
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('call', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.CheckConstraint("role IN ('primary', 'fallback')", name=op.f('ck_golden_replay_calls_role')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_golden_replay_calls_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_golden_replay_calls_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'step_id', 'attempt', 'role', name=op.f('pk_golden_replay_calls'))
    )


def downgrade() -> None:
    # --- golden files (issue 6) ---
    op.drop_table('golden_replay_calls')
    op.drop_column('checkpoints', 'fallback_from')
    op.drop_column('runs', 'replay_of')
    # --- operations (issue 5) ---
    # user schedules and retention (singletons helper)
    op.drop_column('schedules', 'last_error')
    op.drop_column('schedules', 'last_run_id')
    op.drop_index('ix_outbox_delivered', table_name='outbox', postgresql_where=sa.text("status = 'delivered'"))
    op.drop_index('ix_runs_finished', table_name='runs',
                  postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled', 'dead_lettered')"))
    # dead letters (outbox/dlq helper)
    op.drop_constraint(op.f('ck_dead_letters_status'), 'dead_letters', type_='check')
    op.drop_column('dead_letter_archive', 'resolved_at')
    op.drop_column('dead_letters', 'resolved_at')
    # --- developer surface (issue 4) ---
    op.drop_column('agents', 'state_updated_at')
