"""What the health page shows: consumer lag of the worker group (read from the broker, so it shows while the
worker is down too), the workers' own metrics (their Prometheus endpoints: dead letters by reason, lag,
throughput, latency, readiness) and the store's view (open and breached tickets, playbook runs, dead letters
of replays). Per-tenant figures are limited to the tenants of the asker. Answers are cached for a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from pipeline.console.auth import Principal
from pipeline.console.queries import scoped
from pipeline.soar.models import PlaybookRun, Ticket, utcnow
from pipeline.store.alert_stats import FunnelStat

log = logging.getLogger("mdr.console")
CACHE_SECONDS = 5.0
TIMEOUT = 2.0


@dataclass(slots=True)
class Lag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


@dataclass(slots=True)
class WorkerView:
    url: str
    ready: bool | None = None
    error: str | None = None
    dead_letters: dict[str, float] = field(default_factory=dict)  # reason -> count
    lag: dict[str, float] = field(default_factory=dict)  # "topic:partition" -> messages behind
    counters: dict[str, float] = field(default_factory=dict)  # metric -> value (tenant labels dropped)
    alerts_by_tenant: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)  # "end-to-end p50" ... (seconds, from buckets)


def _cached(fn: Any) -> Any:
    cache: dict[Any, tuple[float, Any]] = {}
    lock = threading.Lock()

    def wrapper(*args: Any) -> Any:
        now = time.monotonic()
        with lock:
            hit = cache.get(args)
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        val = fn(*args)
        with lock:
            cache[args] = (now, val)
        return val

    return wrapper


@_cached
def consumer_lag(bootstrap: str, group: str) -> tuple[list[Lag], str | None]:
    """Committed offset and end offset per partition the group has committed on; (rows, error)."""
    from kafka import KafkaAdminClient, KafkaConsumer

    admin = consumer = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
        if hasattr(admin, "list_group_offsets"):  # kafka-python 3
            committed = admin.list_group_offsets({group: None}).get(group, {})
        else:
            committed = admin.list_consumer_group_offsets(group)
        if not committed:
            return [], None
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                 request_timeout_ms=int(TIMEOUT * 1000) + 1000)
        ends = consumer.end_offsets(list(committed))
        rows = [Lag(tp.topic, tp.partition, om.offset if om.offset >= 0 else None, ends.get(tp, 0))
                for tp, om in committed.items()]
        return sorted(rows, key=lambda r: (r.topic, r.partition)), None
    except Exception as e:
        return [], f"{type(e).__name__}: {e}"[:300]
    finally:
        for c in (consumer, admin):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The `q` quantile from cumulative histogram buckets [(le, count)], as the bucket's upper bound."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for le, n in buckets:
        if n >= q * total:
            return le
    return buckets[-1][0]


@_cached
def worker(url: str) -> WorkerView:
    """Scrape one worker's /metrics (and /healthz beside it)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    w = WorkerView(url)
    base = url.rsplit("/metrics", 1)[0]
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as c:
            body = c.get(url).text
            try:
                w.ready = c.get(base + "/healthz").status_code == 200
            except httpx.HTTPError:
                w.ready = None
    except httpx.HTTPError as e:
        w.error = f"{type(e).__name__}: {e}"[:300]
        return w
    hist: dict[str, dict[float, float]] = defaultdict(dict)
    try:
        for fam in text_string_to_metric_families(body):
            for smp in fam.samples:
                name, labels, value = smp.name, smp.labels, smp.value
                if name == "mdr_dead_letters_total":
                    w.dead_letters[labels.get("reason", "?")] = w.dead_letters.get(labels.get("reason", "?"), 0) + value
                elif name == "mdr_consumer_lag":
                    w.lag[f"{labels.get('topic')}:{labels.get('partition')}"] = value
                elif name == "mdr_alerts_total":
                    w.alerts_by_tenant[labels.get("tenant", "?")] = value
                elif name in ("mdr_records_total", "mdr_alerts_applied_total", "mdr_alerts_deduplicated_total",
                              "mdr_incident_updates_total", "mdr_suppressed_total", "mdr_verdicts_total",
                              "mdr_assigned_partitions"):
                    key = name.removesuffix("_total")
                    w.counters[key] = w.counters.get(key, 0) + value
                elif name in ("mdr_end_to_end_seconds_bucket", "mdr_alert_to_incident_seconds_bucket"):
                    le = float(labels.get("le", "inf"))
                    hist[name.removesuffix("_seconds_bucket")][le] = value
    except ValueError as e:
        w.error = f"unreadable metrics: {e}"[:300]
    for name, b in hist.items():
        buckets = sorted(b.items())
        for q in (0.5, 0.99):
            v = _quantile(buckets, q)
            if v is not None:
                w.latency[f"{name.removeprefix('mdr_').replace('_', ' ')} p{int(q * 100)}"] = v
    return w


def scoped_worker(w: WorkerView, who: Principal) -> WorkerView:
    """`w` without the per-tenant figures of tenants `who` may not see."""
    keep = {t: v for t, v in w.alerts_by_tenant.items() if who.sees(t)}
    return WorkerView(w.url, w.ready, w.error, w.dead_letters, w.lag, w.counters, keep, w.latency)


@dataclass(slots=True)
class StoreView:
    open_tickets: int
    breached: int
    runs: dict[str, int]
    dead_letters_7d: dict[str, int]  # tenant -> dead letters recorded by replays over 7 days
    backend: str


def store_view(store: Any, who: Principal) -> StoreView:
    now = utcnow()
    with store.tx() as s:
        open_q = scoped(select(func.count()).select_from(Ticket), who).where(Ticket.status != "closed",
                                                                             Ticket.incident_status != "merged")
        n_open = s.scalar(open_q) or 0
        n_breached = s.scalar(open_q.where((Ticket.sla_breached) | (Ticket.acknowledged_at.is_(None)
                                                                     & (Ticket.sla_due < now)))) or 0
        runs_q = scoped(select(PlaybookRun.status, func.count()).join(Ticket, Ticket.id == PlaybookRun.ticket_id),
                        who).group_by(PlaybookRun.status)
        runs = {st: n for st, n in s.execute(runs_q)}
        dead_q = scoped(select(FunnelStat.tenant_id, func.sum(FunnelStat.dead)), who, FunnelStat.tenant_id).where(
            FunnelStat.day >= (now - timedelta(days=7)).date()).group_by(FunnelStat.tenant_id)
        dead = {t: int(n or 0) for t, n in s.execute(dead_q) if n}
    return StoreView(n_open, n_breached, runs, dead, store.backend)
