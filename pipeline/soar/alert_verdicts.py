"""Alert-level verdicts: an analyst marks alerts (or a whole incident) true or false positive.

`record_verdict` is the one entry point for every front end — `mdr verdict`, `mdr tickets close` and the web
console: it stores one row per alert in the ticket store (`alert_verdicts`, the latest verdict per tenant + alert
counts) with the alert's normalized content when the caller has it, and publishes one verdict record
(`pipeline.soar.verdicts.publish`: the JSONL file and the registered sinks, e.g. the Kafka topic).
`record_incident_verdict` does the same for every alert of an incident (its ticket's alert ids).

`mdr model retrain` reads the rows back (`labeled_alerts`): true_positive -> attack, false_positive / benign ->
benign, duplicate -> no label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select

from pipeline.redact import redact, redact_data
from pipeline.schema import Alert
from pipeline.soar.models import VERDICTS, AlertVerdict, utcnow
from pipeline.soar.tickets import TicketError, TicketStore

LABELS: dict[str, int | None] = {"true_positive": 1, "false_positive": 0, "benign": 0, "duplicate": None}
SOURCES = ("cli", "ticket", "console")


def _snapshot(a: Alert | Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    d = msgspec.to_builtins(a) if isinstance(a, Alert) else dict(a)
    d.pop("raw", None)  # the product record: large, and not needed to learn from
    return str(d["tenant_id"]), str(d["alert_id"]), redact_data(d)


def record_verdict(store: TicketStore, verdict: str, analyst: str, *,
                   alerts: Iterable[Alert | Mapping[str, Any]] = (), alert_ids: Sequence[str] = (),
                   tenant_id: str | None = None, incident_id: str | None = None, source: str = "cli",
                   comment: str | None = None, now: datetime | None = None,
                   publish_to: str | Path | None = None, publish: bool = True) -> int:
    """Record `verdict` (true_positive | false_positive | benign | duplicate) by `analyst` for the given alerts
    (their content is kept) and alert ids (content unknown: `tenant_id` required); returns how many were
    recorded. An alert judged before gets the new verdict. Publishes one verdict record unless `publish` is
    false (a closed ticket has published its own, with the incident's alert ids)."""
    if verdict not in VERDICTS:
        raise TicketError(f"unknown verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    if source not in SOURCES:
        raise TicketError(f"unknown verdict source {source!r}: one of {', '.join(SOURCES)}")
    rows: dict[tuple[str, str], dict[str, Any] | None] = {}
    for a in alerts:
        t, aid, snap = _snapshot(a)
        rows[(t, aid)] = snap
    if alert_ids and tenant_id is None:
        raise TicketError("alert ids without their alerts need the tenant id")
    for aid in alert_ids:
        rows.setdefault((str(tenant_id), aid), None)
    if not rows:
        raise TicketError("no alert to record a verdict for")
    at = now or utcnow()
    with store.tx() as s:
        for (tenant, aid), snap in rows.items():
            row = s.scalars(select(AlertVerdict).where(AlertVerdict.tenant_id == tenant,
                                                       AlertVerdict.alert_id == aid)).first()
            if row is None:
                row = AlertVerdict(tenant_id=tenant, alert_id=aid)
                s.add(row)
            row.verdict, row.label, row.analyst, row.source = verdict, LABELS[verdict], analyst, source
            row.incident_id, row.comment, row.at = incident_id, redact(comment) if comment else comment, at
            if snap is not None or row.alert is None:
                row.alert = snap
    if not publish:
        return len(rows)
    from pipeline.soar import verdicts as pub

    tenants = sorted({t for t, _ in rows})
    pub.publish({"alert_ids": [aid for _, aid in rows], "tenant_id": tenants[0] if len(tenants) == 1 else tenants,
                 "verdict": verdict, "analyst": analyst, "source": source, "incident_id": incident_id,
                 "comment": comment, "at": at.isoformat()}, publish_to)
    return len(rows)


def record_incident_verdict(store: TicketStore, incident: str | int, verdict: str, analyst: str, *,
                            alerts: Mapping[str, Alert] | None = None, source: str = "ticket",
                            comment: str | None = None, now: datetime | None = None,
                            publish_to: str | Path | None = None, publish: bool = True) -> int:
    """`record_verdict` for every alert of an incident (ticket number or incident id); `alerts` (alert id ->
    alert, e.g. `alert_index` of the replay outputs) supplies their content where it has them."""
    t = store.require(incident)
    ids = list((t.incident or {}).get("alert_ids", []))
    have = [alerts[i] for i in ids if alerts and i in alerts]
    rest = [i for i in ids if not alerts or i not in alerts]
    if not ids:
        raise TicketError(f"ticket {t.id} lists no alerts")
    return record_verdict(store, verdict, analyst, alerts=have, alert_ids=rest, tenant_id=t.tenant_id,
                          incident_id=t.incident_id, source=source, comment=comment, now=now,
                          publish_to=publish_to, publish=publish)


def list_verdicts(store: TicketStore, tenant: str | None = None, since: datetime | None = None
                  ) -> list[AlertVerdict]:
    """Stored verdicts, oldest first."""
    q = select(AlertVerdict).order_by(AlertVerdict.at, AlertVerdict.id)
    if tenant is not None:
        q = q.where(AlertVerdict.tenant_id == tenant)
    if since is not None:
        q = q.where(AlertVerdict.at >= since)
    with store.tx() as s:
        return list(s.scalars(q))


def labeled_alerts(rows: Iterable[AlertVerdict], index: Mapping[str, Alert] | None = None
                   ) -> tuple[list[Alert], list[int], int]:
    """(alerts, labels, verdicts without content) of stored verdicts that carry a label; content from the row,
    else from `index` (alert id -> alert)."""
    alerts, labels, missing = [], [], 0
    for r in rows:
        if r.label is None:
            continue
        if r.alert is not None:
            a = msgspec.convert(r.alert, Alert)
        elif index is not None and r.alert_id in index:
            a = index[r.alert_id]
        else:
            missing += 1
            continue
        alerts.append(a)
        labels.append(int(r.label))
    return alerts, labels, missing


def alert_index(out_dirs: Iterable[str | Path]) -> dict[str, Alert]:
    """Alert id -> alert, from `mdr replay` output directories (alerts.jsonl and suppressed.jsonl)."""
    from pipeline.schema import decode_alert

    idx: dict[str, Alert] = {}
    sup_decoder = msgspec.json.Decoder()
    for d in map(Path, out_dirs):
        f = d / "alerts.jsonl"
        if f.exists():
            with open(f, "rb") as fh:
                for line in fh:
                    if line.strip():
                        a = decode_alert(line)
                        idx[a.alert_id] = a
        f = d / "suppressed.jsonl"
        if f.exists():
            with open(f, "rb") as fh:
                for line in fh:
                    if line.strip():
                        a = msgspec.convert(sup_decoder.decode(line)["alert"], Alert)
                        idx.setdefault(a.alert_id, a)
    return idx
