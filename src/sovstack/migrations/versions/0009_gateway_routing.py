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
    # Plain ALTER TABLE … ADD COLUMN: never a rebuild (see downgrade).
    op.add_column("gateway_deployments", sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("gateway_deployments", sa.Column("failures_to_open", sa.Integer(), nullable=False,
                                                   server_default="3"))
    op.add_column("gateway_deployments", sa.Column("cool_down_seconds", sa.Float(), nullable=False,
                                                   server_default="30"))
    op.add_column("gateway_models", sa.Column("routing", sa.String(16), nullable=False, server_default="priority"))
    op.add_column("gateway_models", sa.Column("fallbacks", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("gateway_usage", sa.Column("estimated", sa.Boolean(), nullable=False, server_default=sa.false()))
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
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+), never a batch rebuild: with foreign keys on, dropping
    # gateway_models to rebuild it would cascade to every deployment.
    op.drop_column("gateway_usage", "estimated")
    op.drop_column("gateway_models", "fallbacks")
    op.drop_column("gateway_models", "routing")
    op.drop_column("gateway_deployments", "cool_down_seconds")
    op.drop_column("gateway_deployments", "failures_to_open")
    op.drop_column("gateway_deployments", "retries")
