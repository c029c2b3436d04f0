"""What a report shows, read from the store for ONE tenant: every query filters on the tenant id.

Incidents are the tenant's tickets (one per incident; incidents fused into another are left out) whose first
alert falls in the period. Times follow the one clock rule (docs/priority.md, "One clock"): MTTD = first alert
-> detection (the alert with which the pipeline raised the incident, event time); MTTA = detection ->
acknowledged, the response time the SLA promises (P1 15 min ... P5 8 h); MTTR = detection -> resolved.
Alert volumes and the funnel come from the alert statistics (pipeline/report/stats.py writes them).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.classify.drift import TenantDrift, notices
from pipeline.report.period import Period
from pipeline.schema import CATEGORIES, PRIORITIES
from pipeline.soar.models import Ticket
from pipeline.soar.sla import RESPONSE, sla_state
from pipeline.store.alert_stats import AlertStat, FunnelStat, NoiseDrift

FUNNEL = (("records", "raw records"), ("alerts_raw", "alerts"), ("alerts", "after dedup"),
          ("suppressed", "suppressed as noise"), ("incidents", "incidents"))
CLASSES = ("network_attack", "intrusion", "malware", "other")
TOP_N = 10
TUNING_FP_RATE = 0.5  # use cases at or above this false-positive rate (with >= 2 verdicts) need tuning


def minutes(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else round((b - a).total_seconds() / 60, 1)


@dataclass(slots=True)
class IncidentRow:
    ticket_id: int
    incident_id: str
    title: str
    priority: str
    category: str
    class_: str
    status: str
    verdict: str | None
    outcome: str
    first_seen: datetime
    detected_at: datetime
    created_at: datetime
    sla_due: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    sla: str  # met | breached | pending
    overdue: bool  # still unacknowledged past its due time
    use_cases: list[tuple[str, str]]  # (id, title)
    src_ips: list[str]
    asset: str | None
    escort: str | None
    intel: list[dict[str, Any]]
    alert_count: int

    @property
    def mttd(self) -> float | None:
        return minutes(self.first_seen, self.detected_at)

    @property
    def mtta(self) -> float | None:
        return minutes(self.detected_at, self.acknowledged_at)

    @property
    def mttr(self) -> float | None:
        return minutes(self.detected_at, self.resolved_at)


@dataclass(slots=True)
class Trend:
    key: str
    now: int
    prev: int

    @property
    def delta(self) -> int:
        return self.now - self.prev


@dataclass(slots=True)
class Timing:
    priority: str
    sla_min: float
    n: int
    mttd: float | None
    mtta: float | None
    mttr: float | None
    mttr_p90: float | None
    met: int
    breached: int
    pending: int
    resolve_times: list[float] = field(default_factory=list)

    @property
    def met_pct(self) -> float | None:
        done = self.met + self.breached
        return round(100 * self.met / done, 1) if done else None


@dataclass(slots=True)
class VerdictRow:
    use_case: str
    title: str
    true_positive: int = 0
    false_positive: int = 0
    benign: int = 0
    duplicate: int = 0

    @property
    def judged(self) -> int:
        return self.true_positive + self.false_positive + self.benign

    @property
    def fp_rate(self) -> float | None:
        return round((self.false_positive + self.benign) / self.judged, 3) if self.judged else None

    @property
    def needs_tuning(self) -> bool:
        return self.judged >= 2 and (self.fp_rate or 0) >= TUNING_FP_RATE


@dataclass(slots=True)
class ReportData:
    tenant: str
    period: Period
    previous: Period
    generated_at: datetime
    funnel: dict[str, int]
    funnel_prev: dict[str, int]
    incidents: list[IncidentRow]
    prev_incidents: list[IncidentRow]
    backlog: list[IncidentRow]  # open tickets of earlier periods
    alerts_by_product: list[tuple[str, int]]
    top_attackers: list[tuple[str, int, int]]  # ip, alerts, incidents: the sources of incidents only
    top_assets: list[tuple[str, int, int]]  # asset, alerts, incidents
    top_use_cases: list[tuple[str, str, int]]  # id, title, incidents
    intel_alerts: int
    intel_hits: list[dict[str, Any]]
    timing: list[Timing]
    verdicts: list[VerdictRow]
    summary: str = ""
    drift: TenantDrift | None = None  # the noise model this period (None: no model ran)
    drift_prev: TenantDrift | None = None
    drift_notices: list[dict[str, Any]] = field(default_factory=list)

    # ---- derived figures --------------------------------------------------------------------------------
    def counts(self, attr: str, order: tuple[str, ...], every: bool = False) -> list[Trend]:
        """Incidents per value of `attr`, now and in the previous period (values seen, or all with `every`)."""
        now = Counter(getattr(i, attr) for i in self.incidents)
        prev = Counter(getattr(i, attr) for i in self.prev_incidents)
        keys = [*order, *sorted(k for k in {*now, *prev} if k not in order)]
        return [Trend(k, now[k], prev[k]) for k in keys if every or now[k] or prev[k]]

    @property
    def by_priority(self) -> list[Trend]:
        return self.counts("priority", PRIORITIES, every=True)

    @property
    def by_category(self) -> list[Trend]:
        return self.counts("category", CATEGORIES)

    @property
    def by_class(self) -> list[Trend]:
        return self.counts("class_", CLASSES)

    @property
    def open_tickets(self) -> list[IncidentRow]:
        return [i for i in [*self.backlog, *self.incidents] if i.status != "closed"]

    @property
    def overdue(self) -> list[IncidentRow]:
        return [i for i in self.open_tickets if i.overdue]

    @property
    def breaches(self) -> list[IncidentRow]:
        return [i for i in self.incidents if i.sla == "breached"]

    @property
    def closed(self) -> int:
        return sum(i.status == "closed" for i in self.incidents)

    @property
    def closure_pct(self) -> float:
        return round(100 * self.closed / len(self.incidents), 1) if self.incidents else 100.0

    @property
    def escort(self) -> list[IncidentRow]:
        return [i for i in self.incidents if i.escort]

    @property
    def daily(self) -> dict[str, Counter[str]]:
        days = {d.isoformat(): Counter[str]() for d in self.period.days}
        for i in self.incidents:
            days.setdefault(i.first_seen.date().isoformat(), Counter())[i.priority] += 1
        return days

    @property
    def sla_met(self) -> int:
        return sum(t.met for t in self.timing)

    @property
    def sla_breached(self) -> int:
        return sum(t.breached for t in self.timing)

    def overall(self, attr: str) -> float | None:
        vals = [v for i in self.incidents if (v := getattr(i, attr)) is not None]
        return median(vals)

    def key_figures(self) -> dict[str, Any]:
        """The numbers a manager reads first (also exposed as data attributes / a Markdown table)."""
        figs: dict[str, Any] = {f"funnel_{k}": self.funnel.get(k, 0) for k, _ in FUNNEL}
        figs.update({
            "incidents_total": len(self.incidents),
            "incidents_prev": len(self.prev_incidents),
            **{f"incidents_{t.key}": t.now for t in self.by_priority},
            "sla_met": self.sla_met,
            "sla_breached": self.sla_breached,
            "open_tickets": len(self.open_tickets),
            "overdue_tickets": len(self.overdue),
            "closed_tickets": self.closed,
            "closure_pct": self.closure_pct,
            "mttd_min": self.overall("mttd"),
            "mtta_min": self.overall("mtta"),
            "mttr_min": self.overall("mttr"),
            "intel_alerts": self.intel_alerts,
            "escort_incidents": len(self.escort),
        })
        return figs


def median(vals: list[float]) -> float | None:
    return round(statistics.median(vals), 1) if vals else None


def p90(vals: list[float]) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return round(s[min(len(s) - 1, int(0.9 * len(s)))], 1)


# ---- queries ----------------------------------------------------------------------------------------------
def _row(t: Ticket, now: datetime) -> IncidentRow:
    inc = t.incident or {}
    titles = {e.get("use_case"): e.get("title", "") for e in inc.get("explanation", [])}
    sla = sla_state(t, now)
    detected = datetime.fromisoformat(inc["detected_at"]) if inc.get("detected_at") else t.first_seen
    asset = (inc.get("asset") or {}).get("name") or next(iter(inc.get("entities", {}).get("hosts", [])), None)
    return IncidentRow(
        ticket_id=t.id, incident_id=t.incident_id, title=t.title, priority=t.priority, category=t.category,
        class_=inc.get("class", "other"), status=t.status, verdict=t.verdict,
        outcome=inc.get("outcome", "unknown"), first_seen=t.first_seen, detected_at=detected,
        created_at=t.created_at,
        sla_due=t.sla_due, acknowledged_at=t.acknowledged_at, resolved_at=t.resolved_at, closed_at=t.closed_at,
        sla=sla, overdue=t.status == "new" and t.acknowledged_at is None and now > t.sla_due,
        use_cases=[(u, titles.get(u) or u) for u in inc.get("use_cases", [])],
        src_ips=list(inc.get("entities", {}).get("src_ips", [])), asset=asset, escort=inc.get("escort"),
        intel=list(inc.get("intel", [])), alert_count=int(inc.get("alert_count", 0)),
    )


def incidents(s: Session, tenant: str, start: datetime, end: datetime, now: datetime,
              open_only: bool = False, by: Any = Ticket.first_seen) -> list[IncidentRow]:
    """The tenant's incidents whose `by` time (first alert; or e.g. Ticket.created_at) is in [start, end)."""
    q = select(Ticket).where(Ticket.tenant_id == tenant, Ticket.incident_status != "merged", by >= start, by < end)
    if open_only:
        q = q.where(Ticket.status != "closed")
    rows = s.scalars(q.order_by(Ticket.first_seen, Ticket.id)).all()
    return [_row(t, now) for t in rows if t.tenant_id == tenant]


