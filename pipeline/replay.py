"""`mdr replay`: the file adapter. Reads files, drives the core, writes JSONL outputs. No logic of its own.

The files' alerts come from `AlertSource` (`pipeline.normalize.source`) in event-time order, as a stream of the
same day would deliver them, in chunks; the core takes each chunk, moves the tenant's watermark and expires
what closed before it, exactly as in the streaming worker. After each chunk the sinks get what is final: dead
letters at once; an alert (with its suppression) once its dedup window has closed and its count can no longer
grow; an incident's updates as they come, and the incident once more when it is in no window any more. So a
long replay holds the core's windows, not the input nor its outputs: `OutputFiles` writes alerts.jsonl,
dlq.jsonl, suppressed.jsonl and fates.jsonl as it goes, incidents.jsonl from the final incidents it set aside
and drift.json at the end; `ReplayResult` collects everything (tests, and the ticket and report steps of
`mdr replay`).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from pipeline.core.engine import Core, Outputs
from pipeline.normalize.reader import Inputs, SkippedPath
from pipeline.normalize.source import AlertSource
from pipeline.redact import redact_bytes
from pipeline.schema import Alert, DeadLetter, Fate, Incident, Suppressed, encode
from pipeline.tenant import check_tenant


@dataclass(slots=True)
class ReplayPart:
    """What one chunk of input gave, as far as it is final."""

    records: int = 0
    alerts_raw: int = 0  # normalized alerts before dedup
    skipped: Counter[str] = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)  # after dedup, final counts, in the order the core emitted
    suppressed: list[Suppressed] = field(default_factory=list)  # of those alerts
    fates: list[Fate] = field(default_factory=list)  # what became of each normalized alert (final when made)
    incidents: dict[str, Incident] = field(default_factory=dict)  # updated incidents, latest state
    final_incidents: list[Incident] = field(default_factory=list)  # no longer in any window: each handed over once
    duplicates: int = 0  # normalized alerts folded into an earlier alert by dedup (repeats)
    same_event: int = 0  # alerts of a secondary log merged into the primary log's alert of the same event


class Sink(Protocol):
    def take(self, part: ReplayPart) -> None: ...


@dataclass(slots=True)
class ReplayResult:
    """A whole replay in memory (a Sink)."""

    records: int = 0
    alerts_raw: int = 0  # normalized alerts before dedup
    alerts: list[Alert] = field(default_factory=list)  # after dedup (final counts)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    suppressed: list[Suppressed] = field(default_factory=list)
    fates: list[Fate] = field(default_factory=list)  # one per normalized alert (see pipeline.schema.Fate)
    incidents: dict[str, Incident] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped_paths: list[SkippedPath] = field(default_factory=list)  # under the named directories, not read
    duplicates: int = 0  # normalized alerts folded into an earlier alert by dedup (repeats)
    same_event: int = 0  # alerts of a secondary log merged into the primary log's alert of the same event
    late: int = 0  # alerts fed after a later one (see pipeline.normalize.source)
    drift: dict = field(default_factory=dict)  # (tenant, day) -> TenantDrift of the noise model
    model_version: str | None = None

    def take(self, part: ReplayPart) -> None:
        self.records += part.records
        self.alerts_raw += part.alerts_raw
        self.skipped.update(part.skipped)
        self.dead.extend(part.dead)
        self.alerts.extend(part.alerts)
        self.suppressed.extend(part.suppressed)
        self.fates.extend(part.fates)
        self.incidents.update(part.incidents)
        self.duplicates += part.duplicates
        self.same_event += part.same_event

    @property
    def open_incidents(self) -> list[Incident]:
        """Incidents an analyst sees (fused parts are folded into their survivor)."""
        return [i for i in self.sorted_incidents() if i.status != "merged"]

    def sorted_incidents(self) -> list[Incident]:
        return sorted(self.incidents.values(), key=lambda i: (i.first_seen, i.incident_id))

    def dead_by_reason(self) -> Counter[str]:
        return Counter(d.reason for d in self.dead)


class OutputFiles:
    """alerts.jsonl, dlq.jsonl, suppressed.jsonl and fates.jsonl (what became of every alert: `mdr trace`) in
    `out_dir`, written as the parts come (a Sink), and incidents.jsonl (each incident's final state, by first
    seen) on `close()`, with drift.json when a noise model ran; configured secrets redacted. Final incidents go
    to a scratch file as they come; `close()` writes them in order from it."""

    NAMES = ("alerts", "dlq", "incidents", "suppressed", "fates")

    def __init__(self, out_dir: str | Path):
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.paths = {k: d / f"{k}.jsonl" for k in self.NAMES}
        self._scratch = d / ".incidents.unsorted"
        self._open = contextlib.ExitStack()
        self._fh: dict[str, IO[bytes]] = {k: self._open.enter_context(p.open("wb")) for k, p in (
            *((k, self.paths[k]) for k in self.NAMES if k != "incidents"), ("scratch", self._scratch))}
        self._where: dict[str, tuple[datetime, int, int]] = {}  # incident id -> (first seen, offset, length)

    def take(self, part: ReplayPart) -> None:
        _write(self._fh["alerts"], part.alerts)
        _write(self._fh["dlq"], part.dead)
        _write(self._fh["suppressed"], part.suppressed)
        _write(self._fh["fates"], part.fates)
        scratch = self._fh["scratch"]
        for inc in part.final_incidents:
            line = redact_bytes(encode(inc)) + b"\n"
            self._where[inc.incident_id] = (inc.first_seen, scratch.tell(), len(line))
            scratch.write(line)

    def close(self, drift: dict | None = None, model_version: str | None = None) -> dict[str, Path]:
        """Write incidents.jsonl (and drift.json of the noise model's `drift`) and close the files."""
        self._open.close()
        with self._scratch.open("rb") as src, self.paths["incidents"].open("wb") as out:
            for _, (_, offset, length) in sorted(self._where.items(), key=lambda kv: (kv[1][0], kv[0])):
                src.seek(offset)
                out.write(src.read(length))
        self._scratch.unlink()
        written = dict(self.paths)
        if drift:
            from pipeline.classify.drift import by_tenant

            written["drift"] = self.paths["alerts"].with_name("drift.json")
            written["drift"].write_text(json.dumps({"model_version": model_version, "tenants": {
                t: v.to_dict() for t, v in sorted(by_tenant(drift).items())}}, indent=2) + "\n", encoding="utf-8")
        return written


def write_outputs(res: ReplayResult, out_dir: str | Path) -> dict[str, Path]:
    """The output files of a replay held in memory, as `OutputFiles` writes them."""
    files = OutputFiles(out_dir)
    files.take(ReplayPart(dead=res.dead, alerts=res.alerts, suppressed=res.suppressed, fates=res.fates,
                          final_incidents=list(res.incidents.values())))
    return files.close(res.drift, res.model_version)


def _write(fh: IO[bytes], items: Iterable[Alert | DeadLetter | Suppressed | Fate]) -> None:
    for it in items:
        fh.write(redact_bytes(encode(it)))
        fh.write(b"\n")


class _Finality:
    """What the core emitted, let out once final. Alerts in the order emitted, each with its suppression, once no
    longer a dedup representative (replaced or expired): their count and content no longer change. Incidents
    once in no window: neither open nor held for fusion."""

    def __init__(self, core: Core):
        self.core = core
        self.waiting: deque[tuple[Alert, Suppressed | None]] = deque()
        self.incidents: dict[str, Incident] = {}

    def add(self, out: Outputs) -> None:
        held = {s.alert.alert_id: s for s in out.suppressed}
        self.waiting.extend((a, held.get(a.alert_id)) for a in out.alerts)
        self.incidents.update(out.incidents)

    def release(self, part: ReplayPart, everything: bool = False) -> None:
        waiting, holds = self.waiting, self.core.dedup.holds
        while waiting and (everything or not holds(waiting[0][0])):
            a, s = waiting.popleft()
            part.alerts.append(a)
            if s is not None:
                part.suppressed.append(s)
        if everything:
            part.final_incidents.extend(self.incidents.values())
            self.incidents.clear()
            return
        fused = self.core.fusion.incidents
        open_ = {inc.incident_id for inc in self.core.builder.open.values()}
        for iid in [i for i in self.incidents if i not in fused and i not in open_]:
            part.final_incidents.append(self.incidents.pop(iid))


def run(source: AlertSource, core: Core, *sinks: Sink) -> None:
    """Drive the core with the source's chunks; hand what is final to the sinks after each chunk."""
    final = _Finality(core)
    for chunk in source:
        core.feed_alerts(chunk.alerts)
        out = core.take()
        final.add(out)
        part = ReplayPart(chunk.records, len(chunk.alerts), chunk.skipped, [*chunk.dead, *out.dead],
                          fates=out.fates, incidents=out.incidents, duplicates=out.duplicates,
                          same_event=out.same_event)
        final.release(part)
        for s in sinks:
            s.take(part)
    core.release_held()  # the end of input: a secondary log's alert still waiting for its pair goes alone
    out = core.take()
    final.add(out)
    part = ReplayPart(dead=out.dead, fates=out.fates, incidents=out.incidents, duplicates=out.duplicates,
                      same_event=out.same_event)
    final.release(part, everything=True)  # nothing changes any more
    for s in sinks:
        s.take(part)


def replay(paths: Iterable[str] | Inputs, core: Core, tenant: str, host: str | None = None,
           fmt: str | None = None, progress: Callable[[str, int], None] | None = None,
           sinks: Iterable[Sink] = ()) -> ReplayResult:
    """Run files (paths, or what `walk` found) through the core and collect the result (also handed to
    `sinks`). `progress(file, bytes)` is called after each file. The files are one collection point: `host`
    names it (else the one name its host records carry; pipeline/naming.py)."""
    check_tenant(tenant)
    source = AlertSource(paths, tenant, host, fmt, progress=progress, name_collection_point=host is None)
    res = ReplayResult(files=source.files, skipped_paths=source.skipped_paths)
    run(source, core, res, *sinks)
    res.late = source.late
    if core.classifier is not None:
        from pipeline.classify.drift import classifier_drift

        res.drift = classifier_drift(core.classifier)
        res.model_version = getattr(getattr(core.classifier, "active", core.classifier), "version", None)
    return res
