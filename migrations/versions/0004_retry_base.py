"""retry budget after a person steps in

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

A step's attempts are numbered for the life of the run (idempotency keys and golden recordings
depend on it), and its retry policy counted them from 1: after `aos runs resume` or `aos dlq replay`
the step got one attempt instead of a fresh retry budget. ``runs.retry_base`` is the attempt number
the budget counts from; a resume or a replay sets it to the step's last attempt.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('retry_base', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('runs', 'retry_base')
