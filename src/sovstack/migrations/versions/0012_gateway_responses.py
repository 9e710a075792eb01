"""Stored responses (#15): organisations may keep Responses API answers for a retention period
(``gateway_org_responses``), so clients can continue them with ``previous_response_id`` and read or delete
them under ``/v1/responses/{id}``; the answers, their content sealed, in ``gateway_responses``.

Revision ID: 0012_gateway_responses
Revises: 0011_gateway_spend
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_gateway_responses"
down_revision = "0011_gateway_spend"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: nothing existing is rebuilt.
    op.create_table(
        "gateway_org_responses",
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("retention_days", sa.Integer(), nullable=False),
    )
    op.create_table(
        "gateway_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_prefix", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("input_items", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
    )
    op.create_index("ix_gateway_responses_organisation_id", "gateway_responses", ["organisation_id"])
    op.create_index("ix_gateway_responses_expires_at", "gateway_responses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_responses_expires_at", table_name="gateway_responses")
    op.drop_index("ix_gateway_responses_organisation_id", table_name="gateway_responses")
    op.drop_table("gateway_responses")
    op.drop_table("gateway_org_responses")
