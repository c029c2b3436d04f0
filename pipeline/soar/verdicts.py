"""Verdicts published when an analyst closes a ticket: one record per closed ticket, to every sink.

Sinks: a JSONL file (always, when a path is given) and any callables registered with `register_sink` or
named by `MDR_VERDICT_SINK=module:function` (the streaming worker points one at the Kafka topic
`mdr.verdicts`). The records feed the noise classifier and the reports (false-positive rates per use case).
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.redact import redact_data
from pipeline.soar.models import Ticket

TOPIC = "mdr.verdicts"
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
