"""Verdicts published when an analyst closes a ticket (one record per closed ticket) or judges single alerts
(one record per decision), to every sink.

Sinks: a JSONL file (always, when a path is given) and any callables registered with `register_sink` or
named by `MDR_VERDICT_SINK=module:function` (the streaming worker points one at the Kafka topic
`mdr.verdicts`). The records feed the noise classifier (`mdr model train` reads the JSONL file: ticket
records carry `incident_id` and its `alert_ids`, alert records only `alert_ids`) and the reports
(false-positive rates per use case). `close` and `judge_alerts` are the one way the CLI and the console
give a verdict.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.redact import redact_data
from pipeline.soar.models import Ticket, utcnow

if TYPE_CHECKING:
    from pipeline.soar.tickets import TicketStore

TOPIC = "mdr.verdicts"
ALERT_VERDICTS = ("true_positive", "false_positive")
Sink = Callable[[dict[str, Any]], None]
_sinks: list[Sink] = []
_lock = threading.Lock()


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
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def record(t: Ticket, actor: str, comment: str | None = None) -> dict[str, Any]:
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


def close(store: TicketStore, ref: int | str, verdict: str, actor: str, comment: str | None = None,
          path: str | Path | None = None) -> tuple[Ticket, Path]:
    """Close a ticket with a verdict and publish the verdict record; returns the ticket and the JSONL file."""
    t = store.close_ticket(ref, verdict, actor, comment)
    out = Path(path) if path is not None else path_for(store.url)
    publish(record(t, actor, comment), out)
    return t, out


def alert_record(tenant: str, alert_ids: list[str], verdict: str, actor: str, comment: str | None = None,
                 ticket_id: int | None = None, source: str = "analyst") -> dict[str, Any]:
    """A verdict on single alerts (no `incident_id`: training takes it before any incident verdict)."""
    return {"kind": "alert", "tenant_id": tenant, "alert_ids": list(alert_ids), "verdict": verdict,
            "analyst": actor, "comment": comment, "ticket_id": ticket_id, "source": source,
            "at": utcnow().isoformat()}


def judge_alerts(store: TicketStore, tenant: str, alert_ids: list[str], verdict: str, actor: str,
                 comment: str | None = None, ticket_id: int | None = None, path: str | Path | None = None,
                 source: str = "analyst") -> Path:
    """Mark alerts of `tenant` as true or false positive: the verdict record is published and, when the
    alerts belong to a ticket, noted on its timeline. Returns the JSONL file."""
    from pipeline.soar.tickets import TicketError

    if verdict not in ALERT_VERDICTS:
        raise TicketError(f"an alert verdict is one of {', '.join(ALERT_VERDICTS)}")
    if not alert_ids:
        raise TicketError("no alert to judge")
    if ticket_id is not None:
        text = f"{len(alert_ids)} alert(s) marked {verdict}" + (f": {comment}" if comment else "")
        store.add_event(ticket_id, "verdict", text, actor=actor, status="ok",
                        data={"alert_ids": list(alert_ids), "verdict": verdict})
    out = Path(path) if path is not None else path_for(store.url)
    publish(alert_record(tenant, alert_ids, verdict, actor, comment, ticket_id, source), out)
    return out
