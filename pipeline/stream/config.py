"""Settings of the streaming worker: topic names, tenant bindings, batching, state and Faust tuning."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline import paths
from pipeline.tenant import check_tenant

PREFIX = "mdr."
INGEST = ("waf", "firewall", "host", "ddos")


@dataclass(slots=True)
class Topics:
    """Topic names; every name starts with the configured prefix."""

    prefix: str = PREFIX
    ingest_kinds: tuple[str, ...] = INGEST

    @property
    def ingest(self) -> list[str]:
        return [f"{self.prefix}alerts.{k}" for k in self.ingest_kinds]

    def ingest_topic(self, kind: str) -> str:
        return f"{self.prefix}alerts.{kind}"

    @property
    def internal(self) -> str:  # normalized alerts, repartitioned by tenant
        return f"{self.prefix}internal.by-tenant"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}incidents"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts.normalized"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def suppressed(self) -> str:
        return f"{self.prefix}suppressed"

    @property
    def fates(self) -> str:  # what became of every alert (`pipeline.schema.Fate`), keyed by alert id
        return f"{self.prefix}fates"

    @property
    def tickets(self) -> str:
        return f"{self.prefix}tickets"

    @property
    def verdicts(self) -> str:
        return f"{self.prefix}verdicts"

    @property
    def usecases(self) -> str:
        return f"{self.prefix}usecases"

    @property
    def compacted(self) -> list[str]:
        return [self.incidents, self.usecases]

    @property
    def plain(self) -> list[str]:
        return [*self.ingest, self.alerts, self.dlq, self.suppressed, self.fates, self.tickets, self.verdicts]


@dataclass(slots=True)
class WorkerConfig:
    """Everything `mdr worker` needs. `from_env` fills the broker address from MDR_KAFKA_BOOTSTRAP."""

    bootstrap: str = "127.0.0.1:9092"
    bootstrap_from: str = "the default"  # where the address came from (for messages)
    app_id: str = "mdr-worker"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4  # of the by-tenant topic and the state table (scale-out unit)
    # the ingest topics are keyed by tenant and have `partitions` partitions: a tenant's alerts run where they
    # are read, without the by-tenant topic (alerts of a message on another partition still take it)
    tenant_keyed: bool = False
    tenant_bindings: dict[str, str] = field(default_factory=dict)  # ingest topic -> tenant
    usecases: Path = field(default_factory=paths.usecases_dir)
    data_dir: Path = Path(".mdr-worker")
    dedup_window: float = 600.0
    lateness: float = 600.0
    normalize_batch: int = 20_000  # ingest events per take
    normalize_within: float = 0.05  # seconds
    quiet: float = 0.1  # flush a partition's pending alerts after this much silence ...
    max_hold: float = 0.25  # ... or once the oldest pending alert waited this long
    # ... or once this many alerts wait (0: no bound). Tenant-keyed ingest also normalizes a take in slices of
    # about this many alerts and runs the partitions due between them, so work stays in small runs under load
    max_run: int = 2048
    idle_flush: float = 2.0  # flush stateful normalizers (auditd assembly) after this much ingest silence
    metrics_port: int = 0  # 0: no HTTP server
    db_url: str | None = None  # SOAR ticket store; tickets go to mdr.tickets when set
    soar_tick: float = 10.0  # seconds between beats of the SOAR clock (escalation, run resumption; one worker)
    model: Path | None = None  # noise classifier (`mdr model train`); None: no classification
    verdicts_file: Path | None = None
    log_level: str = "info"
    max_attempts: int = 3  # a message that made the worker fail this many times is dead-lettered (poison)
    shutdown_grace: float = 10.0  # seconds a stop may take before the process exits regardless

    @classmethod
    def from_env(cls, **kw: object) -> WorkerConfig:
        from pipeline.stream.outage import bootstrap_of

        cfg = cls(**{k: v for k, v in kw.items() if v is not None})  # type: ignore[arg-type]  # CLI options by field name
        cfg.bootstrap, cfg.bootstrap_from = bootstrap_of(kw.get("bootstrap"))  # type: ignore[arg-type]  # as above
        return cfg


def parse_bindings(items: list[str] | None, topics: Topics) -> dict[str, str]:
    """`--bind waf=shop` or `--bind mdr.alerts.waf=shop` -> {topic: tenant}; ValueError (TenantError for a bad
    tenant id) on a bad item."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, tenant = item.partition("=")
        if not sep or not name:
            raise ValueError(f"bad binding {item!r}; want TOPIC=TENANT")
        check_tenant(tenant, f"tenant of binding {item!r}")
        out[name if name.startswith(topics.prefix) else topics.ingest_topic(name)] = tenant
    return out
