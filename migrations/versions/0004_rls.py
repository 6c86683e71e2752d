"""tenancy as a boundary: concurrency limits

Revision ID: 0004_rls
Revises: 0003
Create Date: 2026-12-06

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

revision: str = '0004_rls'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('tenants', sa.Column('max_running_runs', sa.Integer(), nullable=True))
    op.add_column('runs', sa.Column('concurrency', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('runs', sa.Column('waiting_since', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_runs_waiting', 'runs', ['tenant_id', 'waiting_since', 'id'], unique=False,
                    postgresql_where=sa.text("waiting_since IS NOT NULL"))


def downgrade() -> None:
    op.drop_index('ix_runs_waiting', table_name='runs', postgresql_where=sa.text("waiting_since IS NOT NULL"))
    op.drop_column('runs', 'waiting_since')
    op.drop_column('runs', 'concurrency')
    op.drop_column('tenants', 'max_running_runs')
