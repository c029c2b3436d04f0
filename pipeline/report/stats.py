"""Alert statistics kept for the reports: per tenant and day, the alerts by product, rule, source address,
target asset and action, and the funnel counters (raw records -> alerts -> after dedup -> suppressed ->
incidents).

Rows live in the SOAR store's database (tables `alert_stats` and `funnel_stats` of
`pipeline.store.alert_stats`, Alembic revision `0002_alert_stats`). `record_stats` writes one replay (or stream
batch) as a *batch*: the batch id is a hash of the tenant and its alert ids, and writing a batch replaces its
earlier rows, so recording the same replay twice counts it once. Raw records and dead letters carry no event
time; they are spread over the batch's days in proportion to its raw alerts (exact for the usual one-day replay).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from pipeline.schema import Alert, utc
from pipeline.soar.models import table
from pipeline.store.alert_stats import KEY_LEN, AlertStat, FunnelStat, NoiseDrift


@dataclass(frozen=True, slots=True)
class Recorded:
    batch: str
    rows: int
    days: list[date]


def target_asset(a: Alert) -> str | None:
    """What the alert targeted: the inventory asset, else the host, else the destination address."""
    if a.asset is not None:
        return a.asset.name
    if a.host is not None and a.host.name:
        return a.host.name
    return a.dst.ip or (a.http.host if a.http else None)


def _cut(v: str | None) -> str | None:
    return v[:KEY_LEN] if v else v


def apportion(total: int, weights: dict[date, int]) -> dict[date, int]:
    """`total` split over the days in proportion to `weights` (largest remainder: the parts sum to it)."""
    days = sorted(weights)
    if not days:
        return {}
    if not sum(weights.values()):
        weights = dict.fromkeys(days, 1)
    wsum = sum(weights.values())
    shares = {d: total * weights[d] / wsum for d in days}
    parts = {d: int(s) for d, s in shares.items()}
    for d in sorted(days, key=lambda d: (parts[d] - shares[d], d))[: total - sum(parts.values())]:
        parts[d] += 1
    return parts


def summarize(tenant: str, res: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alert-stat rows and funnel rows (without batch id) of a ReplayResult-like object: attributes
    records, alerts_raw, alerts, suppressed, dead and open_incidents (or incidents)."""
    suppressed_ids = {s.alert.alert_id for s in res.suppressed}
    groups: Counter[tuple[Any, ...]] = Counter()
    raw: Counter[tuple[Any, ...]] = Counter()
    intel: Counter[tuple[Any, ...]] = Counter()
    supp: Counter[tuple[Any, ...]] = Counter()
    for a in res.alerts:
        if a.tenant_id != tenant:
            continue
        key = (
            utc(a.time).date(), a.source.product, a.source.format or a.source.product, a.source.family,
            _cut(a.rule.id) or "", _cut(a.rule.name) or "", a.src.ip, _cut(target_asset(a)), a.action,
        )
        groups[key] += 1
        raw[key] += a.count
        intel[key] += bool(a.intel)
        supp[key] += a.alert_id in suppressed_ids
    fields = ("day", "product", "format", "family", "rule_id", "rule_name", "src_ip", "asset", "action")
    rows = [
        {"tenant_id": tenant, **dict(zip(fields, k, strict=True)), "alerts": n, "raw": raw[k],
         "intel": intel[k], "suppressed": supp[k]}
        for k, n in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
    ]
    by_day: dict[date, Counter[str]] = {}
    for r in rows:
        c = by_day.setdefault(r["day"], Counter())
        c.update({"raw": r["raw"], "alerts": r["alerts"], "suppressed": r["suppressed"]})
    incidents = getattr(res, "open_incidents", None)
    if incidents is None:
        incidents = [i for i in res.incidents.values() if i.status != "merged"]
    for inc in incidents:
        if inc.tenant_id == tenant:
            by_day.setdefault(utc(inc.first_seen).date(), Counter())["incidents"] += 1
    weights = {d: c["raw"] for d, c in by_day.items()}
    records = apportion(res.records, weights)
    alerts_raw = apportion(res.alerts_raw, weights)
    dead = apportion(len(res.dead), weights)
    funnel = [
        {"tenant_id": tenant, "day": d, "records": records[d], "alerts_raw": alerts_raw[d],
         "alerts": c["alerts"], "suppressed": c["suppressed"], "incidents": c["incidents"], "dead": dead[d]}
        for d, c in sorted(by_day.items())
    ]
    return rows, funnel


def batch_id(tenant: str, res: Any) -> str:
    h = hashlib.sha256(tenant.encode())
    for aid in sorted(a.alert_id for a in res.alerts):
        h.update(b"\0" + aid.encode())
    return h.hexdigest()[:32]


def record_stats(store_or_engine: Any, tenant: str, res: Any) -> Recorded:
    """Write the alert statistics and funnel counters of one replay / batch of `tenant` (replacing the
    rows of the same batch). `store_or_engine`: a TicketStore, a SQLAlchemy Engine or a store URL."""
    if isinstance(store_or_engine, str):
        from pipeline.soar import db

        _, engine = db.open_engine(store_or_engine, pool_size=1)
        try:
            return record_stats(engine, tenant, res)
        finally:
            engine.dispose()
    engine = store_or_engine if isinstance(store_or_engine, Engine) else store_or_engine.engine
    rows, funnel = summarize(tenant, res)
    bid = batch_id(tenant, res)
    with Session(engine) as s, s.begin():
        s.execute(delete(AlertStat).where(AlertStat.batch == bid))
        s.execute(delete(FunnelStat).where(FunnelStat.batch == bid))
        if rows:
            s.execute(table(AlertStat).insert(), [{"batch": bid, **r} for r in rows])
        if funnel:
            s.execute(table(FunnelStat).insert(), [{"batch": bid, **f} for f in funnel])
        s.execute(delete(NoiseDrift).where(NoiseDrift.batch == bid))
        drift = [{"batch": bid, "tenant_id": t, "day": day, "model_version": getattr(res, "model_version", "") or "",
                  "alerts": d.alerts, "out_of_scope": d.out_of_scope, "novel_rules": d.novel_rules,
                  "score_hist": list(d.hist)}
                 for (t, day), d in sorted((getattr(res, "drift", None) or {}).items()) if t == tenant]
        if drift:
            s.execute(table(NoiseDrift).insert(), drift)
    return Recorded(bid, len(rows), [f["day"] for f in funnel])
