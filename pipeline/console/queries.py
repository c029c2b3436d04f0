"""The console's reads. Every query here takes the asking `Principal` and filters on its tenants in SQL, so a
ticket, alert or suppressed alert of another tenant is never loaded: it is simply not found (404).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session

from pipeline.console.auth import Principal
from pipeline.console.redact import redact, text
from pipeline.report.data import VerdictRow, incidents, verdict_rows
from pipeline.schema import PRIORITIES
from pipeline.soar import evidence, verdicts
from pipeline.soar.evidence import StoredAlert, SuppressedAlert
from pipeline.soar.models import STATUSES, PlaybookRun, Ticket, TimelineEvent, utcnow
from pipeline.soar.playbooks import PlaybookSet

QUEUE_LIMIT = 200
Param = Annotated[str | None, Query(max_length=200)]
OPEN = "open"  # the queue's default status filter: every status but closed


def scoped(q: Any, who: Principal, col: Any = Ticket.tenant_id) -> Any:
    return q if who.tenants is None else q.where(col.in_(sorted(who.tenants)))


# ---- the queue ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Filters:
    tenant: str | None = None
    priority: str | None = None
    status: str = OPEN
    category: str | None = None
    assignee: str | None = None
    text: str | None = None

    @classmethod
    def of(cls, tenant: Param = None, priority: Param = None, status: Param = None, category: Param = None,
           assignee: Param = None, text: Param = None) -> Filters:
        """Filters from request parameters (a FastAPI dependency); values outside their choices are dropped
        (empty: no filter)."""
        def clean(v: str | None, n: int = 128) -> str | None:
            v = (v or "").strip()
            return v[:n] or None

        return cls(tenant=clean(tenant), priority=p if (p := clean(priority)) in PRIORITIES else None,
                   status=s if (s := clean(status)) in (*STATUSES, OPEN, "all") else OPEN,
                   category=clean(category, 32), assignee=clean(assignee), text=clean(text, 200))

    def params(self) -> dict[str, str]:
        return {k: v for k in ("tenant", "priority", "status", "category", "assignee", "text")
                if (v := getattr(self, k)) and not (k == "status" and v == OPEN)}


@dataclass(slots=True)
class QueueRow:
    """A ticket as the queue and the API list it (no incident snapshot)."""

    ticket_id: int
    incident_id: str
    tenant_id: str
    title: str
    priority: str
    category: str
    status: str
    assignee: str | None
    verdict: str | None
    sla_due: datetime
    breached: bool
    acknowledged: bool
    created_at: datetime
    updated_at: datetime
    sla_breached: bool = False  # escalated past its due time
    closed_at: datetime | None = None
    acknowledged_at: datetime | None = None


def row_of(t: Ticket, now: datetime | None = None) -> QueueRow:
    now = now or utcnow()
    return QueueRow(t.id, t.incident_id, t.tenant_id, t.title, t.priority, t.category, t.status, t.assignee,
                    t.verdict, t.sla_due, t.acknowledged_at is None and t.sla_due < now and t.status != "closed",
                    t.acknowledged_at is not None, t.created_at, t.updated_at, t.sla_breached, t.closed_at,
                    t.acknowledged_at)


def _const(v: str) -> Any:
    """A constant written into the SQL (so that PostgreSQL matches the queue's partial indexes)."""
    return literal(v, literal_execute=True)


def _queue_query(who: Principal, f: Filters, now: datetime) -> Any:
    q = scoped(select(), who).where(Ticket.incident_status != _const("merged"))
    if f.status == OPEN:
        q = q.where(Ticket.status != _const("closed"))
    elif f.status != "all":
        q = q.where(Ticket.status == f.status)
    if f.tenant:
        q = q.where(Ticket.tenant_id == f.tenant)
    if f.priority:
        q = q.where(Ticket.priority == f.priority)
    if f.category:
        q = q.where(Ticket.category == f.category)
    if f.assignee:
        q = q.where(Ticket.assignee.is_(None) if f.assignee == "-" else Ticket.assignee == f.assignee)
    if f.text:
        q = q.where(or_(Ticket.title.icontains(f.text, autoescape=True), Ticket.incident_id == f.text))
    return q


QUEUE_COLUMNS = (Ticket.id, Ticket.incident_id, Ticket.tenant_id, Ticket.title, Ticket.priority, Ticket.category,
                 Ticket.status, Ticket.assignee, Ticket.verdict, Ticket.sla_due, Ticket.sla_breached,
                 Ticket.acknowledged_at, Ticket.closed_at, Ticket.created_at, Ticket.updated_at)


COUNT_CAP = 500  # the queue counts its matches up to this many ("500+")


def queue(s: Session, who: Principal, f: Filters, now: datetime | None = None,
          limit: int = QUEUE_LIMIT) -> tuple[list[QueueRow], int]:
    """Tickets matching `f` in queue order, and how many match (counted up to COUNT_CAP).

    Queue order: first the breached ones (unacknowledged past their due time), then the unacknowledged ones by
    time left, then those in work (acknowledged, investigating, resolved), each by SLA due time. Each part is
    one ordered read that walks a partial index of the open tickets and stops at `limit` (no sort of every
    open ticket)."""
    now = now or utcnow()
    base = _queue_query(who, f, now)
    unacked = Ticket.acknowledged_at.is_(None)
    parts = [(and_(unacked, Ticket.sla_due < now), True), (and_(unacked, Ticket.sla_due >= now), False),
             (Ticket.acknowledged_at.is_not(None), False)]
    rows: list[QueueRow] = []
    for cond, breached in parts:
        q = base.add_columns(*QUEUE_COLUMNS).where(cond).order_by(Ticket.sla_due, Ticket.id).limit(limit - len(rows))
        rows += [QueueRow(r.id, r.incident_id, r.tenant_id, r.title, r.priority, r.category, r.status, r.assignee,
                          r.verdict, r.sla_due, breached and r.status != "closed", r.acknowledged_at is not None,
                          r.created_at, r.updated_at, r.sla_breached, r.closed_at, r.acknowledged_at)
                 for r in s.execute(q)]
        if len(rows) >= limit:
            break
    if len(rows) < limit:
        return rows, len(rows)
    total = 0
    for cond in (unacked, Ticket.acknowledged_at.is_not(None)):  # each counted on its partial index
        capped = base.add_columns(Ticket.id).where(cond).limit(COUNT_CAP - total).subquery()
        total += s.scalar(select(func.count()).select_from(capped)) or 0
    return rows, total


_lists: dict[tuple[str, str], tuple[float, list[str]]] = {}
LIST_TTL = 30.0  # seconds the filter choices (tenants, categories seen) are reused


def _distinct(s: Session, who: Principal, col: Any) -> list[str]:
    """Distinct values of a ticket column in `who`'s tenants, for the filter choices (cached briefly: a scan)."""
    key = (col.key, ",".join(sorted(who.tenants)) if who.tenants is not None else "*")
    hit = _lists.get(key)
    if hit and time.monotonic() - hit[0] < LIST_TTL:
        return hit[1]
    vals = list(s.scalars(scoped(select(col), who).distinct().order_by(col)))
    _lists[key] = (time.monotonic(), vals)
    return vals


def tenants(s: Session, who: Principal) -> list[str]:
    """The tenants `who` may see: all of theirs, or (an unrestricted admin) those with tickets."""
    return sorted(who.tenants) if who.tenants is not None else _distinct(s, who, Ticket.tenant_id)


def categories(s: Session, who: Principal) -> list[str]:
    return _distinct(s, who, Ticket.category)


# ---- one incident ------------------------------------------------------------------------------------------
def ticket(s: Session, who: Principal, ref: int | str) -> Ticket | None:
    """A ticket by number or incident id, if `who` may see its tenant."""
    q = select(Ticket)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and len(ref) < 12):
        q = q.where(Ticket.id == int(ref))
    else:
        q = q.where(Ticket.incident_id == str(ref)[:64])
    return s.scalars(scoped(q, who)).first()


