"""Gateway spend control (#15): money and token budgets per key, person and organisation with alerts,
per-key model allowlists, tokens-per-minute and concurrency limits, and the currency of every cost.

Revision ID: 0011_gateway_spend
Revises: 0010_gateway_admin
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_gateway_spend"
down_revision = "0010_gateway_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing prices were entered without a currency; USD is the documented default.
    with op.batch_alter_table("gateway_deployments") as batch:
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default="USD"))
    with op.batch_alter_table("gateway_usage") as batch:
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default=""))
    # Calls answered before currencies existed were priced by deployments that are now USD.
    op.execute("UPDATE gateway_usage SET currency = 'USD' WHERE deployment <> ''")
    with op.batch_alter_table("gateway_key_policies") as batch:
        batch.add_column(sa.Column("models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
    op.create_table(
        "gateway_spend_budgets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("alerts", sa.JSON(), nullable=False),
        sa.UniqueConstraint("scope", "subject", "unit", name="uq_gateway_spend_budget"),
    )
    op.create_table(
        "gateway_spend_alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("budget_id", sa.Integer(), sa.ForeignKey("gateway_spend_budgets.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.UniqueConstraint("budget_id", "window", "threshold", name="uq_gateway_spend_alert"),
    )
    op.create_index("ix_gateway_spend_alerts_at", "gateway_spend_alerts", ["at"])
    op.create_index("ix_gateway_spend_alerts_budget_id", "gateway_spend_alerts", ["budget_id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_spend_alerts_budget_id", table_name="gateway_spend_alerts")
    op.drop_index("ix_gateway_spend_alerts_at", table_name="gateway_spend_alerts")
    op.drop_table("gateway_spend_alerts")
    op.drop_table("gateway_spend_budgets")
    # Plain ALTER TABLE … DROP COLUMN, never a rebuild that could cascade to rows pointing at these tables.
    for table, column in (("gateway_key_policies", "max_concurrency"), ("gateway_key_policies", "tokens_per_minute"),
                          ("gateway_key_policies", "models"), ("gateway_usage", "currency"),
                          ("gateway_deployments", "currency")):
        op.drop_column(table, column)
