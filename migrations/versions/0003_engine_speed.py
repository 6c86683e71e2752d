"""engine speed: cheaper step writes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

A step writes a checkpoint row and timeline events and updates its run twice. Three things made
those writes cost more than they must:

- checkpoints and run_events referenced tenants directly: every insert took a KEY SHARE lock on
  the tenant's row, one hot row shared by all of a tenant's workers (MultiXacts under load). They
  now reference their run by (run_id, tenant_id) — the run row the same statement has just
  locked — which also guarantees that a child row's tenant is its run's tenant;
- ix_runs_active indexed lease_expires_at, which every claim and settle changes: no update of a
  running run could be HOT. The partial index now holds only the run id, so an update that keeps
  the run active touches no index;
- runs leaves room on its pages (fillfactor 80) for those HOT updates;
- an opened attempt no longer enters the simulator's history index (finished attempts only), and
  run_events loses an index no query used (tenant, time): each step writes fewer index entries;
- a step's own "started" and "succeeded" events are no longer rows of their own: the attempt's
  checkpoint holds their ids (drawn from run_events' sequence, so the timeline keeps one order)
  and the timeline reads them from there (aos/services/timeline.py);
- the attempt in progress lives on its run row (attempt, attempt_open, …), so that a claim is one
  HOT update of that row; an attempt's checkpoint is inserted once, when it ends, instead of being
  inserted at the start and rewritten (with every index) at the end. Attempts running when this
  migration runs move from their checkpoint rows to their runs.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_CHILDREN = ('checkpoints', 'run_events')


def upgrade() -> None:
    op.create_unique_constraint(op.f('uq_runs_id_tenant_id'), 'runs', ['id', 'tenant_id'])
    for table in _CHILDREN:
        op.drop_constraint(op.f(f'fk_{table}_tenant_id_tenants'), table, type_='foreignkey')
        op.drop_constraint(op.f(f'fk_{table}_run_id_runs'), table, type_='foreignkey')
        op.create_foreign_key(op.f(f'fk_{table}_run_id_runs'), table, 'runs', ['run_id', 'tenant_id'],
                              ['id', 'tenant_id'], ondelete='CASCADE')
    op.drop_index('ix_runs_active', table_name='runs')
    op.create_index('ix_runs_active', 'runs', ['id'], unique=False,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.execute("ALTER TABLE runs SET (fillfactor = 80)")
    op.drop_index(op.f('ix_checkpoints_tenant_id_skill_finished_at'), table_name='checkpoints')
    op.create_index(op.f('ix_checkpoints_tenant_id_skill_finished_at'), 'checkpoints',
                    ['tenant_id', 'skill', 'finished_at'], unique=False,
                    postgresql_where=sa.text('finished_at IS NOT NULL'))
    op.drop_index(op.f('ix_run_events_tenant_id_created_at'), table_name='run_events')
    op.add_column('checkpoints', sa.Column('started_event_id', sa.BigInteger(), nullable=True))
    op.add_column('checkpoints', sa.Column('finished_event_id', sa.BigInteger(), nullable=True))
    op.add_column('runs', sa.Column('attempt', sa.Integer(), server_default='0', nullable=False))
    op.add_column('runs', sa.Column('attempt_open', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    op.add_column('runs', sa.Column('attempt_started_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('runs', sa.Column('attempt_deliveries', sa.Integer(), server_default='0', nullable=False))
    op.add_column('runs', sa.Column('attempt_event_id', sa.BigInteger(), nullable=True))
    # the current step's attempt count, and the attempt a dead delivery left running, move to the run
    op.execute("""UPDATE runs r SET attempt = c.attempt FROM (
                      SELECT run_id, step_index, max(attempt) AS attempt FROM checkpoints GROUP BY run_id, step_index
                  ) c WHERE c.run_id = r.id AND c.step_index = r.next_step""")
    op.execute("""UPDATE runs r SET attempt_open = true, attempt_started_at = c.started_at,
                      attempt_deliveries = c.deliveries, attempt_event_id = c.started_event_id
                  FROM checkpoints c
                  WHERE c.run_id = r.id AND c.step_index = r.next_step AND c.attempt = r.attempt
                    AND c.status = 'running'""")
    # (their step.started events are rows already: checkpoints written before this revision have no event ids)
    op.execute("DELETE FROM checkpoints WHERE status = 'running'")


def downgrade() -> None:
    # an open attempt becomes a running checkpoint again
    op.execute("""INSERT INTO checkpoints (tenant_id, run_id, step_index, step_id, attempt, deliveries, status, skill,
                                           worker, started_at, started_event_id)
                  SELECT r.tenant_id, r.id, r.next_step, r.plan->'steps'->r.next_step->>'id', r.attempt,
                         r.attempt_deliveries, 'running', r.skill_versions->>(r.plan->'steps'->r.next_step->>'id'),
                         r.lease_owner, r.attempt_started_at, r.attempt_event_id
                  FROM runs r WHERE r.attempt_open""")
    for column in ('attempt_event_id', 'attempt_deliveries', 'attempt_started_at', 'attempt_open', 'attempt'):
        op.drop_column('runs', column)
    # the derived events become rows again, so that the previous timeline still shows them
    op.execute("""INSERT INTO run_events (id, tenant_id, run_id, type, step_id, data, created_at)
                  SELECT started_event_id, tenant_id, run_id, 'step.started', step_id,
                         jsonb_build_object('attempt', attempt, 'worker', worker), started_at
                  FROM checkpoints WHERE started_event_id IS NOT NULL""")
    op.execute("""INSERT INTO run_events (id, tenant_id, run_id, type, step_id, data, created_at)
                  SELECT finished_event_id, tenant_id, run_id, 'step.succeeded', step_id,
                         jsonb_build_object('attempt', attempt, 'duration_ms', duration_ms::float8,
                                            'cost_usd', cost_usd::float8), finished_at
                  FROM checkpoints WHERE finished_event_id IS NOT NULL""")
    op.drop_column('checkpoints', 'finished_event_id')
    op.drop_column('checkpoints', 'started_event_id')
    op.create_index(op.f('ix_run_events_tenant_id_created_at'), 'run_events', ['tenant_id', 'created_at'],
                    unique=False)
    op.drop_index(op.f('ix_checkpoints_tenant_id_skill_finished_at'), table_name='checkpoints')
    op.create_index(op.f('ix_checkpoints_tenant_id_skill_finished_at'), 'checkpoints',
                    ['tenant_id', 'skill', 'finished_at'], unique=False)
    op.execute("ALTER TABLE runs RESET (fillfactor)")
    op.drop_index('ix_runs_active', table_name='runs')
    op.create_index('ix_runs_active', 'runs', ['status', 'lease_expires_at'], unique=False,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    for table in _CHILDREN:
        op.drop_constraint(op.f(f'fk_{table}_run_id_runs'), table, type_='foreignkey')
        op.create_foreign_key(op.f(f'fk_{table}_run_id_runs'), table, 'runs', ['run_id'], ['id'], ondelete='CASCADE')
        op.create_foreign_key(op.f(f'fk_{table}_tenant_id_tenants'), table, 'tenants', ['tenant_id'], ['id'],
                              ondelete='CASCADE')
    op.drop_constraint(op.f('uq_runs_id_tenant_id'), 'runs', type_='unique')
