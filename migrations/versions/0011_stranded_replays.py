"""an index of the amendment rows of golden replay runs, for the reaper

Revision ID: 0011_stranded_replays
Revises: 0010_replay_amendments
Create Date: 2026-12-06

A replay run whose worker died between committing its failure and re-enacting the recorded amendment stays
failed with the amendment due; the reaper finds such runs through the amendment rows of golden_replay_calls
(aos.services.replay_amendments.reenact_stranded). Those rows are few (replays of amended recordings only):
a partial index keeps the reaper's tick from reading the table's recorded calls.
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0011_stranded_replays'
down_revision: Union[str, Sequence[str], None] = '0010_replay_amendments'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_golden_replay_calls_amendments', 'golden_replay_calls', ['run_id'],
                    postgresql_where="role = 'amendment'")


def downgrade() -> None:
    op.drop_index('ix_golden_replay_calls_amendments', table_name='golden_replay_calls')