def funnel(s: Session, tenant: str, p: Period) -> dict[str, int]:
    cols = [func.coalesce(func.sum(getattr(FunnelStat, k)), 0) for k, _ in FUNNEL] + [
        func.coalesce(func.sum(FunnelStat.dead), 0)]
    row = s.execute(select(*cols).where(FunnelStat.tenant_id == tenant, FunnelStat.day >= p.start.date(),
                                        FunnelStat.day < p.end.date())).one()
    return dict(zip([k for k, _ in FUNNEL] + ["dead"], map(int, row), strict=True))


def _alert_top(s: Session, tenant: str, p: Period, col: Any) -> list[tuple[str, int]]:
    q = (select(col, func.sum(AlertStat.raw).label("n"))
         .where(AlertStat.tenant_id == tenant, AlertStat.day >= p.start.date(), AlertStat.day < p.end.date(),
                col.is_not(None))
         .group_by(col).order_by(func.sum(AlertStat.raw).desc(), col).limit(TOP_N))
    return [(str(k), int(n)) for k, n in s.execute(q)]


def _alert_counts(s: Session, tenant: str, p: Period, col: Any, keys: set[str]) -> list[tuple[str, int]]:
    """Alerts of the given values of `col` (e.g. the source addresses of incidents) in the period."""
    if not keys:
        return []
    q = (select(col, func.sum(AlertStat.raw))
         .where(AlertStat.tenant_id == tenant, AlertStat.day >= p.start.date(), AlertStat.day < p.end.date(),
                col.in_(sorted(keys)))
         .group_by(col))
    return [(str(k), int(n)) for k, n in s.execute(q)]


