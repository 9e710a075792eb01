"""Data commons: datasets, versions, access requests, grants, sandbox queries, full-text search.

Revision ID: 0003_data
Revises: 0002_gateway
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_data"
down_revision = "0002_gateway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _datasets()
    _versions()
    _access()
    op.create_table(
        "data_queries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("parse_hash", sa.String(64), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("rows_out", sa.Integer(), nullable=False),
        sa.Column("cells_suppressed", sa.Integer(), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False, index=True),
    )
    _search()


def _datasets() -> None:
    op.create_table(
        "data_datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=False, index=True),
        sa.Column("licence", sa.String(100), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False, index=True),
        sa.Column("storage_jurisdiction", sa.String(2), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("spatial", sa.String(300), nullable=False),
        sa.Column("temporal_start", sa.Date(), nullable=True),
        sa.Column("temporal_end", sa.Date(), nullable=True),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("entity_column", sa.String(200), nullable=False),
        sa.Column("k_threshold", sa.Integer(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_data_datasets_name"),
    )


def _versions() -> None:
    op.create_table(
        "data_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("source_bytes", sa.BigInteger(), nullable=False),
        sa.Column("parquet_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("dataset_id", "number", name="uq_data_versions_number"),
    )


def _access() -> None:
    op.create_table(
        "data_access_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(320), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "data_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("data_access_requests.id"), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def _search() -> None:
    """Full-text search over the catalogue: an FTS5 table on SQLite, a GIN expression index on PostgreSQL."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE data_search USING fts5(body, tokenize='unicode61 remove_diacritics 2')")
    else:
        op.execute("CREATE INDEX ix_data_datasets_search ON data_datasets "
                   "USING gin (to_tsvector('simple', search_text))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE data_search")
    for table in ("data_queries", "data_grants", "data_access_requests", "data_versions", "data_datasets"):
        op.drop_table(table)
