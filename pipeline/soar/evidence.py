"""Evidence kept beside the tickets: the normalized alerts (with their raw record), the alerts the noise
classifier held back, and the incidents fused into others (their last state: title, explanation, alerts), so
that an analyst can read why an incident exists, follow each fused part and audit the noise model.

Written by the adapters that write tickets (`mdr replay` through `handle_replay`, before the tickets; the
worker with `--db`, right after them), as an upsert keyed by (tenant, alert id): a replay, a redelivery or a
representative whose duplicate count grew lands on one row. Configured secrets are redacted, as in
everything the store holds. Suppressed alerts are inserted once; an analyst's decision on one (`unsuppress`)
is kept. Every read takes the tenant: nothing here answers across tenants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Float, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from pipeline.redact import redact, redact_data
from pipeline.schema import Alert, Incident, Suppressed, to_builtins, utc
from pipeline.soar import db
from pipeline.soar.models import Base, JsonType, UTCDateTime, utcnow

MAX_ALERTS_SHOWN = 500  # alerts of one incident read at once (an incident holds up to 10,000 ids)


class StoredAlert(Base):
    """One normalized alert (a dedup representative: `count` alerts), its fields as JSON and its raw record."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_tenant_time", "tenant_id", "time"),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    doc: Mapped[dict[str, Any]] = mapped_column(JsonType)  # the alert without `raw`
    raw: Mapped[str] = mapped_column(Text, default="")


class SuppressedAlert(Base):
    """An alert the noise classifier suppressed: score, threshold, model, contributions, and its fate."""

    __tablename__ = "suppressed_alerts"
    __table_args__ = (Index("ix_suppressed_tenant_time", "tenant_id", "time"),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(128))
    contributions: Mapped[dict[str, float]] = mapped_column(JsonType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="suppressed")  # suppressed | unsuppressed
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FusedPart(Base):
    """An incident merged into another (status "merged"): its last state, which the survivor only summarizes."""

    __tablename__ = "incident_parts"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merged_into: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    doc: Mapped[dict[str, Any]] = mapped_column(JsonType)


def _alert_row(a: Alert) -> dict[str, Any]:
    doc = to_builtins(a)
    raw = doc.pop("raw", "")
    return {"tenant_id": a.tenant_id, "alert_id": a.alert_id, "time": utc(a.time), "count": a.count,
            "doc": redact_data(doc), "raw": redact(raw)}


def record(store: Any, alerts: Iterable[Alert], suppressed: Iterable[Suppressed] = (),
           incidents: Iterable[Incident] = ()) -> int:
    """Upsert `alerts`, the alerts of `suppressed` (their verdict state kept) and the merged ones among
    `incidents` (the newest version wins); returns the alerts written. `store`: a TicketStore (or anything
    with `tx()`)."""
    rows = {(a.tenant_id, a.alert_id): _alert_row(a) for a in alerts}
    held = {(s.alert.tenant_id, s.alert.alert_id): s for s in suppressed}
    for key, s in held.items():
        rows.setdefault(key, _alert_row(s.alert))
    parts: dict[tuple[str, str], Incident] = {}
    for inc in incidents:
        key = (inc.tenant_id, inc.incident_id)
        if inc.status == "merged" and inc.merged_into and (key not in parts or parts[key].version <= inc.version):
            parts[key] = inc
    if not rows and not parts:
        return 0
    srows = [{"tenant_id": s.alert.tenant_id, "alert_id": s.alert.alert_id, "time": utc(s.alert.time),
              "score": float(s.score), "threshold": float(s.threshold), "model_version": s.model_version[:128],
              "reason": s.reason[:128], "contributions": redact_data(dict(s.contributions)), "status": "suppressed"}
             for s in held.values()]
    ordered = [rows[k] for k in sorted(rows)]  # one lock order for concurrent writers
    prows = [{"tenant_id": i.tenant_id, "incident_id": i.incident_id, "merged_into": i.merged_into,
              "version": i.version, "doc": redact_data(to_builtins(i))} for _, i in sorted(parts.items())]
    with store.tx() as s:
        if ordered:
            db.upsert(s, StoredAlert, ordered, ["tenant_id", "alert_id"], ["time", "count", "doc", "raw"])
        if prows:
            db.upsert(s, FusedPart, prows, ["tenant_id", "incident_id"], ["merged_into", "version", "doc"])
        if srows:
            db.insert_ignore(s, SuppressedAlert, sorted(srows, key=lambda r: (r["tenant_id"], r["alert_id"])),
                             ["tenant_id", "alert_id"])
    return len(rows)


