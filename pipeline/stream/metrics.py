"""Prometheus metrics of the worker and a tiny HTTP server for /metrics and /healthz."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """All metrics of one worker, in their own registry (several workers may share a process in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.records = Counter("mdr_records", "Ingest messages consumed", ["topic"], registry=r)
        self.alerts = Counter("mdr_alerts", "Normalized alerts", ["tenant"], registry=r)
        self.applied = Counter("mdr_alerts_applied", "Alerts run through the core", registry=r)
        self.assigned = Gauge("mdr_assigned_partitions", "Partitions assigned to this worker", ["topic"],
                              registry=r)
        self.alerts_new = Counter("mdr_alerts_deduplicated", "Alerts after dedup", registry=r)
        self.redelivered = Counter("mdr_alerts_redelivered", "Alerts skipped as already applied", registry=r)
        self.rerouted = Counter("mdr_alerts_rerouted", "Alerts a tenant-keyed ingest topic carried on another "
                                "partition than their tenant's (they took the by-tenant topic)", registry=r)
        self.dead = Counter("mdr_dead_letters", "Dead letters", ["reason"], registry=r)
        self.failures = Counter("mdr_worker_failures", "Errors that stopped the worker, by where", ["where"],
                                registry=r)
        self.incidents = Counter("mdr_incident_updates", "Incident updates emitted", ["priority"], registry=r)
        self.suppressed = Counter("mdr_suppressed", "Alerts suppressed as noise", registry=r)
        self.verdicts = Counter("mdr_verdicts", "Analyst verdicts consumed", registry=r)
        self.soar_ticks = Counter("mdr_soar_clock_ticks", "Beats of the SOAR clock: ticked (this worker holds the "
                                  "lease), standby (another one does), failed", ["result"], registry=r)
        self.escalations = Counter("mdr_soar_escalations", "SLA escalations by this worker's clock", ["priority"],
                                   registry=r)
        self.runs_resumed = Counter("mdr_soar_runs_resumed", "Playbook runs resumed by this worker's clock",
                                    registry=r)
        self.model_reloads = Counter("mdr_model_reloads", "Reloads of the noise model (registry changes)",
                                     ["result"], registry=r)
        self.noise_scored = Counter("mdr_noise_scored", "Alerts the noise model scored", ["tenant"], registry=r)
        self.noise_out_of_scope = Counter("mdr_noise_out_of_scope", "Scored alerts outside the noise model's "
                                          "scope (kept whatever their score)", ["tenant"], registry=r)
        self.noise_novel = Counter("mdr_noise_novel_rules", "Scored alerts with a rule the model never saw",
                                   ["tenant"], registry=r)
        self.noise_score = Histogram("mdr_noise_score", "P(attack) of scored alerts", ["tenant"],
                                     buckets=tuple(i / 10 for i in range(1, 11)), registry=r)
        self.context_reloads = Counter("mdr_context_reloads", "Reloads of the saved context (assets, intel)",
                                       registry=r)
        self.usecase_reloads = Counter("mdr_usecase_reloads", "Use-case set reloads", ["result"], registry=r)
        self.lag = Gauge("mdr_consumer_lag", "Messages behind the end of the topic", ["topic", "partition"],
                         registry=r)
        self.stage = Histogram("mdr_stage_seconds", "Time per batch in a stage", ["stage"], buckets=_LATENCY,
                               registry=r)
        self.wait = Histogram("mdr_wait_seconds", "Time a message waited before a hop: ingest (produced to read), "
                              "internal (normalized to read by the core), hold (read to run by the core)", ["hop"],
                              buckets=_LATENCY, registry=r)
        self.to_incident = Histogram("mdr_alert_to_incident_seconds", "Ingest timestamp of an alert to the incident "
                                     "holding it delivered", buckets=_LATENCY, registry=r)
        self.gc = Histogram("mdr_gc_pause_seconds", "Cyclic garbage collector pauses", ["generation"],
                            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r)
        self.e2e = Histogram("mdr_end_to_end_seconds", "Ingest timestamp to incident emitted",
                             buckets=_LATENCY, registry=r)

    def observe_drift(self, drift: dict) -> None:
        """Add a batch's drift counts per (tenant, day) (`pipeline.classify.drift.TenantDrift`) to the noise metrics;
        the score histogram gets each bin's count at the bin's middle."""
        for (tenant, _day), d in drift.items():
            self.noise_scored.labels(tenant).inc(d.alerts)
            self.noise_out_of_scope.labels(tenant).inc(d.out_of_scope)
            self.noise_novel.labels(tenant).inc(d.novel_rules)
            h = self.noise_score.labels(tenant)
            for k, n in enumerate(d.hist):
                for _ in range(n):
                    h.observe((k + 0.5) / len(d.hist))

    def watch_gc(self) -> None:
        """Time the cyclic garbage collector's pauses (they stop the event loop)."""
        import gc
        import time

        started: list[float] = [0.0]
        hist = self.gc

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                hist.labels(str(info.get("generation"))).observe(time.perf_counter() - started[0])

        gc.callbacks.append(callback)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics: Metrics, port: int, health: Callable[[], tuple[bool, str]]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on port in a daemon thread (host: MDR_METRICS_HOST, default 127.0.0.1).
    /healthz is 200 when `health()` says healthy, else 503; the body says why (ok, starting, failed: ...)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                ok, why = health()
                body, ctype, code = why.encode("utf-8", "replace") + b"\n", "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet
            return

    server = ThreadingHTTPServer((os.environ.get("MDR_METRICS_HOST", "127.0.0.1"), port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
