"""Analyst verdicts: one path for every front end (`mdr tickets close`, `mdr verdict`, the console).

- `close` closes a ticket with a verdict, publishes the ticket's verdict record and records the verdict for
  each of its incident's alerts.
- `record_verdict` is the one function that records alert verdicts: `mdr verdict alert`, `mdr verdict
  incident` (through `record_incident_verdict`), a closed ticket (through `close`), the console's per-alert
  verdict and its unsuppress. It stores one row per alert in `alert_verdicts` (a verdict given on the alert
  itself outranks one given on its whole incident; at the same level the latest counts), notes the decision on
  the ticket's timeline when one is named, and publishes one record.
- An alert's content is not copied with its verdict: it is the store's evidence (`pipeline.soar.evidence`:
  the alerts `mdr replay` and the worker store beside the tickets). `labeled_alerts` joins the two for
  `mdr model retrain`; `list_verdicts` reads the verdicts back, `of_alerts` those of given alerts (the console).

Publication: a JSONL file (always, when a path is given; `path_for` the default) and any callables registered
with `register_sink` or named by `MDR_VERDICT_SINK=module:function` (the streaming worker points one at the
Kafka topic `mdr.verdicts`). `mdr model train --data DIR` reads the file as `DIR/verdicts.jsonl`: ticket
records carry `incident_id` and its `alert_ids` (an incident verdict), alert records only `alert_ids` (an
alert verdict, which outranks the incident's); the reports count ticket verdicts per use case.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.redact import redact_data
from pipeline.schema import Alert
from pipeline.soar import db
from pipeline.soar.models import VERDICTS, AlertVerdict, Ticket, utcnow

if TYPE_CHECKING:
    from pipeline.soar.tickets import TicketStore

TOPIC = "mdr.verdicts"
LABELS: dict[str, int | None] = {"true_positive": 1, "false_positive": 0, "benign": 0, "duplicate": None}
SOURCES = ("cli", "ticket", "console", "unsuppress")  # how the verdict was given
Sink = Callable[[dict[str, Any]], None]
_sinks: list[Sink] = []
_lock = threading.Lock()


# ---- publication ------------------------------------------------------------------------------------------------
def register_sink(fn: Sink) -> None:
    with _lock:
        if fn not in _sinks:
            _sinks.append(fn)


def unregister_sink(fn: Sink) -> None:
    with _lock:
        if fn in _sinks:
            _sinks.remove(fn)


def _env_sink() -> Sink | None:
    spec = os.environ.get("MDR_VERDICT_SINK")
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def ticket_record(t: Ticket, actor: str, comment: str | None = None) -> dict[str, Any]:
    """The record of a ticket closed with a verdict (an incident verdict: its `alert_ids` included)."""
    inc = t.incident or {}
    return {
        "ticket_id": t.id,
        "incident_id": t.incident_id,
        "tenant_id": t.tenant_id,
        "verdict": t.verdict,
        "analyst": actor,
        "comment": comment,
        "closed_at": t.closed_at.isoformat() if t.closed_at else None,
        "priority": t.priority,
        "category": t.category,
        "use_cases": inc.get("use_cases", []),
        "alert_ids": inc.get("alert_ids", []),
        "first_seen": t.first_seen.isoformat(),
        "acknowledged_at": t.acknowledged_at.isoformat() if t.acknowledged_at else None,
        "resolved_at": t.resolved_at.isoformat() if t.resolved_at else None,
    }


def alert_record(tenant: str, alert_ids: Sequence[str], verdict: str, actor: str, comment: str | None = None,
                 ticket_id: int | None = None, source: str = "console", incident_id: str | None = None,
                 at: datetime | None = None) -> dict[str, Any]:
    """The record of a verdict on alerts: `kind` "alert" (no `incident_id`: training takes it before any
    incident verdict), or "incident" when it was given on the whole incident `incident_id`."""
    rec: dict[str, Any] = {"kind": "incident" if incident_id else "alert", "tenant_id": tenant,
                           "alert_ids": list(alert_ids), "verdict": verdict, "analyst": actor, "comment": comment,
                           "ticket_id": ticket_id, "source": source, "at": (at or utcnow()).isoformat()}
    if incident_id:
        rec["incident_id"] = incident_id
    return rec


def append(rec: dict[str, Any], path: str | Path) -> None:
    """Append `rec` to the JSONL file `path`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with _lock, p.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def publish(rec: dict[str, Any], path: str | Path | None = None) -> None:
    """Append `rec` to the JSONL file `path` (when given) and hand it to every registered sink (configured
    secrets redacted: an analyst's comment may quote one)."""
    rec = redact_data(rec)
    if path is not None:
        append(rec, path)
    env = _env_sink()
    with _lock:
        sinks = list(_sinks)
    for fn in [*sinks, *([env] if env else [])]:
        fn(rec)