@dataclass(slots=True)
class EventView:
    """A timeline event as shown (secrets masked; the stored row is left as it is)."""

    at: datetime
    kind: str
    actor: str
    status: str | None
    text: str
    data: dict[str, Any] | None


@dataclass(slots=True)
class StepView:
    id: str
    action: str
    status: str  # done state from the run's context, or pending / waiting
    detail: str
    data: dict[str, Any]


@dataclass(slots=True)
class RunView:
    id: int
    playbook: str
    status: str
    step: int
    steps: list[StepView]
    approval: dict[str, Any] | None
    updated_at: datetime


@dataclass(slots=True)
class FusedPart:
    incident_id: str
    title: str | None
    alerts: int
    status: str | None
    visible: bool


@dataclass(slots=True)
class IncidentView:
    ticket: Ticket
    incident: dict[str, Any]
    alerts: list[StoredAlert]
    alerts_total: int
    alert_verdicts: dict[str, tuple[str, str, datetime]]  # alert id -> (verdict, analyst, when)
    timeline: list[EventView]
    runs: list[RunView]
    fused: list[FusedPart]
    assets: list[dict[str, Any]]
    matched: dict[str, list[str]] = field(default_factory=dict)  # alert id -> use-case titles it matched


def incident(s: Session, who: Principal, ref: str, playbooks: PlaybookSet | None = None) -> IncidentView | None:
    t = ticket(s, who, ref)
    if t is None:
        return None
    inc = dict(t.incident or {})
    ids = list(inc.get("alert_ids", []))
    alerts = evidence.alerts_of(s, t.tenant_id, ids)
    timeline = [EventView(e.at, e.kind, e.actor, e.status, text(e.text), redact(e.data) if e.data else None)
                for e in s.scalars(select(TimelineEvent).where(TimelineEvent.ticket_id == t.id)
                                   .order_by(TimelineEvent.id))]
    runs = [_run_view(r, playbooks) for r in
            s.scalars(select(PlaybookRun).where(PlaybookRun.ticket_id == t.id).order_by(PlaybookRun.id))]
    return IncidentView(t, inc, alerts, len(ids), _alert_verdicts(s, t.tenant_id, alerts), timeline, runs,
                        _fused(s, t, inc), _assets(inc, alerts), _matched(inc))