def noise_drift(s: Session, tenant: str, p: Period) -> TenantDrift | None:
    """The noise model's drift counts of a tenant over a period (None: no model scored any alert)."""
    rows = s.execute(select(NoiseDrift).where(NoiseDrift.tenant_id == tenant, NoiseDrift.day >= p.start.date(),
                                              NoiseDrift.day < p.end.date())).scalars().all()
    if not rows:
        return None
    out = TenantDrift()
    for r in rows:
        out.add(TenantDrift(r.alerts, r.out_of_scope, r.novel_rules, list(r.score_hist)))
    return out


def _intel_alerts(s: Session, tenant: str, p: Period) -> int:
    q = select(func.coalesce(func.sum(AlertStat.intel), 0)).where(
        AlertStat.tenant_id == tenant, AlertStat.day >= p.start.date(), AlertStat.day < p.end.date())
    return int(s.scalar(q) or 0)


def _timing(rows: list[IncidentRow]) -> list[Timing]:
    out = []
    for prio in PRIORITIES:
        mine = [i for i in rows if i.priority == prio]
        res = [v for i in mine if (v := i.mttr) is not None]
        out.append(Timing(
            priority=prio, sla_min=RESPONSE[prio] / 60, n=len(mine),
            mttd=median([v for i in mine if (v := i.mttd) is not None]),
            mtta=median([v for i in mine if (v := i.mtta) is not None]),
            mttr=median(res), mttr_p90=p90(res),
            met=sum(i.sla == "met" for i in mine), breached=sum(i.sla == "breached" for i in mine),
            pending=sum(i.sla == "pending" for i in mine), resolve_times=res,
        ))
    return out


