"""Data commons privacy: differential-privacy settings per dataset, each person's spent budget, cached
answers, the query's SQL hash and spend, and an index of queries by dataset for stewards.

Revision ID: 0005_data_privacy
Revises: 0004_compute
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_data_privacy"
down_revision = "0004_compute"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_datasets") as batch:
        batch.add_column(sa.Column("dp_epsilon_cap", sa.Float(), nullable=False, server_default="1.0"))
        batch.add_column(sa.Column("dp_max_rows_per_entity", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("dp_bounds", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("dp_keys", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("data_queries") as batch:
        batch.add_column(sa.Column("sql_sha256", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("epsilon", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "data_query_datasets",
        sa.Column("query_id", sa.Integer(), sa.ForeignKey("data_queries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_data_query_datasets_dataset", "data_query_datasets", ["dataset_id", "query_id"])
    op.create_table(
        "data_privacy_ledger",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.UniqueConstraint("user_id", "dataset_id", name="uq_data_privacy_ledger_person"),
    )
    op.create_table(
        "data_private_answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version_sha256", sa.String(64), nullable=False),
        sa.Column("parse_hash", sa.String(64), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "dataset_id", "version_sha256", "parse_hash", "epsilon",
                            name="uq_data_private_answers_question"),
    )


def downgrade() -> None:
    op.drop_table("data_private_answers")
    op.drop_table("data_privacy_ledger")
    op.drop_index("ix_data_query_datasets_dataset", table_name="data_query_datasets")
    op.drop_table("data_query_datasets")
    with op.batch_alter_table("data_queries") as batch:
        for column in ("cached", "epsilon", "sql_sha256"):
            batch.drop_column(column)
    with op.batch_alter_table("data_datasets") as batch:
        for column in ("dp_keys", "dp_bounds", "dp_max_rows_per_entity", "dp_epsilon_cap"):
            batch.drop_column(column)
