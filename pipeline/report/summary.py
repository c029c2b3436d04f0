"""The manager's paragraph: an assessment written from the report's numbers (no free text from the data other
than incident titles, addresses and names of the tenant's own records)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.schema import PRIORITIES

if TYPE_CHECKING:
    from pipeline.report.data import IncidentRow, ReportData


def duration(m: float | None) -> str:
    """Minutes as '45 min', '3 h 05 min' or '2 d 4 h'; '–' when unknown."""
    if m is None:
        return "–"
    if m < 60:
        return f"{m:.0f} min" if m >= 1 else f"{m * 60:.0f} s"
    h, mm = divmod(round(m), 60)
    if h < 48:
        return f"{h} h {mm:02d} min"
    d, hh = divmod(h, 24)
    return f"{d} d {hh} h"


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def top_threat(d: ReportData) -> IncidentRow | None:
    """The incident that matters most: highest priority, then most alerts."""
    if not d.incidents:
        return None
    return min(d.incidents, key=lambda i: (PRIORITIES.index(i.priority), -i.alert_count, i.first_seen))


def _trend(now: int, prev: int, noun: str) -> str:
    if now == prev:
        return f"as many as the previous {noun}"
    word = "more" if now > prev else "fewer"
    return f"{abs(now - prev)} {word} than the previous {noun} ({prev})"


def assess(d: ReportData) -> str:
    f = d.funnel
    n = len(d.incidents)
    noun = d.period.noun
    parts = [
        f"During the {d.period.label} the service processed {f['records']:,} raw records into "
        f"{f['alerts_raw']:,} alerts; {f['alerts']:,} remained after deduplication, "
        f"{f['suppressed']:,} were suppressed as noise and {plural(n, 'incident')} were opened "
        f"({', '.join(f'{t.key} {t.now}' for t in d.by_priority)}), {_trend(n, len(d.prev_incidents), noun)}."
    ]
    top = top_threat(d)
    if top is not None:
        outcome = {"succeeded": "it succeeded", "blocked": "it was blocked", "failed": "every try failed",
                   "attempted": "it was attempted but did not succeed"}.get(top.outcome, "its outcome is unknown")
        parts.append(f"The top threat was “{top.title}” ({top.priority}, {top.category.replace('_', ' ')}); "
                     f"{outcome}.")
    if d.top_attackers and d.top_attackers[0][2]:
        ip, alerts, incs = d.top_attackers[0]
        parts.append(f"The most active attacker was {ip} ({plural(alerts, 'alert')}, "
                     f"{plural(incs, 'incident')}).")
    judged = d.sla_met + d.sla_breached
    if judged:
        verdict = "Every acknowledged incident met its response SLA" if not d.sla_breached else (
            f"{d.sla_breached} of {judged} incidents missed their response SLA")
        pending = sum(t.pending for t in d.timing)
        waiting = f", {pending} not acknowledged yet but still within their response time" if pending else ""
        parts.append(f"{verdict} ({pct(d.sla_met, judged)} on time{waiting}; median time to acknowledge "
                     f"{duration(d.overall('mtta'))}, median time to resolve {duration(d.overall('mttr'))}).")
    elif n:
        parts.append("No incident of the period has been acknowledged yet.")
    open_n, overdue = len(d.open_tickets), len(d.overdue)
    if open_n:
        parts.append(f"{plural(open_n, 'ticket')} remain open ({overdue} overdue); "
                     f"{d.closure_pct:.0f} % of this {noun}'s incidents are closed.")
    elif n:
        parts.append(f"Every incident of the {noun} is closed.")
    tuning = [v.title for v in d.verdicts if v.needs_tuning]
    if tuning:
        parts.append(f"Use cases that need tuning (mostly false positives): {', '.join(tuning)}.")
    if d.intel_hits:
        parts.append(f"Threat intelligence matched {plural(len(d.intel_hits), 'indicator')} in "
                     f"{plural(sum(1 for i in d.incidents if i.intel), 'incident')}.")
    if d.escort:
        names = sorted({i.escort for i in d.escort if i.escort})
        parts.append(f"{plural(len(d.escort), 'incident')} fell in the escort period {', '.join(names)}.")
    return " ".join(parts)