def verdict_rows(rows: list[IncidentRow]) -> list[VerdictRow]:
    """Verdicts per use case (worst false-positive rate first); `needs_tuning` flags the ones to tune."""
    table: dict[str, VerdictRow] = {}
    for i in rows:
        if i.verdict is None:
            continue
        for uc, title in i.use_cases:
            v = table.setdefault(uc, VerdictRow(uc, title))
            setattr(v, i.verdict, getattr(v, i.verdict) + 1)
    return sorted(table.values(), key=lambda v: (-(v.fp_rate or 0), -v.judged, v.title))


def _intel_hits(rows: list[IncidentRow]) -> list[dict[str, Any]]:
    hits: dict[tuple[str, str], dict[str, Any]] = {}
    for i in rows:
        for h in i.intel:
            d = hits.setdefault((h.get("indicator", ""), h.get("type", "")), {**h, "incidents": 0})
            d["incidents"] += 1
    return sorted(hits.values(), key=lambda d: (-d["incidents"], d["indicator"]))


def collect(store: Any, tenant: str, period: Period, now: datetime | None = None) -> ReportData:
    """Everything the report of `tenant` for `period` shows. `store`: a TicketStore (or anything with an
    `engine`)."""
    now = now or datetime.now(UTC)
    prev = period.previous()
    with Session(store.engine) as s:
        cur = incidents(s, tenant, period.start, period.end, now)
        before = incidents(s, tenant, prev.start, prev.end, now)
        backlog = incidents(s, tenant, datetime(1970, 1, 1, tzinfo=UTC), period.start, now, open_only=True)
        f_now, f_prev = funnel(s, tenant, period), funnel(s, tenant, prev)
        by_ip = Counter(ip for i in cur for ip in set(i.src_ips))
        attackers = _alert_counts(s, tenant, period, AlertStat.src_ip, set(by_ip))  # sources of incidents only
        assets = _alert_top(s, tenant, period, AlertStat.asset)
        products = _alert_top(s, tenant, period, AlertStat.product)
        intel_alerts = _intel_alerts(s, tenant, period)
        drift, drift_prev = noise_drift(s, tenant, period), noise_drift(s, tenant, prev)
    by_asset = Counter(i.asset for i in cur if i.asset)
    ucs = Counter(uc for i in cur for uc in i.use_cases)
    data = ReportData(
        tenant=tenant, period=period, previous=prev, generated_at=now, funnel=f_now, funnel_prev=f_prev,
        incidents=cur, prev_incidents=before, backlog=backlog, alerts_by_product=products,
        top_attackers=_merge_top(attackers, by_ip), top_assets=_merge_top(assets, by_asset),
        top_use_cases=[(u, t, n) for (u, t), n in ucs.most_common(TOP_N)], intel_alerts=intel_alerts,
        intel_hits=_intel_hits(cur), timing=_timing(cur), verdicts=verdict_rows(cur),
        drift=drift, drift_prev=drift_prev,
        drift_notices=notices({tenant: drift}, {tenant: drift_prev}) if drift and drift_prev else [],
    )
    from pipeline.report.summary import assess

    data.summary = assess(data)
    return data


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the store holds: the first and last day with data of a tenant (tickets or alert statistics),
    and every tenant it has data of."""

    first: Any
    last: Any
    tenants: list[str]


def holdings(store: Any, tenant: str) -> Holdings:
    """The days of `tenant`'s data in the store (None, None when it has none) and the tenants it knows."""
    with Session(store.engine) as s:
        t_days = s.execute(select(func.min(Ticket.first_seen), func.max(Ticket.first_seen))
                           .where(Ticket.tenant_id == tenant)).one()
        f_days = s.execute(select(func.min(FunnelStat.day), func.max(FunnelStat.day))
                           .where(FunnelStat.tenant_id == tenant)).one()
        tenants = {*s.scalars(select(Ticket.tenant_id).distinct()), *s.scalars(select(FunnelStat.tenant_id).distinct())}
    days = [d.date() if isinstance(d, datetime) else d for d in (*t_days, *f_days) if d is not None]
    return Holdings(min(days, default=None), max(days, default=None), sorted(tenants))


def _merge_top(alerts: list[tuple[str, int]], incidents: Counter[str]) -> list[tuple[str, int, int]]:
    """Top entries by alerts, plus entries seen only in incidents, ranked by (incidents, alerts)."""
    counts = dict(alerts)
    keys = {*counts, *incidents}
    ranked = sorted(keys, key=lambda k: (-incidents[k], -counts.get(k, 0), k))
    return [(k, counts.get(k, 0), incidents[k]) for k in ranked[:TOP_N]]
