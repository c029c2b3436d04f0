"""Report statistics: alert_stats (per tenant, day, product, rule, source, asset, action) and funnel_stats.

Revision ID: 0002_alert_stats
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_alert_stats"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_stats",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.String(300), nullable=False),
        sa.Column("rule_name", sa.String(300), nullable=False),
        sa.Column("src_ip", sa.String(64)),
        sa.Column("asset", sa.String(300)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("raw", sa.Integer, nullable=False),
        sa.Column("intel", sa.Integer, nullable=False),
        sa.Column("suppressed", sa.Integer, nullable=False),
    )
    op.create_index("ix_alert_stats_batch", "alert_stats", ["batch"])
    op.create_index("ix_alert_stats_tenant_day", "alert_stats", ["tenant_id", "day"])
    op.create_table(
        "funnel_stats",
        sa.Column("batch", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("alerts_raw", sa.Integer, nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("suppressed", sa.Integer, nullable=False),
        sa.Column("incidents", sa.Integer, nullable=False),
        sa.Column("dead", sa.Integer, nullable=False),
    )
    op.create_index("ix_funnel_stats_tenant_day", "funnel_stats", ["tenant_id", "day"])


def downgrade() -> None:
    op.drop_table("funnel_stats")
    op.drop_table("alert_stats")
