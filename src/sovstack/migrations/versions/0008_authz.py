"""Authorization hardening (#14): organisation gateway policies that bind every key of its members.

A member could escape a key's floor, rate limit, the organisation's budget and transcript logging by
making a new key: those lived on the key. The organisation's rules now live with the organisation.

Revision ID: 0008_authz
Revises: 0007_login_throttle
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_authz"
down_revision = "0007_login_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_org_policies",
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("floor_classification", sa.String(16), nullable=False),
        sa.Column("requests_per_minute_per_person", sa.Integer(), nullable=True),
        sa.Column("tokens_per_person", sa.BigInteger(), nullable=True),
        sa.Column("tokens_period", sa.String(8), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_org_policies")