# ---- reads (always for one tenant, or a given set of tenants) ------------------------------------------------
def alerts_of(s: Session, tenant: str, alert_ids: Sequence[str], limit: int = MAX_ALERTS_SHOWN) -> list[StoredAlert]:
    """The stored alerts among `alert_ids` of `tenant` (the first `limit` ids), in time order; without raw."""
    ids = list(alert_ids[:limit])
    if not ids:
        return []
    cols = (StoredAlert.tenant_id, StoredAlert.alert_id, StoredAlert.time, StoredAlert.count, StoredAlert.doc)
    q = select(*cols).where(StoredAlert.tenant_id == tenant, StoredAlert.alert_id.in_(ids))
    return [StoredAlert(tenant_id=r[0], alert_id=r[1], time=r[2], count=r[3], doc=r[4], raw="")
            for r in s.execute(q.order_by(StoredAlert.time, StoredAlert.alert_id))]


def as_alert(doc: dict[str, Any], raw: str = "") -> Alert:
    """The `Alert` of a stored alert's fields (e.g. to learn from an analyst's verdict on it)."""
    return msgspec.convert({**doc, "raw": raw}, Alert)


def tenant_alerts(s: Session, tenant: str) -> list[Alert]:
    """Every stored alert of `tenant`, in time order, without raw records."""
    q = select(StoredAlert.doc).where(StoredAlert.tenant_id == tenant).order_by(StoredAlert.time, StoredAlert.alert_id)
    return [as_alert(doc) for doc in s.scalars(q)]


def alert(s: Session, tenants: Iterable[str] | None, alert_id: str) -> StoredAlert | None:
    """One stored alert by id, if it belongs to one of `tenants` (None: any tenant)."""
    q = select(StoredAlert).where(StoredAlert.alert_id == alert_id)
    if tenants is not None:
        q = q.where(StoredAlert.tenant_id.in_(list(tenants)))
    return s.scalars(q.limit(1)).first()


def part(s: Session, tenants: Iterable[str] | None, incident_id: str) -> FusedPart | None:
    """A fused part by incident id, if it belongs to one of `tenants` (None: any tenant)."""
    q = select(FusedPart).where(FusedPart.incident_id == incident_id)
    if tenants is not None:
        q = q.where(FusedPart.tenant_id.in_(list(tenants)))
    return s.scalars(q.limit(1)).first()


def suppressed_of(s: Session, tenant: str, status: str | None = "suppressed", limit: int = 200,
                  offset: int = 0) -> list[tuple[SuppressedAlert, dict[str, Any]]]:
    """A tenant's suppressed alerts, newest first, each with its alert's fields (no raw)."""
    q = (select(SuppressedAlert, StoredAlert.doc)
         .join(StoredAlert, (StoredAlert.tenant_id == SuppressedAlert.tenant_id)
               & (StoredAlert.alert_id == SuppressedAlert.alert_id), isouter=True)
         .where(SuppressedAlert.tenant_id == tenant))
    if status:
        q = q.where(SuppressedAlert.status == status)
    q = q.order_by(SuppressedAlert.time.desc(), SuppressedAlert.alert_id).limit(limit).offset(offset)
    return [(row, doc or {}) for row, doc in s.execute(q)]


def unsuppress(store: Any, tenant: str, alert_id: str, actor: str, now: datetime | None = None) -> bool:
    """Mark a suppressed alert as released by `actor` (once); False when it is not (or no longer) suppressed."""
    with store.tx() as s:
        res = s.execute(update(SuppressedAlert)
                        .where(SuppressedAlert.tenant_id == tenant, SuppressedAlert.alert_id == alert_id,
                               SuppressedAlert.status == "suppressed")
                        .values(status="unsuppressed", decided_by=actor, decided_at=now or utcnow()))
        return res.rowcount == 1