def _alert_verdicts(s: Session, tenant: str, alerts: list[StoredAlert]) -> dict[str, tuple[str, str, datetime]]:
    """alert id -> (verdict, analyst, when) of the shown alerts: the store's alert verdicts (an alert's own, else
    its incident's), as `mdr model retrain` learns them."""
    return {aid: (v.verdict, v.analyst, v.at)
            for aid, v in verdicts.of_alerts(s, tenant, [a.alert_id for a in alerts]).items()}


def _matched(inc: dict[str, Any]) -> dict[str, list[str]]:
    """alert id -> the titles of the use cases it matched (from the explanation)."""
    matched: dict[str, list[str]] = defaultdict(list)
    for ex in inc.get("explanation", []):
        for aid in ex.get("alert_ids", []):
            matched[aid].append(ex.get("title") or ex.get("use_case", ""))
    return dict(matched)


@dataclass(slots=True)
class PartView:
    """An incident fused into another: its last state and alerts, and the survivor's ticket."""

    incident: dict[str, Any]
    tenant_id: str
    survivor: Ticket | None
    alerts: list[StoredAlert]
    alerts_total: int
    alert_verdicts: dict[str, tuple[str, str, datetime]]
    assets: list[dict[str, Any]]
    matched: dict[str, list[str]]


def part(s: Session, who: Principal, ref: str) -> PartView | None:
    p = evidence.part(s, who.tenants, str(ref)[:64])
    if p is None:
        return None
    inc = dict(p.doc)
    ids = list(inc.get("alert_ids", []))
    alerts = evidence.alerts_of(s, p.tenant_id, ids)
    survivor = s.scalars(select(Ticket).where(Ticket.tenant_id == p.tenant_id,
                                              Ticket.incident_id == p.merged_into)).first()
    return PartView(inc, p.tenant_id, survivor, alerts, len(ids), _alert_verdicts(s, p.tenant_id, alerts),
                    _assets(inc, alerts), _matched(inc))


def _fused(s: Session, t: Ticket, inc: dict[str, Any]) -> list[FusedPart]:
    """The incidents fused into `t`'s: title and fate from their own ticket, else from the stored part."""
    ids = list(inc.get("fused_from", []))
    if not ids:
        return []
    tickets = {r.incident_id: r for r in s.execute(
        select(Ticket.incident_id, Ticket.title, Ticket.status)
        .where(Ticket.tenant_id == t.tenant_id, Ticket.incident_id.in_(ids)))}
    parts = {r.incident_id: r.doc.get("title") for r in s.scalars(
        select(evidence.FusedPart).where(evidence.FusedPart.tenant_id == t.tenant_id,
                                         evidence.FusedPart.incident_id.in_(ids)))}
    counts = inc.get("fused_counts", {})
    return [FusedPart(p, tickets[p].title if p in tickets else parts.get(p), int(counts.get(p, 0)),
                      tickets[p].status if p in tickets else None, p in tickets or p in parts) for p in ids]


