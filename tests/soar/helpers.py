"""Incident factory and small playbook/channel writers for the SOAR tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.schema import CATEGORY_CLASS, AssetRef, Entities, Incident, MatchExplanation

# Detection time of the test incidents: recent, as for a live stream (the SLA clock starts there, and a ticket
# opened a day after its detection is history that is never escalated: pipeline/soar/sla.py)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def incident(n: int = 1, *, category: str = "web_attack", priority: str = "P3", tenant: str = "shop",
             src: list[str] | None = None, hosts: list[str] | None = None, **kw: Any) -> Incident:
    src = ["203.0.113.7"] if src is None else src
    hosts = ["web-01"] if hosts is None else hosts
    fields: dict[str, Any] = {
        "incident_id": f"inc{n:04d}", "tenant_id": tenant, "title": f"{category} #{n} from {', '.join(src)}",
        "category": category, "class_": CATEGORY_CLASS[category], "priority": priority,
        "use_cases": [f"uc-{category}"], "first_seen": T0, "last_seen": T0, "alert_count": 3,
        "alert_ids": [f"a{n}-1", f"a{n}-2", f"a{n}-3"], "entities": Entities(src_ips=src, hosts=hosts),
        "asset": AssetRef(name=hosts[0], criticality="high") if hosts else None, "outcome": "attempted",
        "explanation": [MatchExplanation(use_case=f"uc-{category}", title=f"{category} rule",
                                         alert_ids=[f"a{n}-1"])],
    }
    fields.update(kw)
    return Incident(**fields)


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def playbook(name: str, steps: list[dict[str, Any]], **trigger: Any) -> dict[str, Any]:
    return {"name": name, "trigger": trigger or {"default": True}, "steps": steps}


def events(soar: Any, ticket_id: int, kind: str | None = None) -> list[tuple[str, str | None, str]]:
    """(kind, status, text) of a ticket's timeline events (of one kind)."""
    return [(e.kind, e.status, e.text) for e in soar.store.timeline(ticket_id) if kind is None or e.kind == kind]
