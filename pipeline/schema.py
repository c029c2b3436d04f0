"""Normalized alert and incident models (the hot path: msgspec Structs).

Field names follow OCSF Detection Finding (class 2004) where they fit; `schemas/alert.schema.json` and
`schemas/incident.schema.json` are the published contracts and a test keeps them in step with these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import Struct, field

from pipeline.redact import REDACTOR, redact

FAMILIES = ("waf", "ids", "firewall", "host", "av", "fim", "auth", "ddos", "cloud")
# Families whose sensor runs on the host an alert is about (the host's own name is the asset).
HOST_FAMILIES = frozenset({"host", "fim", "av", "auth"})
ACTIONS = ("blocked", "allowed", "detected", "failed", "succeeded")
SEVERITY_LABELS = ("info", "low", "medium", "high", "critical")
# Label -> default 0..100 score (OCSF severity_id 1..5 scaled).
SEVERITY_SCORES = {"info": 10, "low": 30, "medium": 50, "high": 75, "critical": 95}

CATEGORIES = (
    "scan", "brute_force", "account_compromise", "web_attack", "exploit", "webshell", "malware", "c2",
    "defacement", "dos", "data_leak", "policy", "other",
)
# National incident scheme (GB/T 20986 top-level classes as used in the Tencent guide).
CATEGORY_CLASS = {
    "scan": "network_attack", "brute_force": "network_attack", "web_attack": "network_attack",
    "exploit": "network_attack", "dos": "network_attack",
    "account_compromise": "intrusion", "webshell": "intrusion", "defacement": "intrusion",
    "data_leak": "intrusion", "c2": "malware", "malware": "malware",
    "policy": "other", "other": "other",
}
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
UNRATED = ""  # an incident's priority until `context.priority.prioritize` rates it (the core does, always)


class Source(Struct, omit_defaults=True, frozen=True, gc=False):
    product: str
    vendor: str
    family: str
    format: str = ""


class Severity(Struct, omit_defaults=True, frozen=True, gc=False):
    label: str = "medium"
    score: int = 50


class Rule(Struct, omit_defaults=True, gc=False):
    id: str = ""
    name: str = ""
    category: str | None = None
    tags: list[str] = []
    severity: str | None = None


class Endpoint(Struct, omit_defaults=True, gc=False):
    ip: str | None = None
    port: int | None = None
    hostname: str | None = None


class Http(Struct, omit_defaults=True, gc=False):
    method: str | None = None
    url: str | None = None
    host: str | None = None
    status: int | None = None
    user_agent: str | None = None


class HostInfo(Struct, omit_defaults=True, gc=False):
    name: str | None = None
    ip: str | None = None


class Process(Struct, omit_defaults=True, gc=False):
    name: str | None = None
    cmdline: str | None = None
    uid: str | None = None
    pid: int | None = None
    exe: str | None = None


class File(Struct, omit_defaults=True, gc=False):
    path: str | None = None
    hash: str | None = None
    change: str | None = None  # added | changed | removed | written


class Network(Struct, omit_defaults=True, gc=False):
    proto: str | None = None
    community_id: str | None = None
    bytes: int | None = None
    packets: int | None = None


class Dns(Struct, omit_defaults=True, gc=False):
    query: str | None = None
    rtype: str | None = None


class AssetRef(Struct, omit_defaults=True, gc=False):
    name: str
    criticality: str = "medium"
    exposure: str | None = None
    owner: str | None = None
    tags: list[str] = []


class IntelHit(Struct, omit_defaults=True, gc=False):
    indicator: str
    type: str
    field: str
    source: str
    confidence: int | None = None
    tags: list[str] = []


class Alert(Struct, omit_defaults=True, kw_only=True, gc=False):
    alert_id: str
    tenant_id: str
    source: Source
    time: datetime
    received_at: datetime
    severity: Severity = Severity()
    rule: Rule = field(default_factory=Rule)
    rules: list[Rule] = []  # every rule the product reported for this record (CRS transactions carry many)
    action: str = "detected"
    message: str | None = None
    src: Endpoint = field(default_factory=Endpoint)
    dst: Endpoint = field(default_factory=Endpoint)
    http: Http | None = None
    host: HostInfo | None = None
    user: str | None = None
    process: Process | None = None
    file: File | None = None
    network: Network | None = None
    dns: Dns | None = None
    attack: list[str] = []
    extra: dict[str, Any] = {}  # product-specific fields kept for rules (auditd key, CRS anomaly score, ...)
    fingerprint: str = ""
    count: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    asset: AssetRef | None = None
    intel: list[IntelHit] = []
    raw: str = ""


class DeadLetter(Struct, omit_defaults=True, kw_only=True, gc=False):
    reason: str
    detail: str = ""
    source: str = ""  # format name or "unknown"
    stage: str | None = None  # where it failed after normalization: dedup, enrich, match, incident, ... soar
    alert_id: str | None = None  # the alert that failed there
    tenant_id: str | None = None
    file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    field: str | None = None
    raw: str = ""
    raw_encoding: str = "utf-8"  # or base64 when the input was not text
    raw_length: int | None = None  # set when `raw` holds only the first bytes of an over-long input:
    raw_sha256: str | None = None  # the whole input's length in bytes and sha256 (hex)

    def __post_init__(self) -> None:
        if REDACTOR:  # a configured secret never reaches a dead-letter file or topic
            self.detail = redact(self.detail)
            if self.raw_encoding == "utf-8":
                self.raw = redact(self.raw)


class Suppressed(Struct, omit_defaults=True, kw_only=True, gc=False):
    """An alert the noise classifier held back: kept for audit, counted in statistics, promotable."""

    alert: Alert
    score: float
    threshold: float
    model_version: str
    reason: str
    contributions: dict[str, float] = {}


class Fate(Struct, omit_defaults=True, kw_only=True, gc=False):
    """What the core did with one raw alert (one record per normalized alert, `fates.jsonl`):

    - `representative`: kept as an alert of its own (it may be in incidents: `mdr trace` joins them);
    - `suppressed`: held back as noise, with the score, threshold and model of its own decision (`of`: the
      suppressed representative it was merged into, when it was a duplicate judged on its own);
    - `duplicate`: merged into representative `of` (its fate is that of `of`);
    - `same_event`: another log's view of the event of alert `of` (e.g. the Apache error log line of a
      ModSecurity transaction);
    - `dead_letter`: the core failed on it in `stage` (a `core_error` dead letter with its raw record; `of`:
      the representative a duplicate had merged into)."""

    alert_id: str
    tenant_id: str
    record_id: str | None = None  # the product's own id (ModSecurity transaction id, event id, ...)
    time: datetime
    fate: str
    of: str | None = None
    judged_alone: bool = False  # a duplicate of a suppressed representative, judged on its own
    score: float | None = None
    threshold: float | None = None
    model_version: str | None = None
    stage: str | None = None  # of a dead_letter: the stage that failed


class MatchExplanation(Struct, omit_defaults=True, gc=False):
    use_case: str
    title: str
    alert_ids: list[str]
    conditions: dict[str, list[str]] = {}  # condition / selection -> alert ids
    correlation: dict[str, Any] | None = None  # type, count, timespan, group_by values


class FusedPart(Struct, omit_defaults=True, gc=False):
    """What fusion recorded of one incident it merged into a survivor (read by `prioritize`)."""

    incident_id: str
    title: str  # as it was merged (without an escort suffix)
    category: str
    base_priority: str  # the part's own use-case priority
    use_cases: list[str] = []


class Entities(Struct, omit_defaults=True, gc=False):
    src_ips: list[str] = []
    dst_ips: list[str] = []
    hosts: list[str] = []
    users: list[str] = []
    files: list[str] = []
    urls: list[str] = []
    processes: list[str] = []
    domains: list[str] = []


class Incident(Struct, omit_defaults=True, kw_only=True, gc=False):
    incident_id: str
    tenant_id: str
    title: str
    category: str
    class_: str = field(name="class")
    priority: str
    base_priority: str = "P4"  # the opening use case's own priority (`prioritize` adds fusion and context)
    priority_reasons: list[str] = []
    detected_at: datetime | None = None  # event time of the alert with which the pipeline raised it (SLA start)
    sla_due: datetime | None = None
    sla_breached: bool = False
    use_cases: list[str]
    first_seen: datetime
    last_seen: datetime
    alert_count: int
    alert_ids: list[str]
    sources: dict[str, list[str]] = {}  # {"families": [...], "products": [...]}
    entities: Entities = field(default_factory=Entities)
    attack: list[str] = []
    outcome: str = "unknown"  # blocked | failed | attempted | succeeded | unknown (pipeline/core/incidents.py)
    explanation: list[MatchExplanation] = []
    fused_from: list[str] = []  # ids of incidents merged into this one
    fused: list[FusedPart] = []  # what fusion recorded of each of them, in merge order (`prioritize` reads it)
    fused_counts: dict[str, int] = {}  # merged incident id -> its alert_count (included in alert_count)
    merged_into: str | None = None  # set (with status "merged") on an incident fused into another
    stages: list[str] = []  # categories of the incidents fused into this one (its own first)
    asset: AssetRef | None = None
    intel: list[IntelHit] = []
    escort: str | None = None
    playbook: str | None = None
    status: str = "open"  # open | closed | merged
    version: int = 1


_encoder = msgspec.json.Encoder()
_alert_decoder = msgspec.json.Decoder(Alert)
_incident_decoder = msgspec.json.Decoder(Incident)


def encode(obj: Struct) -> bytes:
    """JSON bytes of a model (one line, no trailing newline)."""
    return _encoder.encode(obj)


def decode_alert(data: bytes | str) -> Alert:
    return _alert_decoder.decode(data)


def decode_incident(data: bytes | str) -> Incident:
    return _incident_decoder.decode(data)


def to_builtins(obj: Any) -> Any:
    """Plain dict/list/str form of a model (for templates, rules and JSON Schema checks)."""
    return msgspec.to_builtins(obj)


def utc(dt: datetime) -> datetime:
    """The same instant in UTC; naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def network_c2(inc: Incident) -> bool:
    """A C2 incident seen only on the network (no host evidence): its sources are the suspects."""
    return inc.category == "c2" and not HOST_FAMILIES & set(inc.sources.get("families", ()))
