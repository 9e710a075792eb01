"""Gateway administration (#15): a deployment or a model can be disabled on its own, and each server
process reports its circuits' transitions so the CLI, the API and the console show what servers see.

Revision ID: 0010_gateway_admin
Revises: 0009_gateway_routing
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_gateway_admin"
down_revision = "0009_gateway_routing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE, never a rebuild: with foreign keys on, dropping gateway_models to rebuild it
    # would cascade to every deployment.
    op.add_column("gateway_models", sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    # SQLite: AUTOINCREMENT so a deleted deployment's id (which circuits are keyed by) is never reused;
    # the table is rebuilt for it. PostgreSQL sequences never reuse ids anyway.
    with op.batch_alter_table("gateway_deployments", recreate="auto",
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    # No foreign key to the deployment: a process may report a transition just after the deployment
    # was deleted, and that late report must not fail (it is ignored, and removed with the next delete).
    op.create_table(
        "gateway_circuits",
        sa.Column("deployment_id", sa.Integer(), primary_key=True),
        sa.Column("process", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_circuits")
    with op.batch_alter_table("gateway_deployments") as batch:
        batch.drop_column("enabled")
    if op.get_bind().dialect.name == "sqlite":  # SQLite ≥ 3.35 drops a column in place: no cascading rebuild
        op.execute("ALTER TABLE gateway_models DROP COLUMN enabled")
    else:
        op.drop_column("gateway_models", "enabled")
