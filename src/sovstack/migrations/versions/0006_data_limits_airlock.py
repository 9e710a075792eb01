"""Data commons limits and the airlock: a privacy budget and daily query cap per grant, query counters
per person, exact results held for a steward's output check, and δ for thresholded releases of keys
that were not declared public.

Revision ID: 0006_data_limits_airlock
Revises: 0005_data_privacy
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_data_limits_airlock"
down_revision = "0005_data_privacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_datasets") as batch:
        batch.add_column(sa.Column("dp_delta_cap", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("data_privacy_ledger") as batch:
        batch.add_column(sa.Column("delta_spent", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("data_private_answers") as batch:
        batch.add_column(sa.Column("delta", sa.Float(), nullable=False, server_default="0"))
        batch.drop_constraint("uq_data_private_answers_question", type_="unique")
        batch.create_unique_constraint("uq_data_private_answers_question", [
            "user_id", "dataset_id", "version_sha256", "parse_hash", "epsilon", "delta"])
    with op.batch_alter_table("data_grants") as batch:
        batch.add_column(sa.Column("epsilon_budget", sa.Float(), nullable=True))
        batch.add_column(sa.Column("daily_queries", sa.Integer(), nullable=True))
    op.create_table(
        "data_query_quota",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("window", sa.String(80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("user_id", "window", name="uq_data_query_quota_window"),
    )
    op.create_table(
        "data_airlock",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("grant_id", sa.Integer(), sa.ForeignKey("data_grants.id"), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("version_sha256", sa.String(64), nullable=False),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("sql_sha256", sa.String(64), nullable=False),
        sa.Column("parse_hash", sa.String(64), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("released_rows", sa.JSON(), nullable=False),
        sa.Column("reviewed_by", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("data_airlock")
    op.drop_table("data_query_quota")
    with op.batch_alter_table("data_grants") as batch:
        batch.drop_column("daily_queries")
        batch.drop_column("epsilon_budget")
    with op.batch_alter_table("data_private_answers") as batch:
        batch.drop_constraint("uq_data_private_answers_question", type_="unique")
        batch.create_unique_constraint("uq_data_private_answers_question", [
            "user_id", "dataset_id", "version_sha256", "parse_hash", "epsilon"])
        batch.drop_column("delta")
    with op.batch_alter_table("data_privacy_ledger") as batch:
        batch.drop_column("delta_spent")
    with op.batch_alter_table("data_datasets") as batch:
        batch.drop_column("dp_delta_cap")
