"""Alert verdicts (an analyst's judgement of one alert: from the CLI, a closed ticket or the console; the alert's
content is the evidence table `alerts` of 0003_console) and the noise model's drift counts per tenant and day
(for the reports).

Revision ID: 0004_alert_verdicts
Revises: 0003_console
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.soar.models import JsonType, UTCDateTime

revision = "0004_alert_verdicts"
down_revision = "0003_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_verdicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("label", sa.Integer),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("incident_id", sa.String(64)),
        sa.Column("comment", sa.Text),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "alert_id", name="uq_alert_verdicts_alert"),
    )
    op.create_index("ix_alert_verdicts_at", "alert_verdicts", ["at"])
    op.create_table(
        "noise_drift",
        sa.Column("batch", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("out_of_scope", sa.Integer, nullable=False),
        sa.Column("novel_rules", sa.Integer, nullable=False),
        sa.Column("score_hist", JsonType, nullable=False),
    )
    op.create_index("ix_noise_drift_tenant_day", "noise_drift", ["tenant_id", "day"])


def downgrade() -> None:
    op.drop_table("noise_drift")
    op.drop_table("alert_verdicts")
