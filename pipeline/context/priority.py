"""Incident priority P1–P5 from the use case's priority and the incident's context; response SLA; escort mode.

The function (`prioritize`) recomputes everything from `incident.base_priority` and the incident's current
content on every call, so it is idempotent. Steps, in order, each one level (P1 is the highest):

| step | condition                                                              | change |
|------|------------------------------------------------------------------------|--------|
| 0    | base: the opening use case's priority, or a fused part's when higher  | =      |
| 1    | asset criticality `critical`                                           | +1     |
| 1    | asset criticality `high` and the activity was not blocked              | +1     |
| 2    | outcome `succeeded` (host evidence, a successful action)               | +1     |
| 3    | a threat-intel hit with confidence >= 50 (or no confidence given)      | +1     |
| 4    | fused stages of one attack (fused incidents of two or more categories) | +1     |
| cap  | steps 1–4 together raise at most two levels                             |        |
| 5    | outcome `blocked` (all of it) on a `low`-criticality asset              | -1     |
| 6    | escort period: `first_seen` inside a period of the tenant's calendar    | +1     |

Never above P1 or below P5. Each step that applies adds a reason (the first reason is the base; the last
states the SLA). `sla_due` and `sla_breached` follow the one clock rule below (`response_due`, `sla_state`).
During an escort period the title gets the suffix ` [escort: <name>]` (never twice) and `incident.escort` its
name. See docs/priority.md for the rationale and a worked example.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.context.loader import (
    Collector,
    LDict,
    csv_rows,
    item_line,
    key_line,
    load_yaml,
    parse_time,
    read_text,
)
from pipeline.schema import PRIORITIES, AssetRef, Incident, IntelHit, network_c2

SERVICE_TERMS = {"P1": timedelta(minutes=15), "P2": timedelta(minutes=30), "P3": timedelta(hours=2),
                 "P4": timedelta(hours=4), "P5": timedelta(hours=8)}
_UNITS = {"s": 1, "m": 60, "h": 3600}


def sla_table(spec: str) -> dict[str, timedelta]:
    """The response times: the service terms, with the priorities `spec` names set otherwise
    (`P1=20s,P2=10m`: a whole number of seconds, minutes or hours; the environment's MDR_SLA, e.g. for a contract
    with other terms, or a test that wants escalations within seconds). ValueError names a bad item."""
    table = dict(SERVICE_TERMS)
    for item in filter(None, (x.strip() for x in spec.split(","))):
        prio, _, value = item.partition("=")
        m = re.fullmatch(r"(\d+)\s*([smh])", value.strip())
        if prio.strip() not in table or m is None or int(m[1]) == 0:
            raise ValueError(f"MDR_SLA: bad item {item!r}; want P1..P5=<number><s|m|h>, e.g. P1=15m")
        table[prio.strip()] = timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    return table


SLA = sla_table(os.environ.get("MDR_SLA", ""))  # the one SLA table: incidents, tickets, escalation, reports
MAX_CONTEXT_RAISE = 2
INTEL_MIN_CONFIDENCE = 50
ESCORT_SUFFIX = re.compile(r" \[escort: [^\]]*\]")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- the one clock for SLA, MTTD, MTTA and MTTR (docs/priority.md, "One clock") ------------------------------
def detected(inc: Incident) -> datetime:
    """When the pipeline raised the incident, in event time (the alert that made a use case fire)."""
    return inc.detected_at or inc.first_seen


def response_due(inc: Incident) -> datetime:
    """The response deadline: detection + the response time of the incident's current priority."""
    return detected(inc) + SLA.get(inc.priority, SLA["P3"])


def sla_state(due: datetime, acknowledged_at: datetime | None, now: datetime, escalated: bool = False) -> str:
    """met (acknowledged by the deadline) | breached (acknowledged late, not acknowledged past it, or already
    escalated as a breach) | pending (not acknowledged, deadline ahead). Incidents carry no acknowledgement:
    for them this is breached once `now` is past the deadline, as for an unacknowledged ticket."""
    if escalated:
        return "breached"
    if acknowledged_at is not None:
        return "met" if acknowledged_at <= due else "breached"
    return "breached" if now > due else "pending"


# ---- escort calendar ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EscortPeriod:
    name: str
    start: datetime
    end: datetime


