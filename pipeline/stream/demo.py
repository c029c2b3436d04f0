"""`mdr demo`: a real Kafka broker, one worker, the lab samples streamed in, incidents shown live; the analyst
console on the worker's ticket store (its URL and a demo login are printed)."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.live import Live

from pipeline import paths
from pipeline.clitext import Table
from pipeline.schema import Incident, decode_incident
from pipeline.stream.config import Topics

LAB_TOPICS = {"waf": "waf", "ids": "firewall", "host": "host"}  # sample sub-directory -> ingest topic kind
TIMEOUT = 240.0


def _table(incidents: dict[str, Incident], status: str) -> Table:
    t = Table(title=f"mdr.incidents (live) — {status}", expand=True)
    for col in ("priority", "category", "title", "alerts", "outcome", "status"):
        t.add_column(col, overflow="fold" if col == "title" else "ellipsis")
    shown = sorted(incidents.values(), key=lambda i: (i.status == "merged", i.priority, i.first_seen))
    for i in shown:
        style = "dim" if i.status == "merged" else ("bold red" if i.priority in ("P1", "P2") else "")
        t.add_row(i.priority, i.category, i.title, str(i.alert_count), i.outcome, i.status, style=style)
    return t


def _produce(bootstrap: str, samples: Path, tenant: str, topics: Topics, done: threading.Event) -> None:
    from pipeline.stream.producer import produce

    try:
        for sub, kind in LAB_TOPICS.items():
            if (samples / sub).exists():
                produce(bootstrap, [str(samples / sub)], topics.ingest_topic(kind), tenant, None, "web-01")
    finally:
        done.set()


def run_demo(samples: Path, tenant: str = "shop", linger: float = 8.0, console_port: int | None = 8700,
             hold: bool = True) -> int:
    """Returns the exit code: 0 when incidents arrived. With a console port, the analyst console serves the
    worker's ticket store from the start (URL and a demo login printed) and, with `hold`, keeps serving after the
    stream until Ctrl-C."""
    from pipeline.stream.app import ensure_topics
    from pipeline.stream.broker import KafkaBroker

    console = Console()
    topics = Topics()
    work = Path(tempfile.mkdtemp(prefix="mdr-demo-"))
    db_url = f"sqlite:///{work / 'soar.db'}"
    metrics_port = _free_port()
    console.print("[bold]starting Apache Kafka (KRaft, jars from Maven Central)...[/bold]")
    with KafkaBroker(data_dir=work / "kafka") as broker:
        console.print(f"broker up at {broker.bootstrap} in {broker.start_seconds:.1f}s")
        ensure_topics(broker.bootstrap, topics, 4)
        procs: list[tuple[str, subprocess.Popen, IO[bytes]]] = []
        try:
            log = (work / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", "--bootstrap", broker.bootstrap,
                 "--data-dir", str(work / "worker"), "--usecases", str(paths.usecases_dir()),
                 "--quiet", "2", "--max-hold", "30", "--db", db_url, "--metrics-port", str(metrics_port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(("worker", worker, log))
            console.print(f"worker pid {worker.pid} (log {work / 'worker.log'}); tickets in {work / 'soar.db'}")
            if console_port is not None:
                procs.append(_start_console(console, work, db_url, broker.bootstrap, metrics_port, console_port))
            console.print(f"streaming {samples}")
            code = _watch(console, broker.bootstrap, samples, tenant, topics, linger)
            if console_port is not None and hold and code == 0:
                console.print("[bold]the console keeps serving the demo's incidents; Ctrl-C stops it, the worker "
                              "and the broker[/bold]")
                with contextlib.suppress(KeyboardInterrupt):
                    while all(p.poll() is None for _, p, _ in procs):
                        time.sleep(0.5)
            return code
        finally:
            for name, p, fh in reversed(procs):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                fh.close()
                console.print(f"{name} stopped")
            console.print("stopping the broker")


def _free_port(preferred: int = 0) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_console(console: Console, work: Path, db_url: str, bootstrap: str, metrics_port: int,
                   port: int) -> tuple[str, subprocess.Popen, IO[bytes]]:
    """A demo admin with a fresh random password, and `mdr console` on the demo's store."""
    from pipeline.console.auth import add_user
    from pipeline.soar.tickets import TicketStore

    password = secrets.token_urlsafe(12)
    store = TicketStore(db_url)
    try:
        add_user(store, "demo", "admin", [], password)
    finally:
        store.close()
    port = _free_port(port)
    log = (work / "console.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "console", "--db", db_url, "--port", str(port), "--kafka", bootstrap,
         "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics", "--usecases", str(paths.usecases_dir())],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    console.print(f"[bold green]analyst console: http://127.0.0.1:{port}/  login: demo / {password}[/bold green]")
    return "console", proc, log


def _watch(console: Console, bootstrap: str, samples: Path, tenant: str, topics: Topics, linger: float) -> int:
    done = threading.Event()
    threading.Thread(target=_produce, args=(bootstrap, samples, tenant, topics, done), daemon=True).start()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    consumer.assign([TopicPartition(topics.incidents, 0)])
    incidents: dict[str, Incident] = {}
    start = last = time.monotonic()
    with Live(_table(incidents, "waiting for the worker"), console=console, refresh_per_second=4) as live:
        while time.monotonic() - start < TIMEOUT:
            for recs in consumer.poll(timeout_ms=250).values():
                for r in recs:
                    if r.value:
                        inc = decode_incident(r.value)
                        incidents[inc.incident_id] = inc
                        last = time.monotonic()
            status = "streaming samples" if not done.is_set() else f"{len(incidents)} incidents"
            live.update(_table(incidents, status))
            if incidents and done.is_set() and time.monotonic() - last > linger:
                break
    consumer.close()
    open_ = [i for i in incidents.values() if i.status != "merged"]
    console.print(f"[bold]{len(open_)} incidents[/bold] ({len(incidents) - len(open_)} fused into others)")
    return 0 if incidents else 1
