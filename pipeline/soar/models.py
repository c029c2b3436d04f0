"""SQLAlchemy 2 models of the SOAR store: tickets, their timeline and entities, playbook runs, pending merges,
escalation notices, leases.

The schema is created by Alembic (pipeline/migrations); these classes must stay in step with its revisions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from pipeline.redact import redact, redact_data
from pipeline.soar.lifecycle import STATUSES, TRANSITIONS, VERDICTS  # noqa: F401  (re-exported)

RUN_STATES = ("pending", "running", "waiting", "done", "failed", "denied")
_OPEN = "status <> 'closed' AND incident_status <> 'merged' AND acknowledged_at IS "
OPEN_PARTS = {"unacked": _OPEN + "NULL", "acked": _OPEN + "NOT NULL"}  # predicates of the queue's indexes

JsonType = JSON().with_variant(JSONB(), "postgresql")


class RedactedText(TypeDecorator[str]):
    """Text stored with the configured secrets redacted (pipeline/redact.py), whatever code path writes it."""

    impl: type[String] = Text  # RedactedString's is String (Text's base)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return redact(value) if value else value


class RedactedString(RedactedText):
    impl = String
    cache_ok = True


class RedactedJson(TypeDecorator[Any]):
    """JSON (JSONB on PostgreSQL) stored with the configured secrets redacted in every string inside."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return redact_data(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


def table(model: type[Base]) -> Table:
    """A model's Table (for Core statements; SQLAlchemy types `__table__` as any FromClause)."""
    return cast(Table, model.__table__)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("incident_id", name="uq_tickets_incident_id"),
        # the console's queue: open tickets by due time, unacknowledged and in work; all tenants' and per tenant
        *(Index(f"ix_tickets_open_{name}_due{suffix}", *cols, "sla_due", "id", postgresql_where=text(where),
                sqlite_where=text(where))
          for name, where in OPEN_PARTS.items() for suffix, cols in (("", ()), ("_tenant", ("tenant_id",)))),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(RedactedString(500))
    category: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(2), index=True)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    assignee: Mapped[str | None] = mapped_column(String(128))
    verdict: Mapped[str | None] = mapped_column(String(32))
    incident: Mapped[dict[str, Any]] = mapped_column(RedactedJson)
    incident_version: Mapped[int] = mapped_column(Integer, default=0)
    incident_status: Mapped[str] = mapped_column(String(16), default="open")
    sla_due: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)  # highest tier notified
    escalation_priority: Mapped[str | None] = mapped_column(String(2))  # priority at that escalation
    external: Mapped[dict[str, Any]] = mapped_column(RedactedJson, default=dict)  # channel -> external ref
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the console's change feed
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TimelineEvent(Base):
    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(24))  # created|update|step|note|status|escalation|approval|...
    actor: Mapped[str] = mapped_column(String(128), default="system")
    status: Mapped[str | None] = mapped_column(String(16))  # ok|failed|skipped|retry|waiting
    text: Mapped[str] = mapped_column(RedactedText, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(RedactedJson)


class TicketEntity(Base):
    """Entities of a ticket's incident (for related-incident look-ups) and one-shot markers."""

    __tablename__ = "ticket_entities"
    __table_args__ = (Index("ix_ticket_entities_value", "tenant_id", "value"),)

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(RedactedString(300), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))


class PlaybookRun(Base):
    __tablename__ = "playbook_runs"
    __table_args__ = (UniqueConstraint("ticket_id", "playbook", name="uq_run_ticket_playbook"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    playbook: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)  # index of the next step
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts of that step so far
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column(RedactedJson, default=dict)  # step id -> its result data
    approval: Mapped[dict[str, Any] | None] = mapped_column(RedactedJson)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PendingMerge(Base):
    """A merged incident whose survivor has no ticket yet: noted on the survivor's ticket when it opens."""

    __tablename__ = "pending_merges"

    survivor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(RedactedString(500))
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notice(Base):
    """An escalation notice to one channel (an outbox, pipeline/soar/notices.py): written in the escalation's
    transaction, claimed by the process that escalated; should that one stop before it is sent, a tick sends it."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(RedactedJson)  # tier, priority, reason
    status: Mapped[str] = mapped_column(String(16), index=True)  # sending | ok | failed | skipped
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lease(Base):
    """A named job that one process at a time may do (the SOAR clock: pipeline/soar/clock.py), held until
    `until`; another process takes it over once that has passed."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when this owner took it (kept while renewed)


class AlertVerdict(Base):
    """An analyst's verdict on one alert (`pipeline.soar.verdicts.record_verdict`). One row per (tenant, alert):
    a verdict given on the alert itself outranks one given on its whole incident (`incident_id` set: a closed
    ticket, `mdr verdict incident`); at the same level the latest counts. The alert's content is the store's
    evidence (`pipeline.soar.evidence.StoredAlert`), not copied here."""

    __tablename__ = "alert_verdicts"
    __table_args__ = (UniqueConstraint("tenant_id", "alert_id", name="uq_alert_verdicts_alert"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    alert_id: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(32))
    label: Mapped[int | None] = mapped_column(Integer)  # 1 attack, 0 benign, None (duplicate: no label)
    analyst: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))  # cli | ticket | console | unsuppress
    incident_id: Mapped[str | None] = mapped_column(String(64))  # the verdict was given on this whole incident
    comment: Mapped[str | None] = mapped_column(RedactedText)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
