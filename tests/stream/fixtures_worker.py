"""Helpers for the worker tests: run `mdr worker` subprocesses, stream files, read topics back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from pipeline.replay import ReplayResult, replay
from pipeline.schema import Incident, decode_incident
from tests.lab import LAB1, USECASES
from tests.lab import lab_core as replay_core  # the test workers run with an empty MDR_HOME too

ROOT = Path(__file__).resolve().parents[2]
# lab-1 sub-directory -> ingest topic kind
LAB_TOPICS = {"waf": "waf", "ids": "firewall", "host": "host"}


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def start_worker(bootstrap: str, workdir: Path, *args: str, app_id: str = "mdr-worker",
                 name: str = "w", env: dict[str, str] | None = None) -> WorkerProc:
    """Start `mdr worker` as a subprocess with its own data dir and log file (`env`: added variables)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    tickets = () if {"--db", "--tickets"} & set(args) else ("--no-tickets",)  # tickets only where a test asks
    cmd = [sys.executable, "-m", "pipeline.cli", "worker", "--bootstrap", bootstrap, "--app-id", app_id,
           "--data-dir", str(workdir / f"{name}-data"), "--usecases", str(USECASES), *tickets, *args]
    env = {"MDR_HOME": str(workdir / "home"), **os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # no context
    fh = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    return WorkerProc(proc, log)


def produce_lab(bootstrap: str, tenant: str, host: str = "web-01", lab: Path = LAB1, prefix: str = "mdr.",
                per_message: int = 1, partitions: int = 4, key_by: str | dict[str, str] = "host") -> int:
    """Create the worker's topics, then stream the lab files (waf, ids -> firewall, host) as `tenant`, keyed by
    host or by tenant (`key_by`: one for all, or per lab sub-directory)."""
    from pipeline.stream.app import ensure_topics
    from pipeline.stream.config import Topics
    from pipeline.stream.producer import produce

    ensure_topics(bootstrap, Topics(prefix=prefix), partitions)
    keys = key_by if isinstance(key_by, dict) else dict.fromkeys(LAB_TOPICS, key_by)
    return sum(produce(bootstrap, [str(lab / d)], f"{prefix}alerts.{kind}", tenant, None, host, per_message,
                       key_by=keys[d]) for d, kind in LAB_TOPICS.items())


@dataclass(frozen=True)
class Ingest:
    """How the worker reads the ingest topics, and how the test keys what it produces."""

    name: str
    worker_args: tuple[str, ...]
    key_by: str | dict[str, str]


# the two ways a worker runs a tenant's alerts: through the by-tenant topic, or where a tenant-keyed ingest
# topic delivers them (and, for the messages a producer keyed otherwise, through the by-tenant topic after all)
INGEST = [Ingest("hop", (), "host"), Ingest("tenant-keyed", ("--tenant-keyed",), "tenant"),
          Ingest("tenant-keyed-mixed", ("--tenant-keyed",), {"waf": "tenant", "ids": "host", "host": "tenant"})]
TWO_WAYS = [i for i in INGEST if i.name in ("hop", "tenant-keyed")]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list:
    """Every record of `topic` now (all partitions, from the beginning)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      auto_offset_reset="earliest", consumer_timeout_ms=int(timeout * 1000))
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out: list = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def latest_incidents(bootstrap: str, topic: str = "mdr.incidents") -> dict[str, Incident]:
    """The compacted view: each incident id's last value."""
    return {r.key.decode(): decode_incident(r.value) for r in read_topic(bootstrap, topic) if r.value}


def healthz(port: int) -> tuple[int, str]:
    """Status and body of the worker's /healthz (0 and "" while nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait_until(pred: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return pred()


def settle(read: Callable[[], object], quiet: float, timeout: float) -> object:
    """Poll `read()` until it gives something, then until its value stops changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = read()
    while not last and time.monotonic() < deadline:
        time.sleep(1.0)
        last = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        cur = read()
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def replay_lab(tenant: str, host: str = "web-01", lab: Path = LAB1) -> ReplayResult:
    """`mdr replay` of the lab files with the worker's Core configuration."""
    return replay([str(lab / d) for d in LAB_TOPICS], replay_core(), tenant, host)


def summary(incidents: dict[str, Incident]) -> dict[str, tuple]:
    """What must match between the stream and the replay: id -> (status merged?, alert set, priority...).
    An incident fused into another is compared by where it went: what it held when it was fused depends on
    the order fusion saw its parts (host evidence may reach a worker before the web activity it joins), while
    every alert of it is in its survivor, which is compared in full."""
    return {i.incident_id: (True, i.merged_into, i.category) if i.status == "merged" else
            (False, None, frozenset(i.alert_ids), i.priority, i.alert_count, i.category) for i in incidents.values()}