def path_for(db_url: str) -> Path:
    """Where verdicts go by default: MDR_VERDICTS_FILE, else verdicts.jsonl beside a SQLite store, else in
    MDR_HOME (beside the default store)."""
    from pipeline.context.store import mdr_home

    if os.environ.get("MDR_VERDICTS_FILE"):
        return Path(os.environ["MDR_VERDICTS_FILE"])
    if db_url.startswith("sqlite") and "///" in db_url:
        return Path(db_url.split("///", 1)[1]).parent / "verdicts.jsonl"
    return mdr_home() / "verdicts.jsonl"


# ---- recording --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record_verdict` did: alerts judged, of them found in the store's evidence (their content known)
    and kept at their own alert verdict (an incident verdict does not outrank it); the JSONL file written."""

    alerts: int
    with_content: int
    outranked: int
    path: Path | None


def _error(message: str) -> Exception:
    from pipeline.soar.tickets import TicketError

    return TicketError(message)


def record_verdict(store: TicketStore, tenant: str, alert_ids: Sequence[str], verdict: str, analyst: str, *,
                   source: str = "cli", comment: str | None = None, ticket_id: int | None = None,
                   incident_id: str | None = None, path: str | Path | None = None, publish_record: bool = True,
                   now: datetime | None = None) -> Recorded:
    """Record `verdict` (true_positive | false_positive | benign | duplicate) by `analyst` on alerts of
    `tenant`. With `incident_id` it is a verdict on that whole incident: it does not replace a verdict an alert
    got on its own. With `ticket_id` the decision is noted on the ticket's timeline. Publishes one record (to
    `path`, default `path_for(store.url)`) unless `publish_record` is false (a closed ticket publishes its
    own)."""
    from pipeline.soar.evidence import StoredAlert

    if verdict not in VERDICTS:
        raise _error(f"unknown verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    if source not in SOURCES:
        raise _error(f"unknown verdict source {source!r}: one of {', '.join(SOURCES)}")
    ids = list(dict.fromkeys(str(a) for a in alert_ids))
    if not ids:
        raise _error("no alert to judge")
    at = now or utcnow()
    values = {"verdict": verdict, "label": LABELS[verdict], "analyst": analyst, "source": source,
              "incident_id": incident_id, "comment": comment, "at": at}
    outranked = content = 0
    with store.tx() as s:
        for i in range(0, len(ids), db.CHUNK):
            chunk = ids[i : i + db.CHUNK]
            new = {r[0] for r in db.insert_ignore_returning(
                s, AlertVerdict, [{"tenant_id": tenant, "alert_id": a, **values} for a in chunk],
                ["tenant_id", "alert_id"], (AlertVerdict.alert_id,))}
            old = [a for a in chunk if a not in new]
            if old:
                q = update(AlertVerdict).where(AlertVerdict.tenant_id == tenant, AlertVerdict.alert_id.in_(old))
                if incident_id:  # an incident's verdict replaces incident verdicts only
                    q = q.where(AlertVerdict.incident_id.is_not(None))
                done = s.execute(q.values(**values)).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                outranked += len(old) - int(done)
            content += len(s.scalars(select(StoredAlert.alert_id).where(
                StoredAlert.tenant_id == tenant, StoredAlert.alert_id.in_(chunk))).all())
    if ticket_id is not None:
        text = f"{len(ids)} alert(s) marked {verdict}" + (f": {comment}" if comment else "")
        store.add_event(ticket_id, "verdict", text, actor=analyst, status="ok",
                        data={"alert_ids": ids[:100], "alerts": len(ids), "verdict": verdict}, now=at)
    out = None
    if publish_record:
        out = Path(path) if path is not None else path_for(store.url)
        publish(alert_record(tenant, ids, verdict, analyst, comment, ticket_id, source, incident_id, at), out)
    return Recorded(len(ids), content, outranked, out)


def record_incident_verdict(store: TicketStore, ref: int | str, verdict: str, analyst: str, *,
                            source: str = "cli", comment: str | None = None, path: str | Path | None = None,
                            now: datetime | None = None) -> Recorded:
    """`record_verdict` on every alert of an incident (ticket number or incident id) without closing its
    ticket; noted on the ticket's timeline."""
    t = store.require(ref)
    ids = list((t.incident or {}).get("alert_ids", []))
    if not ids:
        raise _error(f"ticket {t.id} lists no alerts")
    return record_verdict(store, t.tenant_id, ids, verdict, analyst, source=source, comment=comment,
                          ticket_id=t.id, incident_id=t.incident_id, path=path, now=now)


