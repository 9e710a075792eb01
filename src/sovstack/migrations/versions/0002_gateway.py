"""Gateway: logical models, deployments, key policies, budgets, counters, usage.

Revision ID: 0002_gateway
Revises: 0001_core
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_gateway"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("language_routing", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_gateway_models_name"),
    )
    _deployments()
    op.create_table(
        "gateway_key_policies",
        sa.Column("key_prefix", sa.String(32), primary_key=True),
        sa.Column("default_classification", sa.String(16), nullable=False),
        sa.Column("floor_classification", sa.String(16), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
    )
    op.create_table(
        "gateway_budgets",
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
    )
    op.create_table(
        "gateway_counters",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("name", "window", name="uq_gateway_counter"),
    )
    _usage()
    _transcripts()
    generation = op.create_table(
        "gateway_generation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(generation, [{"id": 1, "value": 0}])


def _transcripts() -> None:
    op.create_table(
        "gateway_org_logging",
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
    )
    op.create_table(
        "gateway_transcripts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("key_prefix", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
    )
    op.create_index("ix_gateway_transcripts_expires_at", "gateway_transcripts", ["expires_at"])
    op.create_index("ix_gateway_transcripts_organisation_id", "gateway_transcripts", ["organisation_id"])


def _deployments() -> None:
    op.create_table(
        "gateway_deployments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("gateway_models.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("hosting_jurisdiction", sa.String(2), nullable=False),
        sa.Column("operator_id", sa.Integer(), sa.ForeignKey("parties.id"), nullable=False),
        sa.Column("developer_id", sa.Integer(), sa.ForeignKey("parties.id"), nullable=False),
        sa.Column("licence", sa.String(100), nullable=False),
        sa.Column("open_weights", sa.Boolean(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("context_length", sa.Integer(), nullable=False),
        sa.Column("price_in", sa.Float(), nullable=False),
        sa.Column("price_out", sa.Float(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("withdrawn_reason", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_gateway_deployments_name"),
    )
    op.create_index("ix_gateway_deployments_model_id", "gateway_deployments", ["model_id"])


def _usage() -> None:
    op.create_table(
        "gateway_usage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("key_prefix", sa.String(32), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    for col in ("at", "key_prefix", "organisation_id", "model"):
        op.create_index(f"ix_gateway_usage_{col}", "gateway_usage", [col])


def downgrade() -> None:
    for table in ("gateway_generation", "gateway_transcripts", "gateway_org_logging", "gateway_usage",
                  "gateway_counters", "gateway_budgets", "gateway_key_policies", "gateway_deployments",
                  "gateway_models"):
        op.drop_table(table)
