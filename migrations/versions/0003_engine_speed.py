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
  run_events loses an index no query used (tenant, time): each step writes fewer index entries.
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


def downgrade() -> None:
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