class EscortCalendar:
    """Escort (重保) periods of one tenant: `at(t)` is the period containing t, if any."""

    def __init__(self, periods: list[EscortPeriod] | None = None, origin: str = ""):
        self.periods = sorted(periods or [], key=lambda p: p.start)
        self.origin = origin

    def __len__(self) -> int:
        return len(self.periods)

    def at(self, t: datetime) -> EscortPeriod | None:
        return next((p for p in self.periods if p.start <= t <= p.end), None)


def load_escort(path: str | Path) -> EscortCalendar:
    """YAML (a list, or `periods:` with an optional top-level `timezone:`)
    or CSV (`start,end,name[,timezone]`).

    Times are ISO 8601 dates or datetimes; naive ones are in the period's / file's timezone (default UTC); a
    bare end date includes that whole day. Raises ContextFileError (file:line: field: message).
    """
    errors = Collector(path)
    text = read_text(path, errors)
    periods: list[EscortPeriod] = []
    if text is not None:
        if str(path).lower().endswith(".csv"):
            rows = [(ln, r) for ln, r in csv_rows(text, errors, ("start", "end", "name"))]
            default_tz: Any = UTC
        else:
            doc = load_yaml(text, errors)
            tz_name = doc.get("timezone") if isinstance(doc, dict) else None
            default_tz = _tz(tz_name, key_line(doc, "timezone"), errors)
            items = doc.get("periods", doc.get("escort")) if isinstance(doc, dict) else doc
            if doc is not None and not isinstance(items, list):
                errors.add(key_line(doc, "periods"), "periods", "expected a list of periods")
                items = []
            rows = [(item_line(items, i), r) for i, r in enumerate(items or [])]
        for line, row in rows:
            p = _period(line, row, default_tz, errors)
            if p is not None:
                periods.append(p)
    errors.check()
    return EscortCalendar(periods, str(path))


def _tz(name: Any, line: int, errors: Collector) -> Any:
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(line, "timezone", f"unknown time zone {name!r}")
        return UTC


def _period(line: int, row: Any, default_tz: Any, errors: Collector) -> EscortPeriod | None:
    if not isinstance(row, dict):
        errors.add(line, "", "expected a mapping with start, end, name")
        return None
    at = (lambda k: key_line(row, k)) if isinstance(row, LDict) else (lambda k: line)
    name = str(row.get("name") or "").strip()
    if not name:
        errors.add(at("name"), "name", "missing period name")
    tz = _tz(row.get("timezone"), at("timezone"), errors) if row.get("timezone") else default_tz
    bounds = []
    for k in ("start", "end"):
        try:
            bounds.append(parse_time(row.get(k) or "", end=k == "end", tz=tz))
        except (ValueError, TypeError):
            errors.add(at(k), k, f"not a date or datetime: {row.get(k)!r}")
    if len(bounds) != 2 or not name:
        return None
    if bounds[1] < bounds[0]:
        errors.add(at("end"), "end", "before start")
        return None
    return EscortPeriod(name, bounds[0], bounds[1])  # aware, in the calendar's zone (shown as written)


# ---- the priority function ---------------------------------------------------------------------------------
def _p(level: int) -> str:
    return PRIORITIES[min(max(level, 0), len(PRIORITIES) - 1)]


def base_level(inc: Incident) -> tuple[str, str]:
    """(the base priority, its reason): the opening use case's priority, or a fused part's when that is higher
    (fusion's record, `Incident.fused`)."""
    base = inc.base_priority if inc.base_priority in PRIORITIES else PRIORITIES[-1]
    top = min((p for p in inc.fused if p.base_priority in PRIORITIES and p.base_priority < base),
              key=lambda p: p.base_priority, default=None)
    if top is not None:
        return top.base_priority, (f"base {top.base_priority} from fused {top.category} incident {top.title!r} "
                                   f"({top.incident_id[:12]}): the highest use-case priority of the fused incidents")
    opened = inc.explanation[0].title if inc.explanation else (inc.use_cases or ["?"])[0]
    return base, f"base {base} from use case {opened!r}"


def fusion_reasons(inc: Incident) -> list[str]:
    """One line per incident fusion merged into this one (its record)."""
    return [f"fused with {p.category} incident {p.title!r} ({p.incident_id[:12]})" for p in inc.fused]


