"""Compute exchange: providers, offers, programmes, rounds, requests, reviews, allocations, usage, cut-offs.

Revision ID: 0004_compute
Revises: 0003_data
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_compute"
down_revision = "0003_data"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(16, 4)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(), nullable=False)


def upgrade() -> None:
    _supply()
    _programmes()
    _demand()
    _allocations()


def _supply() -> None:
    op.create_table(
        "compute_providers", _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("party_id", sa.Integer(), sa.ForeignKey("parties.id"), nullable=False, index=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=True, index=True),
        sa.Column("corporate_group", sa.String(200), nullable=False),
        sa.Column("datacentre_jurisdiction", sa.String(2), nullable=False),
        sa.Column("control_plane_jurisdiction", sa.String(2), nullable=False),
        _created(),
        sa.UniqueConstraint("name", name="uq_compute_providers_name"),
    )
    op.create_table(
        "compute_offers", _id(),
        sa.Column("provider_id", sa.Integer(), sa.ForeignKey("compute_providers.id"), nullable=False, index=True),
        sa.Column("gpu_type", sa.String(32), nullable=False),
        sa.Column("chip_vendor", sa.String(64), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("available_from", sa.Date(), nullable=False),
        sa.Column("available_until", sa.Date(), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("benchmark", sa.Text(), nullable=False),
        sa.Column("withdrawn_by", sa.Integer(), nullable=True),
        _created(),
    )


def _programmes() -> None:
    op.create_table(
        "compute_programmes", _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("budget", MONEY, nullable=False),
        sa.Column("subsidy_rate", sa.Float(), nullable=False),
        sa.Column("category_rates", sa.JSON(), nullable=False),
        sa.Column("eligible_kinds", sa.JSON(), nullable=False),
        sa.Column("eligible_jurisdictions", sa.JSON(), nullable=False),
        sa.Column("category_floor", sa.JSON(), nullable=False),
        sa.Column("category_ceiling", sa.JSON(), nullable=False),
        sa.Column("fast_track_gpu_hours", sa.Float(), nullable=False),
        sa.Column("caps", sa.JSON(), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("idle_days", sa.Integer(), nullable=False),
        sa.Column("gap_limit", sa.Float(), nullable=False),
        sa.Column("time_limit", sa.Float(), nullable=False),
        _created(),
        sa.UniqueConstraint("name", name="uq_compute_programmes_name"),
    )
    op.create_table(
        "compute_rounds", _id(),
        sa.Column("programme_id", sa.Integer(), sa.ForeignKey("compute_programmes.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("review_deadline", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("solved_at", sa.DateTime(), nullable=True),
        _created(),
        sa.UniqueConstraint("programme_id", "number", name="uq_compute_rounds_number"),
    )


def _demand() -> None:
    op.create_table(
        "compute_requests", _id(),
        sa.Column("programme_id", sa.Integer(), sa.ForeignKey("compute_programmes.id"), nullable=False, index=True),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("compute_rounds.id"), nullable=True, index=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("proposal", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("gpu_types", sa.JSON(), nullable=False),
        sa.Column("gpus_per_job", sa.Integer(), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("earliest_period", sa.Integer(), nullable=False),
        sa.Column("latest_period", sa.Integer(), nullable=False),
        sa.Column("data_classification", sa.String(16), nullable=False),
        sa.Column("fast_track", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        _created(),
    )
    op.create_table(
        "compute_reviews", _id(),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("compute_requests.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("reviewer_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        _created(),
        sa.UniqueConstraint("request_id", "reviewer_id", name="uq_compute_reviews_reviewer"),
    )


def _allocations() -> None:
    op.create_table(
        "compute_allocations", _id(),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("compute_requests.id"), nullable=False, index=True),
        sa.Column("offer_id", sa.Integer(), sa.ForeignKey("compute_offers.id"), nullable=False, index=True),
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("compute_rounds.id"), nullable=True, index=True),
        sa.Column("start_period", sa.Integer(), nullable=False),
        sa.Column("periods", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("subsidy", MONEY, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("used_gpu_hours", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        _created(),
    )
    op.create_table(
        "compute_usage", _id(),
        sa.Column("allocation_id", sa.Integer(), sa.ForeignKey("compute_allocations.id"), nullable=False, index=True),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("reported_by", sa.String(320), nullable=False),
        _created(),
        sa.UniqueConstraint("allocation_id", "reference", name="uq_compute_usage_reference"),
    )
    op.create_table(
        "compute_cutoffs", _id(),
        sa.Column("selector", sa.String(32), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("offers", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("undo", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        _created(),
        sa.Column("restored_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    for table in ("compute_cutoffs", "compute_usage", "compute_allocations", "compute_reviews", "compute_requests",
                  "compute_rounds", "compute_programmes", "compute_offers", "compute_providers"):
        op.drop_table(table)
