"""`mdr replay`: the file adapter. Reads files, drives the core, writes JSONL outputs. No logic of its own.

Records are normalized file by file, then their alerts go through the core in event-time order, as a stream
of the same day would deliver them; the result does not depend on file order or chunking.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.engine import Core, Outputs
from pipeline.naming import at_collection_point, reported_name
from pipeline.normalize.reader import Inputs, SkippedPath, read_records, walk
from pipeline.normalize.stage import NormalizeResult
from pipeline.redact import redact_bytes
from pipeline.schema import Alert, Incident, encode
from pipeline.tenant import check_tenant

BATCH = 2048


@dataclass(slots=True)
class ReplayResult:
    records: int = 0
    alerts_raw: int = 0  # normalized alerts before dedup
    alerts: list[Alert] = field(default_factory=list)  # after dedup (final counts)
    dead: list = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    suppressed: list = field(default_factory=list)
    fates: list = field(default_factory=list)  # one Fate per normalized alert (see pipeline.schema.Fate)
    incidents: dict[str, Incident] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped_paths: list[SkippedPath] = field(default_factory=list)  # under the named directories, not read
    duplicates: int = 0  # normalized alerts folded into an earlier alert by dedup (repeats)
    same_event: int = 0  # alerts of a secondary log merged into the primary log's alert of the same event
    drift: dict = field(default_factory=dict)  # (tenant, day) -> TenantDrift of the noise model
    model_version: str | None = None

    @property
    def open_incidents(self) -> list[Incident]:
        """Incidents an analyst sees (fused parts are folded into their survivor)."""
        return [i for i in self.sorted_incidents() if i.status != "merged"]

    def sorted_incidents(self) -> list[Incident]:
        return sorted(self.incidents.values(), key=lambda i: (i.first_seen, i.incident_id))

    def dead_by_reason(self) -> Counter[str]:
        return Counter(d.reason for d in self.dead)



def replay(paths: Iterable[str] | Inputs, core: Core, tenant: str, host: str | None = None,
           fmt: str | None = None, progress: Callable[[str, int], None] | None = None) -> ReplayResult:
    """Run files (paths, or what `walk` found) through the core. `progress(file, bytes_done)` is called
    after each file. The files are one collection point: `host` names it (else the one name its host records
    carry; pipeline/naming.py)."""
    check_tenant(tenant)
    inputs = paths if isinstance(paths, Inputs) else walk(list(paths))
    now = datetime.now(UTC)
    norm = NormalizeResult()
    res = ReplayResult(files=inputs.files, skipped_paths=inputs.skipped)
    for f in inputs.files:
        for rec, hint in read_records(f, tenant, host, now, fmt):
            core.normalize.process(rec, hint, norm)
        if progress is not None:
            progress(f, inputs.sizes.get(f, 0))
    core.normalize.flush(norm)
    if host is None:  # one collection point: named by the one host name its on-host records carry
        at_collection_point(norm.alerts, reported_name(norm.alerts))
    res.records = norm.records
    res.alerts_raw = len(norm.alerts)
    res.dead.extend(norm.dead)
    res.skipped.update(norm.skipped)
    alerts = sorted(norm.alerts, key=lambda a: a.time)
    acc = Outputs()
    for i in range(0, len(alerts), BATCH):
        core.feed_alerts(alerts[i:i + BATCH])
        acc.add(core.take())
    res.alerts.extend(acc.alerts)
    res.dead.extend(acc.dead)
    res.skipped.update(acc.skipped)
    res.suppressed.extend(acc.suppressed)
    res.fates.extend(acc.fates)
    res.incidents.update(acc.incidents)
    res.duplicates, res.same_event = acc.duplicates, acc.same_event
    if core.classifier is not None:
        from pipeline.classify.drift import classifier_drift

        res.drift = classifier_drift(core.classifier)
        res.model_version = getattr(getattr(core.classifier, "active", core.classifier), "version", None)
    return res


def write_outputs(res: ReplayResult, out_dir: str | Path) -> dict[str, Path]:
    """alerts.jsonl, dlq.jsonl, incidents.jsonl, suppressed.jsonl and fates.jsonl (what became of every alert:
    `mdr trace`) in `out_dir` (configured secrets redacted); drift.json when a noise model ran."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "alerts": (d / "alerts.jsonl", res.alerts),
        "dlq": (d / "dlq.jsonl", res.dead),
        "incidents": (d / "incidents.jsonl", res.sorted_incidents()),
        "suppressed": (d / "suppressed.jsonl", res.suppressed),
        "fates": (d / "fates.jsonl", res.fates),
    }
    for path, items in files.values():
        with open(path, "wb") as fh:
            for it in items:
                fh.write(redact_bytes(encode(it)))
                fh.write(b"\n")
    written = {k: v[0] for k, v in files.items()}
    if res.drift:
        from pipeline.classify.drift import by_tenant

        written["drift"] = d / "drift.json"
        written["drift"].write_text(json.dumps({"model_version": res.model_version, "tenants": {
            t: v.to_dict() for t, v in sorted(by_tenant(res.drift).items())}}, indent=2) + "\n", encoding="utf-8")
    return written