def _assets(inc: dict[str, Any], alerts: list[StoredAlert]) -> list[dict[str, Any]]:
    """The incident's asset and every asset its alerts point at (by name), with their criticality."""
    out: dict[str, dict[str, Any]] = {}
    for a in [inc.get("asset"), *(x.doc.get("asset") for x in alerts)]:
        if a and a.get("name") and a["name"] not in out:
            out[a["name"]] = a
    return list(out.values())


def _run_view(r: PlaybookRun, playbooks: PlaybookSet | None) -> RunView:
    ctx = redact(r.context or {})
    pb = playbooks.get(r.playbook) if playbooks else None
    waiting = (r.approval or {}).get("step") if r.status == "waiting" else None
    steps: list[StepView] = []
    names = [(st.id, st.action) for st in pb.steps] if pb else [(k, str(v.get("action", ""))) for k, v in ctx.items()]
    for i, (sid, action) in enumerate(names):
        res = ctx.get(sid) or {}
        status = res.get("status") or ("waiting" if sid == waiting else ("next" if i == r.step else "pending"))
        detail = text(str(res.get("detail", "") or ""))
        data = {k: v for k, v in res.items() if k not in ("status", "action", "detail")}
        steps.append(StepView(sid, action, status, detail, data))
    return RunView(r.id, r.playbook, r.status, r.step, steps, redact(r.approval) if r.approval else None, r.updated_at)


def alert(s: Session, who: Principal, alert_id: str) -> StoredAlert | None:
    return evidence.alert(s, who.tenants, alert_id[:64])


def ticket_of_alert(s: Session, t_tenant: str, alert_id: str, ticket_id: int | None) -> Ticket | None:
    """The ticket (of the alert's tenant) the alert is judged from, when one is named."""
    if ticket_id is None:
        return None
    return s.scalars(select(Ticket).where(Ticket.id == ticket_id, Ticket.tenant_id == t_tenant)).first()


# ---- suppressed alerts -------------------------------------------------------------------------------------
def suppressed(s: Session, who: Principal, tenant: str, status: str | None = "suppressed", limit: int = 200,
               offset: int = 0) -> list[tuple[SuppressedAlert, dict[str, Any]]]:
    if not who.sees(tenant):
        return []
    return evidence.suppressed_of(s, tenant, status, limit, offset)


def suppressed_one(s: Session, who: Principal, alert_id: str) -> SuppressedAlert | None:
    q = scoped(select(SuppressedAlert).where(SuppressedAlert.alert_id == alert_id[:64]), who,
               SuppressedAlert.tenant_id)
    return s.scalars(q.limit(1)).first()


# ---- use cases ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class UseCaseStat:
    incidents: int = 0
    alerts: int = 0
    by_tenant: Counter[str] = field(default_factory=Counter)
    tune: list[tuple[str, VerdictRow]] = field(default_factory=list)  # (tenant, verdict row needing tuning)


def usecase_stats(s: Session, who: Principal, days: int = 7, now: datetime | None = None) -> dict[str, UseCaseStat]:
    """Per use case id: incidents raised and alerts matched in the last `days` days (by ticket creation), in the
    tenants `who` sees; and the tenants whose report flags it for tuning (false-positive rate over the
    same days, as `mdr report` computes it)."""
    now = now or utcnow()
    since = now - timedelta(days=days)
    stats: dict[str, UseCaseStat] = defaultdict(UseCaseStat)
    q = scoped(select(Ticket.tenant_id, Ticket.incident), who).where(
        Ticket.created_at >= since, Ticket.incident_status != "merged")
    seen: set[str] = set()
    for tenant, inc in s.execute(q):
        seen.add(tenant)
        for ex in (inc or {}).get("explanation", []):
            st = stats[ex.get("use_case", "")]
            st.incidents += 1
            st.alerts += len(ex.get("alert_ids", []))
            st.by_tenant[tenant] += 1
    for tenant in sorted(seen):
        for row in verdict_rows(incidents(s, tenant, since, now + timedelta(seconds=1), now, by=Ticket.created_at)):
            if row.needs_tuning:
                stats[row.use_case].tune.append((tenant, row))
    return dict(stats)


# ---- the change feed ---------------------------------------------------------------------------------------
def changed_since(s: Session, since: datetime, limit: int = 1000) -> list[tuple[int, str, datetime]]:
    """(ticket id, tenant, updated_at) of the tickets updated at or after `since`, oldest first."""
    q = (select(Ticket.id, Ticket.tenant_id, Ticket.updated_at).where(Ticket.updated_at >= since)
         .order_by(Ticket.updated_at, Ticket.id).limit(limit))
    return [(r[0], r[1], r[2]) for r in s.execute(q)]
