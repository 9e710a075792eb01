"""Authorization hardening (#14): organisation gateway policies that bind every key of its members, and
invitations to organisations.

A member could escape a key's floor, rate limit, the organisation's budget and transcript logging by
making a new key: those lived on the key. The organisation's rules now live with the organisation.
An org_admin could add any user id to their organisation and then read that person's email: people now
join an organisation by accepting an invitation sent to their email address.

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
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_invitations_organisation_id", "invitations", ["organisation_id"])
    op.create_index("ix_invitations_email", "invitations", ["email"])


def downgrade() -> None:
    op.drop_index("ix_invitations_email", table_name="invitations")
    op.drop_index("ix_invitations_organisation_id", table_name="invitations")
    op.drop_table("invitations")
    op.drop_table("gateway_org_policies")