class Closed(NamedTuple):
    ticket: Ticket
    path: Path
    alerts: Recorded | None  # the incident's alert verdicts (None: the incident lists no alerts)


def close(store: TicketStore, ref: int | str, verdict: str, actor: str, comment: str | None = None,
          path: str | Path | None = None) -> Closed:
    """Close a ticket with a verdict, publish its verdict record (to `path`, default `path_for(store.url)`)
    and record the verdict on each of its incident's alerts (not published again: the ticket's record lists
    them)."""
    t = store.close_ticket(ref, verdict, actor, comment)
    out = Path(path) if path is not None else path_for(store.url)
    publish(ticket_record(t, actor, comment), out)
    ids = list((t.incident or {}).get("alert_ids", []))
    rec = record_verdict(store, t.tenant_id, ids, verdict, actor, source="ticket", comment=comment,
                         incident_id=t.incident_id, publish_record=False, now=t.closed_at) if ids else None
    return Closed(t, out, rec)


# ---- reading ----------------------------------------------------------------------------------------------------
def list_verdicts(store: TicketStore, tenant: str | None = None, since: datetime | None = None,
                  content: bool = False) -> list[tuple[AlertVerdict, dict[str, Any] | None]]:
    """Stored alert verdicts, oldest first, each with its alert's stored fields when `content` (None: the alert
    is not in the store's evidence, or `content` is false)."""
    from pipeline.soar.evidence import StoredAlert

    cols: tuple[Any, ...] = (AlertVerdict, StoredAlert.doc) if content else (AlertVerdict,)
    q = select(*cols)
    if content:
        q = q.join(StoredAlert, (StoredAlert.tenant_id == AlertVerdict.tenant_id)
                   & (StoredAlert.alert_id == AlertVerdict.alert_id), isouter=True)
    if tenant is not None:
        q = q.where(AlertVerdict.tenant_id == tenant)
    if since is not None:
        q = q.where(AlertVerdict.at >= since)
    with store.tx() as s:
        return [(r[0], r[1] if content else None) for r in s.execute(q.order_by(AlertVerdict.at, AlertVerdict.id))]


def of_alerts(s: Session, tenant: str, alert_ids: Sequence[str]) -> dict[str, AlertVerdict]:
    """alert id -> its stored verdict, for the given alerts of `tenant`."""
    ids = list(alert_ids)
    out: dict[str, AlertVerdict] = {}
    for i in range(0, len(ids), db.CHUNK):
        chunk = ids[i : i + db.CHUNK]
        q = select(AlertVerdict).where(AlertVerdict.tenant_id == tenant, AlertVerdict.alert_id.in_(chunk))
        out.update((v.alert_id, v) for v in s.scalars(q))
    return out


def labeled_alerts(store: TicketStore, tenant: str | None = None) -> tuple[list[Alert], list[int], int]:
    """(alerts, labels, labeled verdicts whose alert is not in the store's evidence) for training."""
    from pipeline.soar.evidence import as_alert

    alerts, labels, missing = [], [], 0
    for v, doc in list_verdicts(store, tenant, content=True):
        if v.label is None:
            continue
        if doc is None:
            missing += 1
            continue
        alerts.append(as_alert(doc))
        labels.append(int(v.label))
    return alerts, labels, missing
