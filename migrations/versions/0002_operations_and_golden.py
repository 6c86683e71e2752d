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
    # --- operations (issue 5) ---
    # --- golden files (issue 6) ---
    pass


def downgrade() -> None:
    # --- golden files (issue 6) ---
    # --- operations (issue 5) ---
    # --- developer surface (issue 4) ---
    pass
