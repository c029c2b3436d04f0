"""Incidents from `mdr.incidents` for a terminal: the demo's live table and `mdr incidents tail`.

Both read at 80 columns: an incident is one row (or line) with its priority, its short id, its title cut with an
ellipsis, and under it why it has that priority; an incident fused into another names its survivor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.text import Text

from pipeline.schema import Incident, decode_incident
from pipeline.tables import fitted

SHORT_ID = 8


def short(incident_id: str | None) -> str:
    return (incident_id or "")[:SHORT_ID]


def key_reason(inc: Incident) -> str:
    """The reason behind the final priority: the last raise or lowering, else the base (never the SLA line)."""
    moves = [r for r in inc.priority_reasons if r.startswith(("raised to", "lowered to"))]
    if moves:
        return moves[-1]
    return inc.priority_reasons[0] if inc.priority_reasons else f"base {inc.priority}"


def state(inc: Incident) -> str:
    return f"-> {short(inc.merged_into)}" if inc.status == "merged" and inc.merged_into else inc.status


def ordered(incidents: Iterable[Incident]) -> list[Incident]:
    """Open ones first, most urgent first; the ones fused into another last."""
    return sorted(incidents, key=lambda i: (i.status == "merged", i.priority, i.first_seen, i.incident_id))


def incident_table(incidents: Iterable[Incident], width: int, title: str) -> Any:
    """The demo's table: id, priority, title with the priority's reason under it, alerts, outcome, status."""
    shown = ordered(incidents)
    rows, styles = [], []
    for i in shown:
        rows.append([short(i.incident_id), i.priority, Text.assemble(i.title, "\n", (key_reason(i), "dim")),
                     str(i.alert_count), i.outcome, state(i)])
        styles.append("dim" if i.status == "merged" else ("bold red" if i.priority in ("P1", "P2") else None))
    return fitted(("id", "prio", "incident / why this priority", "alerts", "outcome", "status"), rows, width,
                  wide="incident / why this priority", title=title, styles=styles)


def incident_line(inc: Incident) -> Text:
    """One update as a line (and its priority's reason on a second, indented line)."""
    head = Text.assemble((f"{inc.priority} ", "bold red" if inc.priority in ("P1", "P2") else "bold"),
                         f"{short(inc.incident_id)} {state(inc):<11} {inc.tenant_id}: {inc.title} ",
                         (f"({inc.alert_count} alerts, {inc.outcome})", "dim"))
    if inc.status != "merged":
        head.append(f"\n    {key_reason(inc)}", style="dim")
    return head


def read_incidents(bootstrap: str, topic: str, *, from_beginning: bool = True, follow: bool = True,
                   idle: float | None = None, stop: Callable[[], bool] = lambda: False
                   ) -> Iterator[tuple[bytes | None, Incident | None]]:
    """(key, incident) of every record of the incidents topic (all partitions), from the beginning (the
    compacted topic holds each incident's latest state) or only new ones; without `follow` it ends at the
    end of the topic as it was when it started, with `idle` after that many seconds without records."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        ends = consumer.end_offsets(tps) if tps else {}
        last = time.monotonic()
        while not stop():
            got = consumer.poll(timeout_ms=250)
            for recs in got.values():
                for r in recs:
                    last = time.monotonic()
                    yield r.key, decode_incident(r.value) if r.value else None
            if not follow and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return
            if idle is not None and time.monotonic() - last > idle:
                return
    finally:
        consumer.close()
