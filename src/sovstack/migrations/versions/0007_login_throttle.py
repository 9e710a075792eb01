"""Login throttling: attempts counted per account and per client address in fixed windows, before the
password is checked (the per-user failure counter was read-modify-written and lost parallel guesses).

Revision ID: 0007_login_throttle
Revises: 0006_data_limits_airlock
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_login_throttle"
down_revision = "0006_data_limits_airlock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("key", "window", name="uq_login_throttle"),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
