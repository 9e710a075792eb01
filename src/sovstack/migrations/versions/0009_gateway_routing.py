"""Gateway routing and metering (#15): per-deployment retries and circuit settings, a model's routing
strategy and declared fallbacks, and usage rows that say when their tokens were estimated.

Organisations may turn on an exact-match answer cache (``gateway_org_cache``; answers, encrypted, in
``gateway_cache``).

Streams whose client hung up, or whose upstream sent no usage, used to be metered at 0 tokens; they are
now metered for what was relayed, estimated, and the row says so.

Revision ID: 0009_gateway_routing
Revises: 0008_authz
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_gateway_routing"
down_revision = "0008_authz"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_deployments") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failures_to_open", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("cool_down_seconds", sa.Float(), nullable=False, server_default="30"))
    with op.batch_alter_table("gateway_models") as batch:
        batch.add_column(sa.Column("routing", sa.String(16), nullable=False, server_default="priority"))
        batch.add_column(sa.Column("fallbacks", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("gateway_usage") as batch:
        batch.add_column(sa.Column("estimated", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "gateway_org_cache",
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
    )
    op.create_table(
        "gateway_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_gateway_cache_organisation_id", "gateway_cache", ["organisation_id"])
    op.create_index("ix_gateway_cache_expires_at", "gateway_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_cache_expires_at", table_name="gateway_cache")
    op.drop_index("ix_gateway_cache_organisation_id", table_name="gateway_cache")
    op.drop_table("gateway_cache")
    op.drop_table("gateway_org_cache")
    with op.batch_alter_table("gateway_usage") as batch:
        batch.drop_column("estimated")
    with op.batch_alter_table("gateway_models") as batch:
        batch.drop_column("fallbacks")
        batch.drop_column("routing")
    with op.batch_alter_table("gateway_deployments") as batch:
        batch.drop_column("cool_down_seconds")
        batch.drop_column("failures_to_open")
        batch.drop_column("retries")
