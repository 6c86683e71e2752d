"""tenancy: tenant quotas, the tenant's daily budget warning

Revision ID: 0005_tenancy
Revises: 0004
Create Date: 2026-12-06

Issue 13 (JWT, rate limits, quotas as API):
- tenant_quotas holds a tenant's own limits: request rates per key and per tenant (NULL: the deployment's
  default from AOS_RATE_LIMIT_*), and daily quotas of requests, runs and tokens (NULL: none). The API key
  lookup joins it, so an API request still authenticates in one read;
- tenant_daily_spend.warned_at records when a tenant's spend of the day first reached 80 % of its daily
  budget, so that its budget.warning is sent once a day.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '0005_tenancy'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'tenant_quotas',
        sa.Column('tenant_id', postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column('key_requests_per_minute', sa.Integer(), nullable=True),
        sa.Column('tenant_requests_per_minute', sa.Integer(), nullable=True),
        sa.Column('daily_requests', sa.Integer(), nullable=True),
        sa.Column('daily_runs', sa.Integer(), nullable=True),
        sa.Column('daily_tokens', sa.BigInteger(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_quotas_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_tenant_quotas')),
    )
    op.add_column('tenant_daily_spend', sa.Column('warned_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('tenant_daily_spend', 'warned_at')
    op.drop_table('tenant_quotas')
