"""Evidence (stored alerts, suppressed alerts, fused incident parts) and the analyst console (users, tokens,
sessions, failed logins, audit log); tickets indexed by update time for the console's change feed.

Revision ID: 0003_console
Revises: 0002_alert_stats
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.soar.models import JsonType, UTCDateTime

revision = "0003_console"
down_revision = "0002_alert_stats"
branch_labels = None
depends_on = None
_OPEN = "status <> 'closed' AND incident_status <> 'merged' AND acknowledged_at IS "
OPEN_PARTS = {"unacked": _OPEN + "NULL", "acked": _OPEN + "NOT NULL"}  # as pipeline.soar.models.OPEN_PARTS


def upgrade() -> None:
    op.create_index("ix_tickets_updated_at", "tickets", ["updated_at"])
    for name, where in OPEN_PARTS.items():  # the queue walks the open tickets by due time (of all tenants, or some)
        for suffix, cols in (("", []), ("_tenant", ["tenant_id"])):
            op.create_index(f"ix_tickets_open_{name}_due{suffix}", "tickets", [*cols, "sla_due", "id"],
                            postgresql_where=sa.text(where), sqlite_where=sa.text(where))
    op.create_table(
        "alerts",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("doc", JsonType, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
    )
    op.create_index("ix_alerts_tenant_time", "alerts", ["tenant_id", "time"])
    op.create_table(
        "incident_parts",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("incident_id", sa.String(64), primary_key=True),
        sa.Column("merged_into", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("doc", JsonType, nullable=False),
    )
    op.create_index("ix_incident_parts_merged_into", "incident_parts", ["merged_into"])
    op.create_table(
        "suppressed_alerts",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("contributions", JsonType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("decided_at", UTCDateTime),
    )
    op.create_index("ix_suppressed_tenant_time", "suppressed_alerts", ["tenant_id", "time"])
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenants", JsonType, nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    for name in ("console_tokens", "console_sessions"):
        columns: list[sa.Column] = [
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("user", sa.String(128), sa.ForeignKey("console_users.name", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("created_at", UTCDateTime, nullable=False),
        ]
        if name == "console_tokens":
            columns += [sa.Column("expires_at", UTCDateTime), sa.Column("last_used", UTCDateTime)]
        else:
            columns += [sa.Column("csrf", sa.String(64), nullable=False),
                     sa.Column("last_seen", UTCDateTime, nullable=False), sa.Column("flash", sa.Text)]
        op.create_table(name, *columns)
        op.create_index(f"ix_{name}_user", name, ["user"])
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_login_failures_key_at", "console_login_failures", ["key", "at"])
    op.create_table(
        "console_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(128)),
        sa.Column("target", sa.String(200)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("detail", JsonType),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"])
    op.create_index("ix_console_audit_tenant_at", "console_audit", ["tenant_id", "at"])


def downgrade() -> None:
    for name in ("console_audit", "console_login_failures", "console_sessions", "console_tokens", "console_users",
                 "suppressed_alerts", "incident_parts", "alerts"):
        op.drop_table(name)
    for name in OPEN_PARTS:
        for suffix in ("", "_tenant"):
            op.drop_index(f"ix_tickets_open_{name}_due{suffix}", "tickets")
    op.drop_index("ix_tickets_updated_at", "tickets")
