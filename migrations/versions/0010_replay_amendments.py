"""golden replay calls may hold the amendments a replay re-enacts

Revision ID: 0010_replay_amendments
Revises: 0009_amendments
Create Date: 2026-12-08

A golden replay of a run a person amended re-enacts the amendment where the recording says it came (after
that step's recorded attempts, when the replay run fails there), so the replay runs the plan as submitted and
matches the recording attempt by attempt. What it re-enacts is stored with the replay run when it starts,
beside the recorded calls it answers from: a golden_replay_calls row keyed by the step and the attempt the
amendment came after, role 'amendment'. The table is a tenant table with row-level security already (0007).
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0010_replay_amendments'
down_revision: Union[str, Sequence[str], None] = '0009_amendments'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ROLES_BEFORE = "role IN ('primary', 'fallback')"
_ROLES = "role IN ('primary', 'fallback', 'amendment')"


def upgrade() -> None:
    op.drop_constraint(op.f('ck_golden_replay_calls_role'), 'golden_replay_calls', type_='check')
    op.create_check_constraint(op.f('ck_golden_replay_calls_role'), 'golden_replay_calls', _ROLES)


def downgrade() -> None:
    op.execute("DELETE FROM golden_replay_calls WHERE role = 'amendment'")
    op.drop_constraint(op.f('ck_golden_replay_calls_role'), 'golden_replay_calls', type_='check')
    op.create_check_constraint(op.f('ck_golden_replay_calls_role'), 'golden_replay_calls', _ROLES_BEFORE)
