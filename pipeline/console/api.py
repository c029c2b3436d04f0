"""The JSON API (`/api/...`), documented by the OpenAPI schema FastAPI builds from these models and served at
/api/openapi.json. Same reads (`queries`) and writes (`actions`) as the pages: tenant-scoped (another tenant's
object answers 404), role-checked (a viewer's write answers 403), audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from pipeline.console import health, queries
from pipeline.console.actions import NotFound
from pipeline.console.deps import Auth, Console, check_csrf, client_of, require
from pipeline.console.queries import QueueRow
from pipeline.console.redact import redact
from pipeline.soar.models import Ticket

router = APIRouter(prefix="/api", tags=["console"])
Verdict = Literal["true_positive", "false_positive", "benign", "duplicate"]
AlertVerdict = Literal["true_positive", "false_positive"]


class Me(BaseModel):
    name: str
    role: Literal["admin", "analyst", "viewer"]
    tenants: list[str] | None = Field(description="null: every tenant")
    csrf: str | None = Field(None, description="send as X-CSRF-Token on writes made with the session cookie")


class QueueOut(BaseModel):
    total: int = Field(description=f"matching incidents, counted up to {queries.COUNT_CAP}")
    incidents: list[QueueRow]


class AlertOut(BaseModel):
    alert_id: str
    time: datetime
    count: int
    fields: dict[str, Any] = Field(description="the normalized alert")
    raw: str | None = Field(None, description="the product's raw record (with raw=true)")
    verdict: str | None = Field(None, description="the alert's verdict in the store (its own, else its incident's)")


class EventOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    status: str | None
    text: str
    data: dict[str, Any] | None = None


class RunOut(BaseModel):
    id: int
    playbook: str
    status: str
    step: int
    steps: list[dict[str, Any]]
    approval: dict[str, Any] | None


class IncidentOut(BaseModel):
    ticket: QueueRow
    incident: dict[str, Any] = Field(description="the incident as the pipeline emitted it (its latest version)")
    alerts: list[AlertOut]
    alerts_total: int = Field(description="alert ids of the incident (alerts lists at most 500)")
    timeline: list[EventOut]
    playbook_runs: list[RunOut]


class CloseIn(BaseModel):
    verdict: Verdict
    note: str | None = Field(None, max_length=4000)


class AssignIn(BaseModel):
    assignee: str = Field(min_length=1, max_length=128)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class StatusIn(BaseModel):
    status: Literal["acknowledged", "investigating", "resolved"]


class DecisionIn(BaseModel):
    comment: str | None = Field(None, max_length=4000)


class AlertVerdictIn(BaseModel):
    verdict: AlertVerdict
    note: str | None = Field(None, max_length=4000)
    ticket: str | None = Field(None, max_length=64, description="the ticket (number or incident id) it is judged "
                                                                 "from; noted on its timeline")


class Done(BaseModel):
    ok: bool = True
    ticket: QueueRow | None = None
    verdicts_file: str | None = None
    runs: list[int] | None = None


class SuppressedOut(BaseModel):
    alert_id: str
    tenant_id: str
    time: datetime
    score: float
    threshold: float
    model_version: str
    reason: str
    contributions: dict[str, float]
    status: str
    fields: dict[str, Any]


def _c(request: Request) -> Console:
    return request.app.state.console


def _write(request: Request) -> tuple[Console, Auth]:
    a = require(request)
    check_csrf(request, a, request.headers.get("x-csrf-token"))
    return _c(request), a


def _ticket(t: Ticket) -> QueueRow:
    return queries.row_of(t)


@router.get("/me", response_model=Me)
def me(request: Request) -> Me:
    a = require(request)
    return Me(name=a.who.name, role=a.who.role,  # type: ignore[arg-type]  # one of ROLES; pydantic checks it
              tenants=None if a.who.tenants is None else sorted(a.who.tenants),
              csrf=a.session.csrf if a.session else None)


@router.get("/incidents", response_model=QueueOut, summary="The queue: incidents by SLA (breached first)")
def list_incidents(request: Request, f: Annotated[queries.Filters, Depends(queries.Filters.of)],
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> QueueOut:
    """Filters: tenant, status (open by default, a ticket status, or all), priority, category, assignee (- for
    none), text (in the title, or an incident id)."""
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        rows, total = queries.queue(s, a.who, f, limit=limit)
    return QueueOut(total=total, incidents=rows)


@router.get("/incidents/{incident_id}", response_model=IncidentOut,
            summary="An incident with its ticket, alerts, timeline and playbook runs")
def get_incident(request: Request, incident_id: str, raw: bool = True) -> IncidentOut:
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        v = queries.incident(s, a.who, incident_id, c.playbooks)
        if v is None:
            raise NotFound(f"no incident {incident_id}")
        raws = {}
        if raw and v.alerts:
            from pipeline.soar.evidence import StoredAlert

            q = select(StoredAlert.alert_id, StoredAlert.raw).where(
                StoredAlert.tenant_id == v.ticket.tenant_id, StoredAlert.alert_id.in_([x.alert_id for x in v.alerts]))
            raws = {aid: text for aid, text in s.execute(q)}
    return IncidentOut(
        ticket=_ticket(v.ticket), incident=v.incident, alerts_total=v.alerts_total,
        alerts=[AlertOut(alert_id=x.alert_id, time=x.time, count=x.count, fields=x.doc, raw=raws.get(x.alert_id),
                         verdict=v.alert_verdicts[x.alert_id][0] if x.alert_id in v.alert_verdicts else None)
                for x in v.alerts],
        timeline=[EventOut(at=e.at, kind=e.kind, actor=e.actor, status=e.status, text=e.text, data=e.data)
                  for e in v.timeline],
        playbook_runs=[RunOut(id=r.id, playbook=r.playbook, status=r.status, step=r.step,
                              steps=[{"id": st.id, "action": st.action, "status": st.status, "detail": st.detail}
                                     for st in r.steps], approval=r.approval) for r in v.runs])


@router.post("/tickets/{id}/ack", response_model=Done, summary="Acknowledge a ticket")
def api_ack(request: Request, id: str) -> Done:
    c, a = _write(request)
    return Done(ticket=_ticket(c.actions.acknowledge(a.who, id, client_of(request))))


@router.post("/tickets/{id}/close", response_model=Done, summary="Close a ticket with a verdict")
def api_close(request: Request, id: str, body: CloseIn) -> Done:
    c, a = _write(request)
    t = c.actions.close(a.who, id, body.verdict, body.note, client_of(request))
    return Done(ticket=_ticket(t))


@router.post("/tickets/{id}/assign", response_model=Done, summary="Assign a ticket")
def api_assign(request: Request, id: str, body: AssignIn) -> Done:
    c, a = _write(request)
    return Done(ticket=_ticket(c.actions.assign(a.who, id, body.assignee, client_of(request))))


@router.post("/tickets/{id}/note", response_model=Done, summary="Add a note to a ticket's timeline")
def api_note(request: Request, id: str, body: NoteIn) -> Done:
    c, a = _write(request)
    return Done(ticket=_ticket(c.actions.note(a.who, id, body.text, client_of(request))))


@router.post("/tickets/{id}/status", response_model=Done, summary="Move a ticket to another status")
def api_status(request: Request, id: str, body: StatusIn) -> Done:
    c, a = _write(request)
    return Done(ticket=_ticket(c.actions.set_status(a.who, id, body.status, client_of(request))))


@router.post("/tickets/{id}/approve", response_model=Done, summary="Approve the playbook step waiting on a ticket")
def api_approve(request: Request, id: str, body: DecisionIn) -> Done:
    c, a = _write(request)
    return Done(runs=c.actions.decide(a.who, id, True, body.comment, client_of(request)))


@router.post("/tickets/{id}/deny", response_model=Done, summary="Deny the playbook step waiting on a ticket")
def api_deny(request: Request, id: str, body: DecisionIn) -> Done:
    c, a = _write(request)
    return Done(runs=c.actions.decide(a.who, id, False, body.comment, client_of(request)))


@router.post("/alerts/{alert_id}/verdict", response_model=Done, summary="Mark one alert true or false positive")
def api_alert_verdict(request: Request, alert_id: str, body: AlertVerdictIn) -> Done:
    c, a = _write(request)
    path = c.actions.judge_alert(a.who, alert_id, body.verdict, body.note, body.ticket, client_of(request))
    return Done(verdicts_file=path.name)


@router.get("/suppressed", response_model=list[SuppressedOut], summary="A tenant's suppressed alerts")
def api_suppressed(request: Request, tenant: Annotated[str, Query(max_length=128)],
                   status: Literal["suppressed", "unsuppressed", "all"] = "suppressed",
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[SuppressedOut]:
    c = _c(request)
    a = require(request)
    if not a.who.sees(tenant):
        raise NotFound(f"no tenant {tenant}")
    with c.store.tx() as s:
        rows = queries.suppressed(s, a.who, tenant, None if status == "all" else status, limit)
    return [SuppressedOut(alert_id=r.alert_id, tenant_id=r.tenant_id, time=r.time, score=r.score,
                          threshold=r.threshold, model_version=r.model_version, reason=r.reason,
                          contributions=r.contributions or {}, status=r.status, fields=doc) for r, doc in rows]


@router.post("/suppressed/{alert_id}/unsuppress", response_model=Done,
             summary="Release a suppressed alert (recorded as a true positive)")
def api_unsuppress(request: Request, alert_id: str, body: DecisionIn) -> Done:
    c, a = _write(request)
    return Done(verdicts_file=c.actions.unsuppress(a.who, alert_id, body.comment, client_of(request)).name)


@router.get("/health", summary="Consumer lag, dead letters by reason, worker metrics, store figures")
def api_health(request: Request) -> dict[str, Any]:
    c = _c(request)
    a = require(request)
    lag, lag_error = health.consumer_lag(c.cfg.kafka, c.cfg.group) if c.cfg.kafka else ([], None)
    st = health.store_view(c.store, a.who)
    workers = [health.scoped_worker(health.worker(u), a.who) for u in c.cfg.metrics_urls]
    return redact({
        "store": {"backend": st.backend, "open_tickets": st.open_tickets, "breached": st.breached,
                  "playbook_runs": st.runs, "dead_letters_7d": st.dead_letters_7d},
        "consumer_lag": {"group": c.cfg.group if c.cfg.kafka else None, "error": lag_error,
                         "partitions": [{"topic": r.topic, "partition": r.partition, "committed": r.committed,
                                         "end": r.end, "lag": r.lag} for r in lag]},
        "workers": [{"url": w.url, "ready": w.ready, "error": w.error, "dead_letters": w.dead_letters,
                     "lag": w.lag, "counters": w.counters, "alerts_by_tenant": w.alerts_by_tenant,
                     "latency_seconds": w.latency} for w in workers],
    })


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    require(request)
    return JSONResponse(request.app.openapi())
