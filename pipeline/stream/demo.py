"""`mdr demo`: a real Kafka broker, one worker, the lab samples streamed in, incidents shown live; the analyst
console on the worker's ticket store (its URL and a demo login are printed).

Everything the demo starts lives in one temporary directory (the broker's data, the worker's state, the demo's
ticket store, the logs) that is removed when it ends, whatever the outcome; a failed run prints the end of the
worker's log first. Nothing is written under MDR_HOME or in the current directory. Each component is started
by a small function (broker, worker, console), so more can join the same run.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rich.console import Console, RenderableType
from rich.live import Live

from pipeline import paths
from pipeline.clitext import lit
from pipeline.schema import Incident
from pipeline.stream.config import Topics
from pipeline.stream.view import read_incidents
from pipeline.tables import incident_table

LAB_TOPICS = {"waf": "waf", "ids": "firewall", "host": "host"}  # sample sub-directory -> ingest topic kind
TIMEOUT = 240.0
LOG_TAIL = 20  # lines of the worker's log shown when the demo fails
HOST = "web-01"  # the lab server's name (samples/lab-1/SCENARIO.md)
Proc = tuple[str, subprocess.Popen, IO[bytes]]


@contextmanager
def workspace() -> Iterator[Path]:
    """A temporary directory for everything the demo starts; removed at the end."""
    work = Path(tempfile.mkdtemp(prefix="mdr-demo-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_demo(samples: Path, tenant: str = "shop", linger: float = 8.0, console_port: int | None = 8700,
             hold: bool = True) -> int:
    """Returns the exit code: 0 when incidents arrived. With a console port, the analyst console serves the
    worker's ticket store from the start (URL and a demo login printed) and, with `hold`, keeps serving after the
    stream until Ctrl-C."""
    from pipeline.stream.app import ensure_topics
    from pipeline.stream.broker import KafkaBroker

    console = Console()
    topics = Topics()
    code = 1
    with workspace() as work:
        db_url = f"sqlite:///{work / 'soar.db'}"
        metrics_port = _free_port()
        console.print("[bold]starting Apache Kafka (KRaft, jars from Maven Central)...[/bold]")
        with KafkaBroker(data_dir=work / "kafka") as broker:
            console.print(f"broker up at {broker.bootstrap} in {broker.start_seconds:.1f}s")
            ensure_topics(broker.bootstrap, topics, 4)
            procs: list[Proc] = []
            try:
                procs.append(_start_worker(console, work, broker.bootstrap, db_url, metrics_port))
                if console_port is not None:
                    procs.append(_start_console(console, work, db_url, broker.bootstrap, metrics_port, console_port))
                console.print(lit("streaming ", samples, f" as tenant {tenant!r}, host {HOST!r}"))
                code = _watch(console, broker.bootstrap, samples, tenant, topics, linger)
                if console_port is not None and hold and code == 0:
                    console.print("[bold]the console keeps serving the demo's incidents; Ctrl-C stops it, the "
                                  "worker and the broker[/bold]")
                    with contextlib.suppress(KeyboardInterrupt):
                        while all(p.poll() is None for _, p, _ in procs):
                            time.sleep(0.5)
            finally:
                _stop(console, procs, work, show_log=code != 0)
                console.print("stopping the broker")
    console.print("demo files removed")
    return code


def _free_port(preferred: int = 0) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_worker(console: Console, work: Path, bootstrap: str, db_url: str, metrics_port: int) -> Proc:
    """`mdr worker` on the demo's broker, writing tickets into the demo's own store."""
    log = (work / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker", "--bootstrap", bootstrap,
         "--data-dir", str(work / "worker"), "--usecases", str(paths.usecases_dir()),
         "--quiet", "2", "--max-hold", "30", "--db", db_url, "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    console.print(f"worker pid {worker.pid}")
    return "worker", worker, log


def _start_console(console: Console, work: Path, db_url: str, bootstrap: str, metrics_port: int,
                   port: int) -> Proc:
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


def _stop(console: Console, procs: list[Proc], work: Path, show_log: bool) -> None:
    """SIGTERM every process (last started first); on a failed run, the end of the worker's log."""
    for name, p, fh in reversed(procs):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        fh.close()
        console.print(f"{name} stopped")
    if show_log and (work / "worker.log").exists():
        tail = (work / "worker.log").read_text(errors="replace").splitlines()[-LOG_TAIL:]
        console.print(f"[yellow]worker log (last {len(tail)} lines):[/yellow]")
        for line in tail:
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def _produce(bootstrap: str, samples: Path, tenant: str, topics: Topics, done: threading.Event) -> None:
    from pipeline.stream.producer import produce

    try:
        for sub, kind in LAB_TOPICS.items():
            if (samples / sub).exists():
                produce(bootstrap, [str(samples / sub)], topics.ingest_topic(kind), tenant, None, HOST)
    finally:
        done.set()


def _watch(console: Console, bootstrap: str, samples: Path, tenant: str, topics: Topics, linger: float) -> int:
    done = threading.Event()
    threading.Thread(target=_produce, args=(bootstrap, samples, tenant, topics, done), daemon=True).start()
    incidents: dict[str, Incident] = {}
    start = last = time.monotonic()

    def table(status: str) -> RenderableType:
        return incident_table(incidents.values(), console.width, f"mdr.incidents (live) — {status}")

    def finished() -> bool:
        now = time.monotonic()
        if incidents and done.is_set() and now - last > linger:
            return True
        live.update(table("streaming samples" if not done.is_set() else f"{len(incidents)} incidents"))
        return now - start > TIMEOUT

    with Live(table("waiting for the worker"), console=console, refresh_per_second=4) as live:
        for _, inc in read_incidents(bootstrap, topics.incidents, stop=finished):
            if inc is not None:
                incidents[inc.incident_id] = inc
                last = time.monotonic()
        live.update(table(f"{len(incidents)} incidents"))
    open_ = [i for i in incidents.values() if i.status != "merged"]
    console.print(f"[bold]{len(open_)} incidents[/bold] ({len(incidents) - len(open_)} fused into others)")
    return 0 if incidents else 1
