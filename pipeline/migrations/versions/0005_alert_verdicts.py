"""Alert verdicts (an analyst's judgement of one alert: from the CLI, a closed ticket or the console; the alert's
content is the evidence table `alerts` of 0003_console) and the noise model's drift counts per tenant and day
(for the reports).

The verdicts a store already holds are carried over (`backfill`): every ticket closed with a verdict gives its
incident's alerts that verdict (an incident verdict, by the analyst who closed it), and every console alert
verdict and release of a suppressed alert in the audit log gives its alert its own verdict (which outranks an
incident's; at the same level the latest counts), as `pipeline.soar.verdicts.record_verdict` would have.

Revision ID: 0005_alert_verdicts
Revises: 0004_soar_clock
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from pipeline.soar.models import JsonType, UTCDateTime

revision = "0005_alert_verdicts"
down_revision = "0004_soar_clock"
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
    backfill(op.get_bind())


# As of this revision (a migration does not follow later code): verdict -> training label.
LABELS = {"true_positive": 1, "false_positive": 0, "benign": 0, "duplicate": None}
_tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("tenant_id", sa.String),
                    sa.column("incident_id", sa.String), sa.column("status", sa.String),
                    sa.column("verdict", sa.String), sa.column("incident", sa.JSON),
                    sa.column("closed_at", UTCDateTime))
_timeline = sa.table("timeline", sa.column("ticket_id", sa.Integer), sa.column("kind", sa.String),
                     sa.column("actor", sa.String), sa.column("data", sa.JSON), sa.column("id", sa.Integer))
_audit = sa.table("console_audit", sa.column("id", sa.Integer), sa.column("at", UTCDateTime),
                  sa.column("actor", sa.String), sa.column("action", sa.String), sa.column("tenant_id", sa.String),
                  sa.column("target", sa.String), sa.column("outcome", sa.String), sa.column("detail", sa.JSON))
_verdicts = sa.table("alert_verdicts", sa.column("tenant_id", sa.String), sa.column("alert_id", sa.String),
                     sa.column("verdict", sa.String), sa.column("label", sa.Integer), sa.column("analyst", sa.String),
                     sa.column("source", sa.String), sa.column("incident_id", sa.String),
                     sa.column("comment", sa.Text), sa.column("at", UTCDateTime))


def backfill(conn: sa.Connection) -> int:
    """Alert verdicts of the tickets closed with a verdict and of the console's audit log; returns the rows."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    closers = {}
    for tid, actor, data in conn.execute(sa.select(_timeline.c.ticket_id, _timeline.c.actor, _timeline.c.data)
                                         .where(_timeline.c.kind == "status").order_by(_timeline.c.id)):
        if isinstance(data, dict) and data.get("to") == "closed":
            closers[tid] = actor
    q = (sa.select(_tickets).where(_tickets.c.status == "closed", _tickets.c.verdict.in_(list(LABELS)))
         .order_by(_tickets.c.closed_at, _tickets.c.id))
    for t in conn.execute(q):
        for aid in (t.incident or {}).get("alert_ids", []):
            rows[(t.tenant_id, str(aid))] = _row(t.tenant_id, str(aid), t.verdict, closers.get(t.id, "unknown"),
                                                  "ticket", t.closed_at, t.incident_id)
    q = (sa.select(_audit).where(_audit.c.outcome == "ok", _audit.c.action.in_(("alert_verdict", "unsuppress")),
                                 _audit.c.target.like("alert:%"), _audit.c.tenant_id.is_not(None))
         .order_by(_audit.c.at, _audit.c.id))
    for e in conn.execute(q):
        verdict = "true_positive" if e.action == "unsuppress" else (e.detail or {}).get("verdict")
        if verdict in LABELS:
            aid = e.target.removeprefix("alert:")
            rows[(e.tenant_id, aid)] = _row(e.tenant_id, aid, verdict, e.actor,
                                            "unsuppress" if e.action == "unsuppress" else "console", e.at, None)
    values = list(rows.values())
    for i in range(0, len(values), 500):
        conn.execute(_verdicts.insert(), values[i:i + 500])
    return len(values)


def _row(tenant: str, alert_id: str, verdict: str, analyst: str, source: str, at: datetime | None,
         incident_id: str | None) -> dict[str, Any]:
    return {"tenant_id": tenant, "alert_id": alert_id, "verdict": verdict, "label": LABELS[verdict],
            "analyst": analyst, "source": source, "incident_id": incident_id, "comment": None,
            "at": at or datetime.now().astimezone()}


def downgrade() -> None:
    op.drop_table("noise_drift")
    op.drop_table("alert_verdicts")