def _intel_reason(hits: list[IntelHit]) -> tuple[bool, str]:
    strong = [h for h in hits if h.confidence is None or h.confidence >= INTEL_MIN_CONFIDENCE]
    h = max(strong or hits, key=lambda x: INTEL_MIN_CONFIDENCE if x.confidence is None else x.confidence)
    conf = "" if h.confidence is None else f", confidence {h.confidence}"
    more = f" (+{len(hits) - 1} more hits)" if len(hits) > 1 else ""
    text = f"threat intel: {h.type} {h.indicator!r} in {h.field} from {h.source}{conf}{more}"
    if not strong:
        text += f" — all hits below confidence {INTEL_MIN_CONFIDENCE}"
    return bool(strong), text


def context_steps(inc: Incident, asset: AssetRef | None) -> list[tuple[int, str]]:
    """(change, reason) of the context steps 1–5 that apply, before capping."""
    steps: list[tuple[int, str]] = []
    crit, name = (asset.criticality, asset.name) if asset is not None else (None, "")
    if network_c2(inc):
        asker = name or ", ".join(inc.entities.src_ips[:3]) or "?"
        steps.append((0, f"C2 seen on the network: the host that asked ({asker}) is the suspect, not the server "
                         f"it talked to{'' if asset else '; it is no inventory asset'}"))
    if crit == "critical":
        steps.append((1, f"asset {name!r} is critical"))
    elif crit == "high" and inc.outcome in ("failed", "attempted", "succeeded"):
        steps.append((1, f"asset {name!r} is high-criticality and the activity was not blocked "
                         f"(outcome {inc.outcome})"))
    if inc.outcome == "blocked" and crit != "low":
        steps.append((0, "outcome blocked: nothing got through (every try was stopped, or failed and its source "
                         "was blocked)" + (f"; asset {name!r} does not raise blocked activity" if crit else "")))
    if inc.outcome == "succeeded":
        steps.append((1, "outcome succeeded: the activity took effect (successful action or host evidence)"))
    if inc.intel:
        strong, text = _intel_reason(inc.intel)
        steps.append((1 if strong else 0, text))
    if inc.fused_from:
        stages = inc.stages or [inc.category]
        n = len(inc.fused_from) + 1
        if len(stages) > 1:
            steps.append((1, f"multi-stage attack: {' + '.join(stages)} ({n} incidents fused)"))
        else:
            steps.append((0, f"{n} incidents of one {inc.category} activity fused (one stage)"))
    if inc.outcome == "blocked" and crit == "low":
        steps.append((-1, f"all activity was blocked and asset {name!r} is low-criticality"))
    return steps


def prioritize(inc: Incident, asset: AssetRef | None = None, escort: EscortPeriod | None = None,
               now: datetime | None = None) -> None:
    """Set priority, priority_reasons, sla_due, sla_breached, escort and the title suffix (idempotent). The one
    writer of an incident's priority and its reasons: the core calls it for every incident it emits (through a
    context's hook, or bare without one); fusion only records what it merged (`Incident.fused`)."""
    base, why = base_level(inc)
    level = PRIORITIES.index(base)
    reasons = [why, *fusion_reasons(inc)]
    raised = 0
    for change, text in context_steps(inc, asset):
        if change > 0 and level == 0:
            reasons.append(f"not raised (already P1): {text}")
        elif change > 0 and raised >= MAX_CONTEXT_RAISE:
            reasons.append(f"not raised: {text} (context raises at most {MAX_CONTEXT_RAISE} levels)")
        elif change < 0 and level == len(PRIORITIES) - 1:
            reasons.append(f"not lowered (already P5): {text}")
        elif change:
            level -= change
            raised += max(change, 0)
            reasons.append(f"{'raised' if change > 0 else 'lowered'} to {_p(level)}: {text}")
        else:
            reasons.append(f"unchanged {_p(level)}: {text}")
    inc.escort = escort.name if escort is not None else None
    if escort is not None:
        text = f"escort period {escort.name!r} ({escort.start:%Y-%m-%d} – {escort.end:%Y-%m-%d})"
        reasons.append(f"raised to {_p(level - 1)}: {text}" if level else f"not raised (already P1): {text}")
        level = max(level - 1, 0)
    inc.priority = _p(level)
    inc.sla_due = response_due(inc)
    inc.sla_breached = sla_state(inc.sla_due, None, now or utcnow()) == "breached"
    reasons.append(f"SLA {_duration(SLA[inc.priority])}: respond by {inc.sla_due.isoformat()}")
    inc.priority_reasons = reasons
    title = ESCORT_SUFFIX.sub("", inc.title)
    inc.title = f"{title} [escort: {inc.escort}]" if inc.escort else title


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    return f"{s} s" if s < 60 else f"{s // 60} min" if s < 3600 else f"{s // 3600} h"
